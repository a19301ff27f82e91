"""The offline demo: a recipe over rarl's public entry points, on a tiny model and synthetic data.

Why it exists: to show on a laptop CPU, in minutes, that reinforcement learning here *learns from its
reward* — and to say so with a paired interval, not two bare percentages. Nothing in it is demo-only
code: every stage is a YAML preset under ``configs/demo/`` loaded by :func:`rarl.config.load_config`
(seeds and folders as ``a.b=value`` overrides) and run by :func:`rarl.train.run.run_training`; every
evaluation is :func:`rarl.eval.harness.run_evaluation` (what ``rarl eval`` runs) writing a normal eval
run directory; every comparison is the report's own tables (:func:`rarl.report.tables.paired_table`,
:func:`~rarl.report.tables.rule_table`, :func:`~rarl.report.tables.build_report`).

The recipe (``rarl demo``):

1. a tiny random Qwen2-VL (:func:`rarl.models.build_tiny_model`, its tokenizer trained on the prompts
   and the synthetic vocabulary);
2. the **format warm-up** (``format_warmup.yaml``): SFT on the task's question ("What is the imaging
   modality?") with answers drawn at random (balanced, independent of the image) and on a caption question
   ("What colour is the picture?") with its true answer, both after one fixed think sentence — the base
   knows the output format, the answer words and how to look at a picture, but was never told which
   picture is which modality (held-out accuracy ≈ chance);
3. **RARL** (``rarl.yaml``): GRPO training a LoRA adapter from that base, the paper's four rewards and
   prompting diversity: only the reward says which answer is right;
4. both evaluated on the same held-out items; the paired table says whether GRPO moved accuracy.

``rarl demo --compare`` adds, from the same base and training samples, SFT (``sft.yaml``) and RL with LoRA
(``rl_lora.yaml``: format, length and accuracy rewards, one template), every arm evaluated in
distribution and under a held-out question phrasing, with the training templates and both inference
prompts, and every arm paired against SFT. Whatever comes out is reported; nothing is tuned for it.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rarl.errors import UserError

log = logging.getLogger(__name__)

BASE = "format_warmup"  # the preset every arm starts from
RL_STAGE = "rarl"  # the arm `rarl demo` trains by default
COMPARE_ARMS = ("sft", "rl_lora", "rarl")  # --compare: the paper's three setups, in miniature
COMPARE_PROMPTS = ("training_template", "reasoning", "non_reasoning")
ARM_LABELS = {BASE: "base", "sft": "SFT", "rl_lora": "RL w/ LoRA", "rarl": "RARL"}
STAGE_DIRS = (BASE, *COMPARE_ARMS, "eval", "report")


def preset_dir() -> Path:
    """``configs/demo/`` of the checkout rarl runs from (``pip install -e``); ``--config-dir`` otherwise."""
    return Path(__file__).resolve().parent.parent / "configs" / "demo"


@dataclass
class DemoOptions:
    """What ``rarl demo`` varies; everything else lives in the presets."""

    output_dir: str = "outputs/demo"
    seed: int = 0
    config_dir: str = field(default_factory=lambda: str(preset_dir()))
    compare: bool = False
    width: int = 64  # hidden size of the tiny language model
    threads: int = 1  # one torch thread: CPU runs are bit-reproducible
    overrides: dict[str, list[str]] = field(default_factory=dict)  # preset -> extra a.b=value overrides


def task_overrides(options: DemoOptions, task: str) -> dict[str, list[str]]:
    """``options.overrides`` plus what asks ``task`` (a synthetic kind) wherever the presets ask their own
    task: the warm-up's random-answer set, every arm's training set and both held-out sets. The warm-up's
    caption set stays; a task whose answers it names would be taught by the base, and is refused."""
    from rarl.data.synthetic import ALL_KINDS

    if task not in ALL_KINDS:
        raise UserError(f"--task: unknown synthetic kind {task!r}; valid options: {', '.join(ALL_KINDS)}")
    warmup = preset(options, BASE, [])
    own = {kind for spec in warmup.data.train if spec.random_answers for kind in spec.kinds}
    taught = {word for spec in warmup.data.train if not spec.random_answers for k in spec.kinds
              for word in ALL_KINDS[k][1]}  # fmt: skip
    if taught & set(ALL_KINDS[task][1]):
        raise UserError(f"--task {task}: the warm-up's caption set teaches its answers; choose another kind")
    merged = {name: list(values) for name, values in options.overrides.items()}

    def ask(name: str, key: str, specs: list[Any]) -> None:
        for i, spec in enumerate(specs):
            if set(spec.kinds) == own:
                merged.setdefault(name, []).insert(0, f"{key}.{i}.kinds=[{task}]")

    ask(BASE, "data.train", warmup.data.train)
    for arm in COMPARE_ARMS:
        ask(arm, "data.train", preset(options, arm, []).data.train)
    ask("eval", "data.eval", preset(options, "eval", []).data.eval)
    return merged


def tiny_texts() -> list[str]:
    """Tokenizer corpus: every prompt and every synthetic question/reasoning/answer text."""
    from rarl import prompts
    from rarl.data.synthetic import synthetic_texts
    from rarl.models.tiny import prompt_texts

    return [*prompt_texts(), prompts.REASONING_FORMAT_HINT, *synthetic_texts()]


def preset(options: DemoOptions, name: str, overrides: list[str]) -> Any:
    """``configs/demo/<name>.yaml`` through :func:`rarl.config.load_config` with ``overrides`` (and the
    user's own for that preset last)."""
    from rarl.config import load_config

    path = Path(options.config_dir) / f"{name}.yaml"
    if not path.is_file():
        raise UserError(f"{path}: demo preset not found (rarl demo --config-dir names the folder)")
    return load_config(path, [*overrides, *options.overrides.get(name, [])])


def seed_overrides(seed: int, lists: dict[str, int]) -> list[str]:
    """``data.seed`` and the seed of every dataset in the ``lists`` (``{"data.train": 1}``)."""
    return [f"data.seed={seed}"] + [f"{key}.{i}.seed={seed}" for key, n in lists.items() for i in range(n)]


def train_stage(options: DemoOptions, name: str, out: Path, model_path: str) -> Path:
    """Train preset ``name`` from ``model_path`` into ``out/<name>``; returns that folder."""
    from rarl.train.run import run_training

    method = preset(options, name, []).train.method
    config = preset(
        options,
        name,
        [
            f"model.name_or_path={model_path}",
            f"train.{method}.output_dir={out / name}",
            f"train.{method}.seed={options.seed}",
            *seed_overrides(options.seed, {"data.train": len(preset(options, name, []).data.train)}),
        ],
    )
    run_training(config)
    return out / name


def evaluate(options: DemoOptions, out: Path, model_path: Path, adapter: Path | None, prompt: str) -> Path:
    """``rarl eval`` with ``eval.yaml`` on one model (and adapter) and prompt; returns the run directory."""
    from rarl.eval.harness import run_evaluation

    label = adapter.name if adapter else model_path.name
    run_dir = out / "eval" / f"{label}-{prompt}"
    n_eval = len(preset(options, "eval", []).data.eval)
    config = preset(
        options,
        "eval",
        [
            f"model.name_or_path={model_path}",
            f"model.adapter_path={adapter if adapter else 'null'}",
            f"eval.output_dir={run_dir}",
            f"eval.prompt={prompt}",
            *seed_overrides(options.seed, {"data.eval": n_eval}),
        ],
    )
    run_evaluation(config, judges=False, overwrite=True)
    return run_dir


def check_demo_dir(out: Path) -> None:
    """Refuse to delete what the demo did not make (``--output-dir`` pointed at real runs).

    The demo starts each seed from scratch by deleting its stage folders; a training run there whose
    ``resolved_config.yaml`` names another model than the demo's own is somebody's result.
    """
    import yaml

    from rarl.schema.rundir import checkpoints, final_weights

    own = {str(out / "tiny_model"), str(out / BASE)}
    for stage in (BASE, *COMPARE_ARMS):
        folder = out / stage
        if not folder.is_dir() or not (checkpoints(folder) or final_weights(folder)):
            continue
        try:
            resolved = yaml.safe_load((folder / "resolved_config.yaml").read_text(encoding="utf-8")) or {}
            model = (resolved.get("model") or {}).get("name_or_path")
        except (OSError, yaml.YAMLError, AttributeError):
            model = None
        if model not in own:
            raise UserError(
                f"{folder} holds a training run the demo did not make (model {model or 'unknown'}); the "
                "demo deletes its stage folders, so choose another --output-dir"
            )


def run_demo(options: DemoOptions) -> dict[str, Any]:
    """One seed: build, warm up, train the arm(s), evaluate; returns the eval run directories by
    ``(arm, prompt)`` and the timings (written to ``<output_dir>/demo.json``)."""
    import torch

    from rarl.io import atomic_write_json
    from rarl.models import build_tiny_model

    out = Path(options.output_dir)
    check_demo_dir(out)
    for stage in STAGE_DIRS:
        shutil.rmtree(out / stage, ignore_errors=True)  # the demo always starts from scratch
    torch.set_num_threads(options.threads)
    started, cpu_started = time.time(), time.process_time()
    model = build_tiny_model(out / "tiny_model", seed=options.seed, texts=tiny_texts(), width=options.width)
    timings: dict[str, float] = {}

    def timed(key: str, fn: Any, *args: Any) -> Any:
        t = time.process_time()
        value = fn(*args)
        timings[key] = round(timings.get(key, 0.0) + time.process_time() - t, 1)
        return value

    base = timed(f"train_{BASE}_cpu_s", train_stage, options, BASE, out, str(model))
    arms = COMPARE_ARMS if options.compare else (RL_STAGE,)
    trained = {arm: timed(f"train_{arm}_cpu_s", train_stage, options, arm, out, str(base)) for arm in arms}
    prompts = COMPARE_PROMPTS if options.compare else (preset(options, "eval", []).eval.prompt,)
    runs: dict[str, dict[str, str]] = {}
    for prompt in prompts:
        for arm, adapter in [(BASE, None), *trained.items()]:
            run_dir = timed("eval_cpu_s", evaluate, options, out, base, adapter, prompt)
            runs.setdefault(arm, {})[prompt] = str(run_dir)
    summary = {
        "seed": options.seed,
        "compare": options.compare,
        "runs": runs,
        "train_runs": {arm: str(path) for arm, path in {BASE: base, **trained}.items()},
        "timings_s": {
            **timings,
            "cpu_s": round(time.process_time() - cpu_started, 1),
            "wall_s": round(time.time() - started, 1),
        },
    }
    atomic_write_json(out / "demo.json", summary)
    return summary


def run_demo_seeds(options: DemoOptions, seeds: int) -> list[dict[str, Any]]:
    """Repeat :func:`run_demo` with ``seeds`` consecutive seeds, each in ``<output_dir>/seed<k>/``."""
    from dataclasses import replace

    return [
        run_demo(replace(options, seed=seed, output_dir=str(Path(options.output_dir) / f"seed{seed}")))
        for seed in range(options.seed, options.seed + seeds)
    ]


# --------------------------------------------------------------------------------------------------
# what `rarl demo` prints: the report's own tables over the eval run directories


def load_runs(summary: dict[str, Any], prompt: str, arms: list[str]) -> list[Any]:
    """The report's :class:`~rarl.report.tables.RunData` of ``arms`` under ``prompt``, labelled by arm."""
    from rarl.report.tables import load_run

    return [load_run(summary["runs"][arm][prompt], label=ARM_LABELS[arm]) for arm in arms]


def paired_rows(summary: dict[str, Any], prompt: str, arms: list[str]) -> list[dict[str, Any]]:
    """The rows of the report's paired table (``arms[1:]`` against ``arms[0]``) for the rule accuracy over
    each dataset, as plain values: ``comparison, dataset, n, a, b, difference`` (an ``Estimate`` in points)
    and ``p``."""
    from rarl.report.tables import paired_table

    table = paired_table(load_runs(summary, prompt, arms))
    if table is None:
        return []
    column = {name: i for i, name in enumerate(table.headers)}
    rows = []
    for row in table.rows:
        if (
            row[column["Metric"]] != "rarl Acc."
            or row[column["Type"]] != "all"
            or row[column["Dataset"]] == "All"
        ):
            continue
        rows.append(
            {
                "comparison": row[column["Comparison"]],
                "dataset": row[column["Dataset"]],
                "n": row[column["n matched"]],
                "a": row[column["A %"]],
                "b": row[column["B %"]],
                "difference": row[column["B − A (pp)"]],
                "p": row[column["McNemar p"]],
            }
        )
    return rows


def excludes_zero(difference: Any) -> bool:
    """Whether a paired difference's 95% interval lies wholly above or below 0."""
    return (
        difference is not None and difference.low is not None and (difference.low > 0 or difference.high < 0)
    )


def demo_table(summaries: list[dict[str, Any]]) -> Any:
    """One table (the report's :class:`~rarl.report.tables.Table`): per seed, prompt and dataset, the arm
    after training against the one it is paired with — accuracies, difference with its paired 95% CI,
    McNemar p — taken from the report's paired table."""
    from rarl.report.tables import Table

    rows: list[list[Any]] = []
    for summary in summaries:
        compare = summary["compare"]
        arms = ["sft", BASE, "rl_lora", "rarl"] if compare else [BASE, RL_STAGE]
        for prompt in next(iter(summary["runs"].values())):
            for row in paired_rows(summary, prompt, arms):
                rows.append(
                    [
                        summary["seed"],
                        prompt,
                        row["dataset"],
                        row["comparison"],
                        row["n"],
                        row["a"],
                        row["b"],
                        row["difference"],
                        row["p"],
                        "yes" if excludes_zero(row["difference"]) else "no",
                    ]
                )
    headers = [
        "seed",
        "prompt",
        "dataset",
        "B vs A",
        "n",
        "A %",
        "B %",
        "B − A (pp)",
        "McNemar p",
        "CI excl. 0",
    ]
    notes = [
        "From the report's paired table (rarl Acc., matched items): B − A in percentage points with its 95% "
        "paired bootstrap CI; McNemar's exact test.",
        "synthetic: held-out images, the trained question phrasing; synthetic_shift: the same images asked "
        "in a phrasing no arm trained on.",
    ]
    return Table(
        "rarl demo: paired held-out accuracy",
        headers,
        rows,
        notes,
        slug="demo",
        digits={"McNemar p": 3, "A %": 1, "B %": 1},
    )


def spread_table(summaries: list[dict[str, Any]]) -> Any:
    """Mean ± SD (min–max) over seeds of each paired difference, and on how many seeds its CI excluded 0."""
    from rarl.report.tables import Table
    from rarl.stats import summary_spread

    groups: dict[tuple[str, str, str], list[Any]] = {}
    for summary in summaries:
        arms = ["sft", BASE, "rl_lora", "rarl"] if summary["compare"] else [BASE, RL_STAGE]
        for prompt in next(iter(summary["runs"].values())):
            for row in paired_rows(summary, prompt, arms):
                groups.setdefault((prompt, row["dataset"], row["comparison"]), []).append(row["difference"])
    rows = []
    for (prompt, dataset, comparison), diffs in groups.items():
        spread = summary_spread([d.value for d in diffs if d is not None and d.value is not None])
        sd = "" if spread["sd"] is None else f" ± {spread['sd']:.1f}"
        rows.append(
            [
                prompt,
                dataset,
                comparison,
                f"{spread['mean']:+.1f}{sd} ({spread['min']:+.1f} to {spread['max']:+.1f})",
                f"{sum(excludes_zero(d) for d in diffs)}/{len(diffs)}",
            ]
        )
    headers = ["prompt", "dataset", "B vs A", "B − A (pp) mean ± SD (min to max)", "seeds with CI excl. 0"]
    return Table(f"over {len(summaries)} seeds", headers, rows, slug="demo_seeds")


def write_reports(summary: dict[str, Any]) -> list[Path]:
    """``rarl report`` of each prompt's runs (``<output_dir>/report/<prompt>/report.md``): every table of
    the report (rule metrics, paired comparison, subgroups) and the reward curves."""
    from rarl.report.tables import build_report

    out = Path(summary["runs"][BASE][next(iter(summary["runs"][BASE]))]).parent.parent / "report"
    arms = ["sft", BASE, "rl_lora", "rarl"] if summary["compare"] else [BASE, RL_STAGE]
    written = []
    for prompt in summary["runs"][BASE]:
        written.append(
            build_report(
                [summary["runs"][arm][prompt] for arm in arms],
                out / prompt,
                labels=[ARM_LABELS[arm] for arm in arms],
                train_runs=[summary["train_runs"][arm] for arm in arms if arm != BASE],
            )["report.md"]
        )
    return written


def mean_reward_trend(metrics_path: Path, window: int = 50) -> tuple[float, float] | None:
    """Mean logged GRPO reward over the first and the last ``window`` steps (one step's reward is noisy)."""
    from rarl.io import read_jsonl

    rewards = [
        float(r["reward"])
        for r in read_jsonl(metrics_path, tolerate_truncated_tail=True)
        if r.get("reward") is not None
    ]
    if not rewards:
        return None
    size = max(1, min(window, len(rewards) // 2 or 1))
    return sum(rewards[:size]) / size, sum(rewards[-size:]) / size


__all__ = [
    "DemoOptions",
    "demo_table",
    "excludes_zero",
    "mean_reward_trend",
    "paired_rows",
    "preset_dir",
    "run_demo",
    "run_demo_seeds",
    "spread_table",
    "write_reports",
]
