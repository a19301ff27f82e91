"""Benchmarks (``rarl bench NAME``): each module exposes ``HELP``, ``add_arguments`` and ``run``."""
