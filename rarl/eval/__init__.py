"""Evaluation: generation, rule metrics, LLM judges, reports."""
