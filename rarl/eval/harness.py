"""The evaluation pipeline behind ``rarl eval`` and ``rarl judge``.

Why: generation is the slow part (minutes to hours on the real benchmarks), so predictions are appended to
``predictions.jsonl`` as they are produced and a rerun skips every item already there — but only when
``provenance.json`` shows the same output-affecting settings and each prediction's item fingerprint
matches the item now loaded (:mod:`rarl.provenance`); otherwise the rerun refuses. Everything downstream
(rule metrics, judges, tables) is recomputed from that file, so it is cheap to redo and always consistent
with the predictions on disk. Under ``accelerate launch`` the missing items are shared between the
processes (:mod:`rarl.eval.shard`), each writing ``predictions.part-R-of-W.jsonl``, merged by the main one.

Output directory (``eval.output_dir``):
``resolved_config.yaml``, ``provenance.json``, ``predictions.jsonl``, ``judgements/<judge>.jsonl``,
``scores.jsonl`` (one row per item and metric: :mod:`rarl.schema.scores`), ``results.json``, ``results.md``.

The pipeline of :func:`run_evaluation` reads as a straight line: load the samples, generate (resuming),
score every item (:mod:`rarl.eval.metrics`: one :class:`~rarl.schema.scores.ScoreRow` per item and metric,
and each judge's verdicts), aggregate (:mod:`rarl.eval.aggregate`, from the rows only), write
(``scores.jsonl``, ``results.json`` = the serialised :class:`~rarl.schema.results.RunResults`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from rarl.config import JudgeConfig, RunConfig, save_config
from rarl.data.budget import preflight, require_images
from rarl.errors import DataError, UserError
from rarl.eval.aggregate import aggregate_results
from rarl.eval.shard import Shard, current_shard
from rarl.io import (
    append_jsonl,
    atomic_write_json,
    atomic_write_text,
    check_output_directory,
    directory_lock,
    has_torn_tail,
    json_line,
)
from rarl.models.loading import model_label
from rarl.provenance import (
    PROVENANCE_FILE,
    check_same_settings,
    eval_settings,
    item_fingerprints,
    read_provenance,
    write_provenance,
)
from rarl.schema.predictions import read_predictions_keeping_first
from rarl.schema.records import PredictionRecord
from rarl.schema.results import JudgeResults, JudgeStats, RunResults
from rarl.schema.rundir import (
    JUDGEMENTS_DIR,
    PART_GLOB,
    PREDICTIONS_FILE,
    RESULTS_FILE,
    RESULTS_MD,
    read_predictions,
)
from rarl.schema.sample import Sample
from rarl.schema.scores import SCORES_FILE, ScoreRow, read_scores, write_scores

log = logging.getLogger(__name__)

FRESH_HINT = "pass --overwrite to discard them, or choose another eval.output_dir"
BUSY_HINT = "wait for it to finish, or choose another eval.output_dir"
REBUILD_HINT = "delete it to rebuild it from the predictions, or rerun `rarl eval` on this directory"
# Everything a run writes into eval.output_dir: what --overwrite removes.
OUTPUT_FILES = (
    PREDICTIONS_FILE,
    RESULTS_FILE,
    RESULTS_MD,
    SCORES_FILE,
    PROVENANCE_FILE,
    "resolved_config.yaml",
)


def sample_key(sample: Sample) -> str:
    """The :attr:`PredictionRecord.key` a sample's prediction will have."""
    return f"{sample.dataset}/{sample.split}/{sample.id}"


def load_eval_samples(config: RunConfig) -> list[Sample]:
    """All configured evaluation samples; keys must be unique so resuming and judging can join on them."""
    from rarl.tasks.loading import load_dataset_spec

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


def _part_files(out_dir: Path) -> list[Path]:
    return sorted(out_dir.glob(PART_GLOB))


