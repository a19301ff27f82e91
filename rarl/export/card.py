"""The model card of an exported model: ``README.md`` with the hub's YAML metadata, from the run's files.

Why from the files: a card typed by hand drifts from what was trained and measured. Everything here is
read from the run — the base model and training data (``resolved_config.yaml``), the method and LoRA
settings (``adapter_config.json``), the evaluation results (``results.json`` of each ``rarl eval`` run
given) — and written through ``huggingface_hub``'s ``ModelCard``/``ModelCardData``/``EvalResult``, so the
hub renders the results as its ``model-index`` and every number appears in the text with its 95%
interval and n. Image-control runs (:mod:`rarl.eval.controls`) are listed in the text, never as results.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rarl.errors import UserError
from rarl.schema.results import RunResults, read_results
from rarl.schema.rundir import RESULTS_FILE

TASK_TYPE = "visual-question-answering"
TAGS = ("rarl", "medical", "vqa", "qwen2-vl", "lora", "trl")


@dataclass(frozen=True)
class ResultRow:
    """One reported score of one evaluation run (percent), with its 95% interval and n."""

    run: str
    prompt: str
    dataset: str
    metric: str  # "rarl accuracy" | "<judge> final"
    value: float
    low: float | None
    high: float | None
    n: int | None


def find_results(paths: Sequence[str | Path], near: Path) -> list[tuple[Path, RunResults]]:
    """The ``results.json`` of each ``--results DIR`` (or file), else those beside the adapter (in it or
    one folder below it); a named one that is missing is a one-line error."""
    found: list[Path] = []
    for path in paths:
        file = Path(path) / RESULTS_FILE if Path(path).is_dir() else Path(path)
        if not file.is_file():
            raise UserError(f"{path}: no {RESULTS_FILE} here (run `rarl eval` first)")
        found.append(file)
    if not paths:
        found = sorted([*near.glob(RESULTS_FILE), *near.glob(f"*/{RESULTS_FILE}")])
    return [(file, read_results(file)) for file in found]


def result_rows(runs: Sequence[tuple[Path, RunResults]]) -> list[ResultRow]:
    """Rule accuracy and each judge's Final % per dataset (the rows of the paper's tables) of each run
    that is not an image control."""
    rows = []
    for file, results in runs:
        if results.image_control:
            continue
        label, prompt = file.parent.name, results.prompt or "?"
        metrics = results.rule_metrics
        for dataset in results.dataset_names:
            block = metrics.block(dataset) if metrics else None
            value = block.metric("rarl.accuracy") if block else None
            if value is not None:
                n = value.n if value.n is not None else block.n if block else None
                if value.low is not None and value.high is not None:
                    low, high = 100 * value.low, 100 * value.high
                else:  # an older file without the interval: the report's Wilson interval
                    low, high = _wilson(100 * value.value, n)
                percent = 100 * value.value
                rows.append(ResultRow(label, prompt, dataset, "rarl accuracy", percent, low, high, n))
            for judge in results.judges.values():
                judged = judge.block(dataset)
                if judged is not None and judged.final is not None:
                    low, high = _wilson(judged.final, judged.n)
                    metric = f"{judge.name} final"
                    rows.append(ResultRow(label, prompt, dataset, metric, judged.final, low, high, judged.n))
    return rows


def _wilson(percent: float, n: int | None) -> tuple[float | None, float | None]:
    """A judge's Final % interval as the report computes it (Wilson; the items failed count as 0)."""
    from rarl.stats import wilson_interval

    if not n:
        return None, None
    interval = wilson_interval(round(percent / 100 * n), n)
    return (100 * interval[0], 100 * interval[1]) if interval else (None, None)


def _is_hub_id(name: str) -> bool:
    return "/" in name and not Path(name).exists() and not name.startswith((".", "/", "~"))


def _dataset_text(label: str, hub: str | None) -> str:
    return label + (f" (`{hub}`)" if hub else "")


def _n(row: ResultRow) -> str:
    return str(row.n) if row.n is not None else "?"


def _cell(row: ResultRow) -> str:
    interval = f" [{row.low:.1f}, {row.high:.1f}]" if row.low is not None and row.high is not None else ""
    return f"{row.value:.1f}{interval}"


def build_model_card(
    *,
    name: str,
    base_model: str,
    method: str,
    adapter_config: dict[str, Any],
    train_datasets: Sequence[tuple[str, str | None]],
    runs: Sequence[tuple[Path, RunResults]],
    adapter_dir: str,
) -> Any:
    """A ``huggingface_hub.ModelCard``: metadata (base model, datasets, tags, model-index) and text.

    ``train_datasets``: ``(label, hub id or None)`` per training dataset; only hub ids enter the metadata.
    """
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    rows = result_rows(runs)
    eval_results = [
        EvalResult(
            task_type=TASK_TYPE,
            task_name="Medical visual question answering",
            dataset_type=row.dataset,
            dataset_name=row.dataset,
            metric_type="accuracy",
            metric_name=f"{row.metric} ({row.prompt} prompt)",
            metric_value=round(row.value, 2),
        )
        for row in rows
    ]
    hub_datasets = [hub for _, hub in train_datasets if hub]
    data = ModelCardData(
        base_model=base_model if _is_hub_id(base_model) else None,
        datasets=hub_datasets or None,
        library_name="transformers",
        pipeline_tag="image-text-to-text",
        tags=[*TAGS, method],
        model_name=name,
        eval_results=eval_results or None,
    )
    targets = adapter_config.get("target_modules")
    targets_text = ", ".join(targets) if isinstance(targets, list) else str(targets)
    lines = [
        f"# {name}",
        "",
        f"{method.upper()} fine-tune of `{base_model}` with a LoRA adapter, merged into the base weights "
        "(`peft` `merge_and_unload`) by `rarl export`: a standalone model for transformers and vLLM.",
        "",
        "## Training",
        "",
        f"- Method: {method.upper()} (TRL), LoRA r={adapter_config.get('r')}, "
        f"alpha={adapter_config.get('lora_alpha')}, dropout={adapter_config.get('lora_dropout')}, "
        f"targets: `{targets_text}`",
        f"- Adapter: `{adapter_dir}`",
        "- Training data: " + (", ".join(_dataset_text(*spec) for spec in train_datasets) or "not recorded"),
        "",
        "## Evaluation",
        "",
    ]
    if rows:
        lines += [
            "| Run | Prompt | Dataset | Metric | % [95% CI] | n |",
            "|---|---|---|---|---:|---:|",
            *(f"| {r.run} | {r.prompt} | {r.dataset} | {r.metric} | {_cell(r)} | {_n(r)} |" for r in rows),
            "",
            "Intervals: accuracy as `rarl eval` wrote them (Wilson score interval for 0/1 outcomes); judge "
            "Final % Wilson intervals over all items (a failed judgement counts as 0). Measured by `rarl "
            "eval`; see its `results.json`.",
        ]
    else:
        lines.append("No evaluation results were given (`rarl export --results DIR`).")
    controls = [(file, results) for file, results in runs if results.image_control]
    if controls:
        lines += ["", "Image-control runs (not results; `rarl report` pairs them with the normal runs):"]
        lines += [f"- `{file.parent.name}`: {results.image_control} images" for file, results in controls]
    return ModelCard("---\n" + data.to_yaml() + "\n---\n\n" + "\n".join(lines) + "\n")


__all__ = ["ResultRow", "build_model_card", "find_results", "result_rows"]
