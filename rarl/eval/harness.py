"""The evaluation pipeline behind ``rarl eval`` and ``rarl judge``.

Why: generation is the slow part (minutes to hours on the real benchmarks), so predictions are appended to
``predictions.jsonl`` as they are produced and a rerun with the same model and prompt skips every item
already there. Everything downstream (rule metrics, judges, tables) is recomputed from that file, so it
is cheap to redo and always consistent with the predictions on disk.

Output directory (``eval.output_dir``):
``resolved_config.yaml``, ``predictions.jsonl``, ``judgements/<judge>.jsonl``, ``results.json``,
``results.md``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from rarl.config import JudgeConfig, ModelConfig, RunConfig, save_config
from rarl.data.budget import preflight
from rarl.data.schema import Sample
from rarl.errors import UserError
from rarl.eval.records import PredictionRecord
from rarl.io import append_jsonl, atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

PREDICTIONS_FILE = "predictions.jsonl"
RESULTS_FILE = "results.json"
RESULTS_MD = "results.md"
JUDGEMENTS_DIR = "judgements"


def model_label(config: ModelConfig) -> str:
    """How a model is named in records and tables: its path or hub id, plus ``+adapter`` when one is used."""
    name = config.name_or_path
    return f"{name}+{config.adapter_path}" if config.adapter_path else name


def sample_key(sample: Sample) -> str:
    """The :attr:`PredictionRecord.key` a sample's prediction will have."""
    return f"{sample.dataset}/{sample.split}/{sample.id}"


def load_eval_samples(config: RunConfig) -> list[Sample]:
    """All configured evaluation samples; keys must be unique so resuming and judging can join on them."""
    from rarl.data import load_dataset_spec

    samples: list[Sample] = []
    for spec in config.data.eval:
        samples += load_dataset_spec(spec)
    seen: dict[str, int] = {}
    for sample in samples:
        key = sample_key(sample)
        if key in seen:
            raise UserError(
                f"data.eval: the sample key {key!r} occurs twice; give repeated datasets distinct 'name's"
            )
        seen[key] = 1
    if not samples:
        raise UserError("data.eval: no evaluation samples (check the paths, splits and limits)")
    return samples


def read_predictions(path: str | Path) -> list[PredictionRecord]:
    """Validated records of a predictions file of one run (see :mod:`rarl.eval.predictions`; a truncated
    last line, left by an interruption, is ignored)."""
    from rarl.eval.predictions import read_predictions as read_validated

    return read_validated(path, one_model=True, tolerate_truncated_tail=True)


def existing_predictions(path: Path, model: str, prompt: str) -> dict[str, PredictionRecord]:
    """Finished predictions to resume from; refuses a file made by another model or prompt."""
    if not path.exists():
        return {}
    text = path.read_text(encoding="utf-8")
    records = read_predictions(path)
    if text and not text.endswith("\n"):
        # Drop the half-written last line so new appends start on a clean line.
        atomic_write_text(path, "".join(_json_line(r.to_dict()) for r in records))
        log.info("%s: dropped a truncated last line left by an interrupted run", path)
    for record in records:
        if record.model != model or record.prompt != prompt:
            raise UserError(
                f"{path}: holds predictions of model={record.model!r} prompt={record.prompt!r}, "
                f"but this run is model={model!r} prompt={prompt!r}; "
                "use another eval.output_dir or pass --overwrite"
            )
    return {record.key: record for record in records}


def _json_line(data: dict[str, Any]) -> str:
    import json

    return json.dumps(data, ensure_ascii=False, default=str) + "\n"


def generate_missing(
    config: RunConfig,
    samples: list[Sample],
    out_dir: Path,
    *,
    model: Any = None,
    processor: Any = None,
    progress: bool = True,
) -> tuple[list[PredictionRecord], dict[str, Any]]:
    """Predictions for every sample, generating only those not already in ``predictions.jsonl``."""
    path = out_dir / PREDICTIONS_FILE
    name = model_label(config.model)
    done = existing_predictions(path, name, config.eval.prompt)
    todo = [sample for sample in samples if sample_key(sample) not in done]
    info: dict[str, Any] = {"resumed": len(samples) - len(todo), "generated": len(todo), "generate_s": 0.0}
    if todo:
        if done:
            log.info("resuming: %d of %d predictions already in %s", len(done), len(samples), path)
        if model is None or processor is None:
            from rarl.models import load_model, load_processor

            processor = processor or load_processor(config.model)
            model = model or load_model(config.model)
        from rarl.eval.generate import generate_predictions

        start = time.perf_counter()
        new = generate_predictions(
            model,
            processor,
            todo,
            prompt=config.eval.prompt,
            batch_size=config.eval.batch_size,
            max_new_tokens=config.eval.max_new_tokens,
            model_name=name,
            do_sample=config.eval.do_sample,
            on_record=lambda record: append_jsonl(path, [record.to_dict()]),
            max_pixels=config.model.max_pixels,
            progress=progress,
        )
        info["generate_s"] = round(time.perf_counter() - start, 3)
        done.update({record.key: record for record in new})
    return [done[sample_key(sample)] for sample in samples], info