def consolidate_predictions(out_dir: Path, order: list[str] | None = None) -> dict[str, PredictionRecord]:
    """All finished predictions in ``out_dir``, merged into one ``predictions.jsonl``.

    Part files left by a sharded run (finished or interrupted) are merged in and removed, and a
    half-written last line is dropped; the first record of a key wins, so the file never holds a key
    twice (a file that already does, e.g. written by two runs at once before runs locked their directory,
    is repaired and the dropped copies counted in the log), and a rewritten file lists the keys of
    ``order`` (the samples) first, in that order. Only the main process calls this; the others read the
    result after a barrier.
    """
    path = out_dir / PREDICTIONS_FILE
    sources = ([path] if path.exists() else []) + _part_files(out_dir)
    done: dict[str, PredictionRecord] = {}
    rewrite = bool(_part_files(out_dir))
    duplicates = 0
    for source in sources:
        rewrite = rewrite or has_torn_tail(source)
        records, dropped = read_predictions_keeping_first(source)
        duplicates += dropped
        for record in records:
            if record.key in done:
                duplicates += 1
                continue
            done[record.key] = record
    if duplicates:
        log.warning("%s: %d duplicate predictions dropped (the first of each item is kept)", path, duplicates)
    if rewrite or duplicates:
        rank = {key: index for index, key in enumerate(order or [])}
        done = dict(sorted(done.items(), key=lambda item: rank.get(item[0], len(rank))))
        atomic_write_text(path, "".join(_json_line(r.to_dict()) for r in done.values()))
        for part in _part_files(out_dir):
            part.unlink()
        log.info(
            "%s: rewritten with %d predictions (parts merged, torn line/copies dropped)", path, len(done)
        )
    return done


def sort_predictions(path: Path, order: list[str]) -> None:
    """Rewrite ``path`` (atomically) with its records in ``order`` when they are not already."""
    records = read_predictions(path)
    rank = {key: index for index, key in enumerate(order)}
    ordered = sorted(records, key=lambda r: rank.get(r.key, len(rank)))
    if [r.key for r in ordered] != [r.key for r in records]:
        atomic_write_text(path, "".join(_json_line(r.to_dict()) for r in ordered))


def check_item_fingerprints(
    path: Path, samples: list[Sample], fingerprints: list[str], done: dict[str, PredictionRecord]
) -> None:
    """Refuse to reuse a prediction whose item (question, references, image) changed since it was made."""
    changed = [
        sample_key(sample)
        for sample, fingerprint in zip(samples, fingerprints, strict=True)
        if sample_key(sample) in done and done[sample_key(sample)].fingerprint != fingerprint
    ]
    if changed:
        raise UserError(
            f"{path}: {len(changed)} of the {len(samples)} items changed since their predictions were made "
            f"(question, reference, choices or image differ under the same id, e.g. {changed[0]}); "
            f"{FRESH_HINT}"
        )


def _json_line(data: dict[str, Any]) -> str:
    return json_line(data) + "\n"


def run_model_label(config: RunConfig) -> str:
    """The model named in this run's records and results: the local model (+ adapter), or the served one."""
    if config.eval.backend == "openai":
        from rarl.eval.served import served_label

        return served_label(config.eval.openai)
    return model_label(config.model)


def check_output_dir(config: RunConfig, out_dir: Path) -> dict[str, Any]:
    """Refuse when ``out_dir`` holds outputs of other settings; returns this run's settings."""
    settings = eval_settings(config)
    recorded = read_provenance(out_dir)
    has_predictions = (out_dir / PREDICTIONS_FILE).exists() or bool(_part_files(out_dir))
    if recorded is None and has_predictions:
        raise UserError(
            f"{out_dir}: holds predictions without a {PROVENANCE_FILE} (made by an older rarl or by "
            f"hand), so they cannot be checked against this run; {FRESH_HINT}"
        )
    if recorded is not None:
        check_same_settings(recorded["settings"], settings, what=str(out_dir), fresh=FRESH_HINT)
    return settings


