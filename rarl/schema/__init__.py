"""The shared schema at the bottom of rarl's layers: samples, prediction records, typed results, the
dataset-source registry and the run-directory file names. It imports nothing above :mod:`rarl.errors` and
:mod:`rarl.io`, so every other package (config, data, train, eval, review, report) can depend on it."""
