"""One module per benchmark: what defines it (its official scorer, its reference rules).

Why here and not in the evaluation code: a benchmark's official number is part of the benchmark, not of
rarl, and a researcher comparing with published results must find it in one place.
"""