def judge_predictions(
    records: list[PredictionRecord],
    judges: list[JudgeConfig],
    out_dir: Path,
    *,
    progress: bool = True,
    retry_failed: bool = False,
) -> dict[str, Any]:
    """Run the judges, write ``judgements/<name>.jsonl`` and return per-judge summaries and stats.

    A judge none of whose judgements succeeded has no score: it is left out of the returned dict and
    named, with its first error, in ``failures`` (``{"judges": {...}, "failures": {name: message}}``
    is what callers merge; see :func:`merge_judges`).
    """
    from rarl.eval.judge import PROMPT_VERSION, run_judges, summarize, write_judgements
    from rarl.eval.metrics import dataset_labels

    labels = dataset_labels(records)
    out: dict[str, Any] = {}
    failures: dict[str, str] = {}
    for name, (judgements, stats) in run_judges(
        records, judges, progress=progress, retry_failed=retry_failed
    ).items():
        judge = next(j for j in judges if j.name == name)
        write_judgements(out_dir / JUDGEMENTS_DIR / f"{name}.jsonl", judgements)
        if stats.n and not stats.ok:
            first = next((j.error for j in judgements if j.error), "unknown error")
            failures[name] = f"all {stats.n} judgements failed ({stats.api_errors} API errors, " + (
                f"{stats.parse_errors} unreadable replies); first error: {first}"
            )
            log.error("judge %s: %s", name, failures[name])
            continue
        out[name] = {
            "model": judge.model,
            "base_url": judge.base_url,
            "prompt_version": PROMPT_VERSION,
            "summary": summarize(records, judgements, labels),
            "stats": stats.to_dict(),
        }
        log.info(
            "judge %s: %d ok, %d parse errors, %d API errors, %d cached, %d requests",
            name,
            stats.ok,
            stats.parse_errors,
            stats.api_errors,
            stats.cache_hits,
            stats.requests,
        )
    return {"judges": out, "failures": failures}


def merge_judges(results: dict[str, Any], judged: dict[str, Any]) -> None:
    """Merge :func:`judge_predictions` output into ``results``: a judge that failed entirely replaces any
    earlier score of the same judge by an entry under ``judge_failures`` (never 0 %)."""
    scored = results.setdefault("judges", {})
    scored.update(judged["judges"])
    failures = results.setdefault("judge_failures", {})
    for name in judged["judges"]:
        failures.pop(name, None)
    for name, message in judged["failures"].items():
        scored.pop(name, None)
        failures[name] = message
    if not failures:
        results.pop("judge_failures")


def write_results(out_dir: Path, results: dict[str, Any]) -> None:
    """``results.json`` plus ``results.md`` (the same tables ``rarl report`` makes, for this one run)."""
    from rarl.eval.report import results_markdown

    atomic_write_json(out_dir / RESULTS_FILE, results)
    atomic_write_text(out_dir / RESULTS_MD, results_markdown(results))


def _check_judge_keys(judges: list[JudgeConfig]) -> None:
    """Fail before hours of generation, not after, when a judge's API key is missing."""
    import os

    for judge in judges:
        if judge.api_key_env and not os.environ.get(judge.api_key_env):
            raise UserError(
                f"judge '{judge.name}': environment variable {judge.api_key_env} is not set "
                "(set it, pass --no-judges, or set api_key_env to '' for a local server without keys)"
            )


def run_evaluation(
    config: RunConfig,
    *,
    judges: bool = True,
    overwrite: bool = False,
    model: Any = None,
    processor: Any = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Generate (resuming), score with rule metrics and the configured judges, write all outputs."""
    from rarl.eval.metrics import dataset_labels, rule_metrics

    out_dir = Path(config.eval.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if overwrite:
        (out_dir / PREDICTIONS_FILE).unlink(missing_ok=True)
    if judges:
        _check_judge_keys(config.judges)
    save_config(config, out_dir)
    samples = load_eval_samples(config)
    preflight(config, samples, "eval", processor)  # images present, no truncation: before the model loads
    records, info = generate_missing(
        config, samples, out_dir, model=model, processor=processor, progress=progress
    )
    metrics = rule_metrics(
        records, bertscore=config.eval.bertscore, bertscore_model=config.reward.bertscore_model
    )
    results: dict[str, Any] = {
        "model": model_label(config.model),
        "prompt": config.eval.prompt,
        "n": len(records),
        "datasets": list(dict.fromkeys(dataset_labels(records))),
        "generation": info,
        "rule_metrics": metrics,
        "judges": {},
    }
    if judges and config.judges:
        merge_judges(results, judge_predictions(records, config.judges, out_dir, progress=progress))
    write_results(out_dir, results)
    return results


def rejudge(
    config: RunConfig,
    predictions: str | Path | None = None,
    *,
    progress: bool = True,
    retry_failed: bool = False,
) -> dict[str, Any]:
    """``rarl judge``: judge an existing predictions file and merge the judges into its results.json."""
    from rarl.eval.metrics import dataset_labels, rule_metrics

    if not config.judges:
        raise UserError("no judges configured: add a 'judges:' list to the config (see docs/evaluation.md)")
    path = Path(predictions) if predictions else Path(config.eval.output_dir) / PREDICTIONS_FILE
    records = read_predictions(path)
    if not records:
        raise UserError(f"{path}: no predictions to judge")
    out_dir = path.parent
    results_path = out_dir / RESULTS_FILE
    if results_path.exists():
        import json

        results = json.loads(results_path.read_text(encoding="utf-8"))
    else:
        results = {
            "model": records[0].model,
            "prompt": records[0].prompt,
            "n": len(records),
            "datasets": list(dict.fromkeys(dataset_labels(records))),
            "rule_metrics": rule_metrics(
                records, bertscore=config.eval.bertscore, bertscore_model=config.reward.bertscore_model
            ),
        }
    merge_judges(
        results,
        judge_predictions(records, config.judges, out_dir, progress=progress, retry_failed=retry_failed),
    )
    write_results(out_dir, results)
    return results


__all__ = [
    "PREDICTIONS_FILE",
    "RESULTS_FILE",
    "existing_predictions",
    "generate_missing",
    "judge_predictions",
    "load_eval_samples",
    "merge_judges",
    "model_label",
    "read_predictions",
    "rejudge",
    "run_evaluation",
]
