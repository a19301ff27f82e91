"""Reports: paper-style tables, judge/human agreement and plots built from evaluation run directories.

It sits above both :mod:`rarl.eval` (whose metrics and judgements it reads) and :mod:`rarl.review`
(whose human ratings it merges); neither of those imports it."""
