"""``rarl data audit``: what is in the data, and what leaks between its splits, before any training.

Why: a benchmark number is only as honest as its split. VQA-RAD splits by question, not by image, so 202 of
its 203 test images also appear in training; SLAKE's English and Chinese halves are each image-disjoint, but
mixing the languages puts test images into training. Nothing in a loss curve shows this. The audit loads
exactly what a config (or a dataset folder) would feed the model and reports, per dataset and split: rows,
question types, the answer distribution, duplicate rows, image sizes and token counts under the configured
pixel budget against the training limits, and, across splits, images shared by *content* (SHA-256 of the
file, so a renamed copy still counts) and (image, question, answer) triplets shared between splits.
"""

from __future__ import annotations

import hashlib
import statistics
from collections import Counter
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rarl.answers import normalize_answer
from rarl.schema.sample import QUESTION_TYPES, Sample

if TYPE_CHECKING:
    from rarl.config import RunConfig

TOP_ANSWERS = 5

_HASH_CACHE: dict[str, str] = {}


def image_hash(image: Any) -> str | None:
    """SHA-256 of an image file's bytes (cached), or of a PIL image's pixels; None for text-only samples."""
    if image is None:
        return None
    if isinstance(image, str):
        if image not in _HASH_CACHE:
            _HASH_CACHE[image] = hashlib.sha256(Path(image).read_bytes()).hexdigest()
        return _HASH_CACHE[image]
    return hashlib.sha256(image.tobytes() + repr((image.mode, image.size)).encode()).hexdigest()


def _triplet(sample: Sample, digest: str | None) -> tuple[str, str, str]:
    return (digest or "", normalize_answer(sample.question), normalize_answer(sample.answer))


def _spread(values: list[int]) -> dict[str, float] | None:
    if not values:
        return None
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


@dataclass
class SplitAudit:
    """Figures for one loaded dataset split."""

    role: str
    dataset: str
    split: str
    samples: list[Sample] = field(default_factory=list)
    error: str | None = None
    hashes: list[str | None] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.dataset}/{self.split}"


def split_stats(item: SplitAudit, config: RunConfig, count: Any) -> dict[str, Any]:
    """Counts, answer distribution, duplicates, image sizes and the token budget of one split."""
    from rarl.data.budget import configured_limits, image_size, sample_tokens

    samples = item.samples
    types = Counter(s.question_type for s in samples)
    answers = Counter(normalize_answer(s.answer) for s in samples)
    yes_no = answers.get("yes", 0) + answers.get("no", 0)
    triplets = Counter(_triplet(s, h) for s, h in zip(samples, item.hashes, strict=True))
    sizes = [image_size(s.image) for s in samples]
    unique_sizes = {h: size for h, size in zip(item.hashes, sizes, strict=True) if size and h}
    with_images = [s for s in samples if s.image is not None]
    role = "train" if item.role == "train" else "eval"
    needs = sample_tokens(with_images, config, role, count) if with_images else []
    limits = configured_limits(config, role)
    over = {
        name: sum(
            1
            for n in needs
            if (n.prompt_tokens if name.endswith("max_prompt_length") else n.prompt_tokens + n.target_tokens)
            > limit
        )
        for name, limit in limits.items()
    }
    return {
        "rows": len(samples),
        "types": {t: types.get(t, 0) for t in QUESTION_TYPES},
        "top_answers": answers.most_common(TOP_ANSWERS),
        "distinct_answers": len(answers),
        "yes_no_share": round(yes_no / len(samples), 4) if samples else None,
        "duplicate_rows": sum(n - 1 for n in triplets.values() if n > 1),
        "images": len(unique_sizes),
        "text_only_rows": len(samples) - len(with_images),
        "image_width": _spread([w for w, _ in unique_sizes.values()]),
        "image_height": _spread([h for _, h in unique_sizes.values()]),
        "image_tokens": _spread([n.image_tokens for n in needs]),
        "prompt_tokens": _spread([n.prompt_tokens for n in needs]),
        "max_total_tokens": max((n.prompt_tokens + n.target_tokens for n in needs), default=None),
        "limits": limits,
        "rows_over_limits": over,
    }


