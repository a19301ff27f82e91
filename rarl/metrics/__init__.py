"""Metric families shared by several benchmarks, each named for what it is.

* :mod:`rarl.metrics.vqa_eval` — the answer processing of the VQA challenge's evaluation script, which the
  VQA-Med organisers and LLaVA-Med both build on;
* :mod:`rarl.metrics.llava_med` — closed accuracy and open recall as LLaVA-Med's evaluation computes them
  (for comparison with the many papers that report those; their flaws are documented there).

A benchmark's own official scorer lives with the benchmark in :mod:`rarl.tasks`.
"""