def generate_missing(
    config: RunConfig,
    samples: list[Sample],
    out_dir: Path,
    *,
    model: Any = None,
    processor: Any = None,
    progress: bool = True,
    shard: Shard | None = None,
) -> tuple[list[PredictionRecord], dict[str, Any]]:
    """Predictions for every sample, generating only those not already in ``predictions.jsonl``.

    Predictions are reused only when ``out_dir``'s provenance shows the same settings and each item's
    fingerprint is unchanged (else a :class:`UserError`, before anything is written). With several
    processes (``accelerate launch``) each generates its share of the missing items into its own part
    file; the main process merges them and checks that every item is there exactly once. Other processes
    return an empty list.
    """
    shard = shard or Shard()
    path = out_dir / PREDICTIONS_FILE
    name = run_model_label(config)
    order = [sample_key(sample) for sample in samples]
    settings = check_output_dir(config, out_dir)
    shard.wait()  # every process has checked before the main one touches anything
    if shard.is_main:
        consolidate_predictions(out_dir, order)
    shard.wait()
    done = {r.key: r for r in read_predictions(path)} if path.exists() else {}
    check_item_fingerprints(path, samples, item_fingerprints(samples), done)
    shard.wait()
    if shard.is_main:
        # Only now, with settings and items checked, so these always describe the predictions beside them.
        save_config(config, out_dir)
        write_provenance(out_dir, "eval", settings)
    todo = [sample for sample in samples if sample_key(sample) not in done]
    mine = shard.take(todo)
    image_fn = None
    if config.eval.image_control != "none":  # over all the items, so every process maps them alike
        from rarl.eval.controls import control_image_fn

        image_fn = control_image_fn(
            samples, config.eval.image_control, config.model.max_pixels, config.eval.image_control_seed
        )
    info: dict[str, Any] = {"resumed": len(samples) - len(todo), "generated": len(todo), "generate_s": 0.0}
    if shard.world > 1:
        info["processes"] = shard.world
    target = path if shard.world == 1 else out_dir / f"predictions.part-{shard.rank}-of-{shard.world}.jsonl"
    if config.eval.backend == "openai":
        served = config.eval.openai
        info["backend"] = {"name": "openai", "base_url": served.base_url, "model": served.model}
    if mine and config.eval.backend == "openai":
        from rarl.eval.served import generate_served

        start = time.perf_counter()
        generate_served(
            config.eval.openai,
            mine,
            prompt=config.eval.prompt,
            max_new_tokens=config.eval.max_new_tokens,
            do_sample=config.eval.do_sample,
            max_pixels=config.model.max_pixels,
            model_name=name,
            on_record=lambda record: append_jsonl(target, [record.to_dict()]),
            progress=progress and shard.is_main,
            image_fn=image_fn,
        )
        info["generate_s"] = round(time.perf_counter() - start, 3)
        if shard.world == 1:  # appended as they finished: listed in item order, as the local path writes
            sort_predictions(path, order)
    elif mine:
        if done:
            log.info("resuming: %d of %d predictions already in %s", len(done), len(samples), path)
        if model is None or processor is None:
            from rarl.models import load_model, load_processor

            processor = processor or load_processor(config.model)
            model = model or load_model(config.model)
        from rarl.eval.generate import (
            TRAINING_TEMPLATE_PROMPT,
            generate_predictions,
            training_template_messages,
        )

        as_trained = config.eval.prompt == TRAINING_TEMPLATE_PROMPT
        start = time.perf_counter()
        generate_predictions(
            model,
            processor,
            mine,
            prompt=config.eval.prompt,
            batch_size=config.eval.batch_size,
            max_new_tokens=config.eval.max_new_tokens,
            model_name=name,
            do_sample=config.eval.do_sample,
            on_record=lambda record: append_jsonl(target, [record.to_dict()]),
            max_pixels=config.model.max_pixels,
            progress=progress and shard.is_main,
            image_fn=image_fn,
            messages_fn=training_template_messages(samples, config.data) if as_trained else None,
        )
        info["generate_s"] = round(time.perf_counter() - start, 3)
    shard.wait()
    if not shard.is_main:
        return [], info
    merged = consolidate_predictions(out_dir, order) if shard.world > 1 or _part_files(out_dir) else None
    if merged is None:
        merged = {r.key: r for r in read_predictions(path)}
    check_complete(path, samples, merged)
    return [merged[sample_key(sample)] for sample in samples], info


def check_complete(path: Path, samples: list[Sample], merged: dict[str, PredictionRecord]) -> None:
    """Every sample has exactly one prediction in the file (a failure here is a bug, not user input)."""
    from collections import Counter

    duplicates = {key for key, n in Counter(r.key for r in read_predictions(path)).items() if n > 1}
    missing = [sample_key(s) for s in samples if sample_key(s) not in merged]
    if duplicates or missing:
        raise RuntimeError(
            f"{path}: merged predictions are inconsistent: {len(duplicates)} duplicate key(s) "
            f"{sorted(duplicates)[:3]}, {len(missing)} missing {missing[:3]}"
        )