def leakage(items: list[SplitAudit]) -> list[dict[str, Any]]:
    """Images (by content) and (image, question, answer) triplets shared by every pair of loaded splits."""
    loaded = [item for item in items if item.error is None and item.samples]
    pairs = []
    for first, second in combinations(loaded, 2):
        if first.label == second.label:
            continue
        images_a = {h for h in first.hashes if h}
        images_b = {h for h in second.hashes if h}
        triplets_a = {_triplet(s, h) for s, h in zip(first.samples, first.hashes, strict=True)}
        triplets_b = {_triplet(s, h) for s, h in zip(second.samples, second.hashes, strict=True)}
        questions_a = {(t[0], t[1]) for t in triplets_a}
        questions_b = {(t[0], t[1]) for t in triplets_b}
        pairs.append(
            {
                "a": first.label,
                "b": second.label,
                "shared_images": len(images_a & images_b),
                "images_a": len(images_a),
                "images_b": len(images_b),
                "shared_image_questions": len(questions_a & questions_b),
                "shared_triplets": len(triplets_a & triplets_b),
            }
        )
    return pairs


def run_audit(
    items: list[SplitAudit], config: RunConfig, languages: dict[str, list[dict[str, Any]]] | None = None
) -> dict[str, Any]:
    """Fill every item's stats and return the whole audit as JSON-ready data.

    ``languages``: per dataset name, SLAKE's image sharing between splits across languages
    (:func:`rarl.tasks.slake.slake_language_overlap`), computed by the caller from the raw files.
    """
    from rarl.data.budget import load_token_counter

    count, counter = load_token_counter(config, allow_download=False)  # an audit never downloads a model
    from tqdm.auto import tqdm

    for item in items:
        if item.error is None:
            rows = tqdm(
                item.samples, desc=f"audit {item.label}", unit="row", disable=len(item.samples) < 2000
            )
            item.hashes = [image_hash(s.image) for s in rows]
            item.stats = split_stats(item, config, count)
    return {
        "token_counter": counter,
        "max_pixels": config.model.max_pixels,
        "min_pixels": config.model.min_pixels,
        "splits": [
            {"role": i.role, "dataset": i.dataset, "split": i.split, "error": i.error, **i.stats}
            for i in items
        ],
        "leakage": leakage(items),
        "slake_languages": languages or {},
    }


def print_audit(report: dict[str, Any], console: Any = None) -> None:
    """The audit as tables: one row per split, then the leakage between splits."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console(width=160)
    table = Table(title=f"data audit (max_pixels {report['max_pixels']}, tokens: {report['token_counter']})")
    for column in (
        "role", "dataset/split", "rows", "closed", "open", "choice", "yes/no", "top answers", "dup rows",
        "images", "image WxH (median)", "image tok (max)", "prompt tok (max)", "over limit",
    ):  # fmt: skip
        table.add_column(column, overflow="fold")
    for row in report["splits"]:
        label = f"{row['dataset']}/{row['split']}"
        if row["error"]:
            table.add_row(row["role"], label, "-", "", "", "", "", row["error"], *[""] * 6)
            continue
        width, height = row["image_width"], row["image_height"]
        size = f"{width['median']:.0f}x{height['median']:.0f}" if width and height else "text only"
        tokens = row["image_tokens"]["max"] if row["image_tokens"] else "-"
        prompt = row["prompt_tokens"]["max"] if row["prompt_tokens"] else "-"
        over = ", ".join(f"{k}: {v}" for k, v in row["rows_over_limits"].items() if v) or "none"
        top = ", ".join(f"{answer} {n}" for answer, n in row["top_answers"][:3])
        share = f"{row['yes_no_share']:.0%}" if row["yes_no_share"] is not None else "-"
        table.add_row(
            row["role"], label, str(row["rows"]), *(str(row["types"][t]) for t in QUESTION_TYPES), share, top,
            str(row["duplicate_rows"]), str(row["images"]), size, str(tokens), str(prompt), over,
        )  # fmt: skip
    console.print(table)
    leaks = Table(title="shared between splits (images by content hash)")
    for column in (
        "split A",
        "split B",
        "shared images",
        "same image+question",
        "same image+question+answer",
    ):
        leaks.add_column(column)
    for pair in report["leakage"]:
        leaks.add_row(
            pair["a"], pair["b"], f"{pair['shared_images']} (of {pair['images_a']} / {pair['images_b']})",
            str(pair["shared_image_questions"]), str(pair["shared_triplets"]),
        )  # fmt: skip
    if report["leakage"]:
        console.print(leaks)
    for name, overlaps in report["slake_languages"].items():
        for pair in overlaps:
            if pair["shared_images_all_languages"]:
                within = ", ".join(f"{k} {v}" for k, v in pair["shared_images_within_language"].items())
                console.print(
                    f"{name}: {pair['a']} and {pair['b']} share {pair['shared_images_all_languages']} images "
                    f"when English and Chinese rows are mixed (within one language: {within}); "
                    "mixing languages leaks test images into training",
                    markup=False,
                )


__all__ = ["SplitAudit", "image_hash", "leakage", "print_audit", "run_audit", "split_stats"]
