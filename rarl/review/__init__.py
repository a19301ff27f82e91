"""Human evaluation: a local web page where clinicians rate a model's reasoning and answers (0/1)."""

from rarl.review.store import RatingStore, export_ratings, human_scores_by_output, load_ratings

__all__ = ["RatingStore", "export_ratings", "human_scores_by_output", "load_ratings"]
