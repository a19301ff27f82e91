"""The generic half of loading: what every benchmark's loader shares, and the generic tables.

:mod:`.common` holds the layout helpers (split names and files, JSON, hub access, row collection, image
roots); :mod:`.tables` reads any table mapped by ``column_map`` (sources ``hf`` and ``parquet``) and the
hub copies whose columns are already Sample fields. The benchmark-specific loaders live in their task
modules (``rarl/tasks/<benchmark>.py``), dispatched by :func:`rarl.tasks.loading.load_source`; nothing
here knows a benchmark.
"""
