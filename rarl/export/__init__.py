"""``rarl export``: a trained LoRA adapter merged into its base as a standalone model directory (weights,
processor with the run's pixel budget, generation config) with a model card, optionally pushed to the hub.
:mod:`.merge` merges and writes; :mod:`.card` builds the card from the run's config and results."""