def judge_predictions(
    records: list[PredictionRecord],
    judges: list[JudgeConfig],
    out_dir: Path,
    *,
    progress: bool = True,
    retry_failed: bool = False,
) -> tuple[dict[str, JudgeResults], dict[str, str]]:
    """Run the judges and write ``judgements/<name>.jsonl``; return each judge's description (model,
    prompt and its version, stats; its scores come from its rows, :mod:`rarl.eval.aggregate`) and the
    failures.

    A judge none of whose judgements succeeded has no score: it is left out of the first dict and named,
    with its first error, in the second.
    """
    from rarl.eval.judge import JUDGE_PROMPTS, run_judges, write_judgements

    described: dict[str, JudgeResults] = {}
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
        counts = stats.to_dict()
        described[name] = JudgeResults(
            name=name,
            model=judge.model,
            base_url=judge.base_url,
            prompt=judge.prompt,
            prompt_version=str(JUDGE_PROMPTS[judge.prompt].version),
            stats=JudgeStats(**{k: v for k, v in counts.items() if k in JudgeStats.__dataclass_fields__}),
        )
        log.info(
            "judge %s: %d ok, %d parse errors, %d API errors, %d cached, %d requests",
            name,
            stats.ok,
            stats.parse_errors,
            stats.api_errors,
            stats.cache_hits,
            stats.requests,
        )
    return described, failures


def judge_rows(records: list[PredictionRecord], out_dir: Path, judges: Iterable[str]) -> list[ScoreRow]:
    """The per-item rows of every named judge whose ``judgements/<name>.jsonl`` is in ``out_dir``."""
    from rarl.eval.metrics import judge_score_rows
    from rarl.schema.judgements import read_judgements

    rows: list[ScoreRow] = []
    for name in judges:
        path = out_dir / JUDGEMENTS_DIR / f"{name}.jsonl"
        if path.exists():
            rows += judge_score_rows(records, name, read_judgements(path))
    return rows


def merge_judges(
    earlier: RunResults, judged: Mapping[str, JudgeResults], failed: Mapping[str, str]
) -> tuple[dict[str, JudgeResults], dict[str, str]]:
    """The judges of a run after judging again: a judge judged now replaces its earlier entry (score or
    failure); one that failed entirely replaces any earlier score by a failure (never 0 %); judges of the
    earlier run not judged now are kept."""
    judges = {name: judge for name, judge in earlier.judges.items() if name not in failed}
    judges.update(judged)
    failures = {name: message for name, message in earlier.judge_failures.items() if name not in judged}
    failures.update(failed)
    return judges, failures


def write_results(out_dir: Path, results: RunResults) -> None:
    """``results.json``: the serialised :class:`~rarl.schema.results.RunResults`. Its rendering as
    ``results.md`` (the tables of ``rarl report`` for this one run) is written by the layer above,
    :func:`rarl.report.tables.write_results_markdown`, which the commands call: evaluation never imports
    the report package."""
    atomic_write_json(out_dir / RESULTS_FILE, results.to_dict())


def _check_judge_keys(judges: list[JudgeConfig]) -> None:
    """Fail before hours of generation, not after, when a judge's API key is missing."""
    from rarl.eval.judge import judge_api_key

    for judge in judges:
        judge_api_key(judge, alternative="pass --no-judges, ")


def clear_outputs(out_dir: Path) -> None:
    """``--overwrite``: remove every output of a previous run (stale judgements included)."""
    import shutil

    for name in OUTPUT_FILES:
        (out_dir / name).unlink(missing_ok=True)
    for part in _part_files(out_dir):
        part.unlink()
    shutil.rmtree(out_dir / JUDGEMENTS_DIR, ignore_errors=True)


def run_evaluation(
    config: RunConfig,
    *,
    judges: bool = True,
    overwrite: bool = False,
    model: Any = None,
    processor: Any = None,
    progress: bool = True,
    shard: Shard | None = None,
) -> RunResults | None:
    """``rarl eval``, in order: load the samples, generate (resuming), score every item, aggregate, write.

    Under ``accelerate launch`` every process generates its share; only the main process scores,
    judges and writes results (the others return ``None``). The output directory is locked for the whole
    run: a second ``rarl eval`` (or ``rarl judge``) into it is refused at once.
    """
    from rarl.eval.metrics import dataset_labels, item_scores, score_rows

    shard = shard or current_shard()
    out_dir = check_output_directory(config.eval.output_dir, "eval.output_dir")
    if judges:
        _check_judge_keys(config.judges)
    if config.eval.backend == "openai":  # before any work, as the judges' keys
        from rarl.eval.openai_client import api_key

        api_key(config.eval.openai, "eval.openai")
    with ExitStack() as held:
        if shard.is_main:  # the processes of one sharded run are one writer; its main one holds the lock
            held.enter_context(directory_lock(out_dir, hint=BUSY_HINT))  # first: refused before any work
        # 1. load
        samples = load_eval_samples(config)
        if config.eval.backend == "openai":  # the server's tokenizer and context are its own to check
            require_images(samples)
        else:
            preflight(config, samples, "eval", processor)  # images present, no truncation: before the model
        if shard.is_main and overwrite:
            clear_outputs(out_dir)
        shard.wait()
        # 2. generate (resuming)
        records, info = generate_missing(
            config, samples, out_dir, model=model, processor=processor, progress=progress, shard=shard
        )
        if not shard.is_main:
            return None
        # 3. score: one row per item and metric (rule metrics, then each judge's verdicts)
        bertscore_model = config.reward.bertscore_model if config.eval.bertscore else None
        items = item_scores(
            records, bertscore=config.eval.bertscore, bertscore_model=config.reward.bertscore_model
        )
        rows = score_rows(records, items)
        described, failures = ({}, {})
        if judges and config.judges:
            described, failures = judge_predictions(records, config.judges, out_dir, progress=progress)
        rows += judge_rows(records, out_dir, described)
        # 4. aggregate: every number from the rows
        results = RunResults(
            model=run_model_label(config),
            prompt=config.eval.prompt,
            n=len(records),
            datasets=tuple(dict.fromkeys(dataset_labels(records))),
            generation=info,
            image_control=None if config.eval.image_control == "none" else config.eval.image_control,
            image_control_seed=None
            if config.eval.image_control == "none"
            else config.eval.image_control_seed,
        )
        results = aggregate_results(results, rows, described, failures, bertscore_model)
        # 5. write
        write_scores(out_dir / SCORES_FILE, rows)
        write_results(out_dir, results)
        return results


def rejudge(
    config: RunConfig,
    predictions: str | Path | None = None,
    *,
    progress: bool = True,
    retry_failed: bool = False,
) -> RunResults:
    """``rarl judge``: judge an existing predictions file and merge the judges into its results.json.

    The directory is locked first (a running ``rarl eval`` there is still writing the predictions), and
    an unreadable ``results.json`` is refused before any judge is asked (merging into it would lose it).
    The rule rows ``rarl eval`` wrote are kept; every number is aggregated again from the rows.
    """
    from rarl.eval.metrics import dataset_labels, item_scores, score_rows
    from rarl.schema.results import read_results_json

    if not config.judges:
        raise UserError("no judges configured: add a 'judges:' list to the config (see docs/evaluation.md)")
    path = Path(predictions) if predictions else Path(config.eval.output_dir) / PREDICTIONS_FILE
    if not path.is_file():
        raise UserError(f"{path}: file not found" if not path.exists() else f"{path}: not a file")
    out_dir = path.parent
    with directory_lock(out_dir, hint=BUSY_HINT):
        records = read_predictions(path)
        if not records:
            raise UserError(f"{path}: no predictions to judge")
        results_path = out_dir / RESULTS_FILE
        scores_path = out_dir / SCORES_FILE
        bertscore_model = config.reward.bertscore_model if config.eval.bertscore else None
        if results_path.exists():
            data = read_results_json(results_path, hint=REBUILD_HINT)
            try:  # a wrong type is refused here, naming the field, not by a crash while merging
                earlier = RunResults.from_dict(data, results_path)
            except DataError as exc:
                raise DataError(exc.path, exc.row, exc.field, f"{exc.problem}; {REBUILD_HINT}") from None
            if earlier.rule_metrics is not None:
                bertscore_model = earlier.rule_metrics.bertscore_model
        else:
            earlier = RunResults(
                model=records[0].model,
                prompt=records[0].prompt,
                n=len(records),
                datasets=tuple(dict.fromkeys(dataset_labels(records))),
            )
        if scores_path.exists():  # the rule rows eval wrote; the judges' rows are rebuilt below
            rows = [row for row in read_scores(scores_path) if not row.metric.startswith("judge.")]
        else:
            items = item_scores(
                records, bertscore=config.eval.bertscore, bertscore_model=config.reward.bertscore_model
            )
            rows = score_rows(records, items)
        described, failed = judge_predictions(
            records, config.judges, out_dir, progress=progress, retry_failed=retry_failed
        )
        judges, failures = merge_judges(earlier, described, failed)
        rows += judge_rows(records, out_dir, judges)
        results = aggregate_results(earlier, rows, judges, failures, bertscore_model)
        write_scores(scores_path, rows)
        write_results(out_dir, results)
    return results


__all__ = [
    "PREDICTIONS_FILE",
    "RESULTS_FILE",
    "clear_outputs",
    "consolidate_predictions",
    "generate_missing",
    "judge_predictions",
    "judge_rows",
    "load_eval_samples",
    "merge_judges",
    "model_label",
    "read_predictions",
    "rejudge",
    "run_evaluation",
    "write_results",
]
