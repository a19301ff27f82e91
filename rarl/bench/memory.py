"""`rarl bench memory`: the peak memory of one GRPO step, per phase and in total, predicted without a GPU.

Why: "will this config fit on my GPU?" should have an answer before a GPU is rented. The prediction
(:mod:`rarl.train.memory`) runs the real step — rarl's trainer builder, the real ``trl.GRPOTrainer``,
transformers model and PEFT LoRA — on tensors without data, with the attention kernels CUDA would pick,
and counts every storage the step allocates and frees. Each ``--config`` (a run config plus overrides) and
each ``--bench-configs`` name (the setups of ``rarl bench grpo`` on the Qwen2-VL-2B architecture) is one
row, at the step shape of the flags (G completions of exactly L tokens, square images).

What the numbers are: the tensor bytes live at the step's peak (what ``torch.cuda.max_memory_allocated``
reports), not the process's whole GPU use: the CUDA context, cuBLAS workspaces and the caching allocator's
rounding and fragmentation come on top, and no GPU has calibrated the prediction yet (docs/benchmarks.md).

Outputs: ``--out`` (default ``outputs/bench/memory.json``) and a markdown table beside it (``.md``),
rewritten after every row; each row also goes to the prediction cache under its step digest
(:mod:`rarl.train.memory.store`), where ``rarl train``'s pre-flight finds it again.
"""

from __future__ import annotations

import argparse
import logging
import platform
import time
from pathlib import Path
from typing import Any

from rarl.errors import UserError

logger = logging.getLogger(__name__)

HELP = "GRPO step peak memory per phase (generation, reference, forward+backward, optimizer), no GPU needed"
NOT_MODELLED = {
    "qlora": "4-bit bitsandbytes weights are not modelled (bitsandbytes needs a GPU)",
    "flash_attn": "flash_attention_2 needs the flash-attn package (sdpa rows use the same flash kernel)",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", "-c", action="append", default=[], help="YAML run config (repeatable: one row each)"
    )
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="config overrides applied to every --config"
    )
    parser.add_argument(
        "--bench-configs",
        default="",
        help="comma-separated `rarl bench grpo` configurations on the Qwen2-VL-2B architecture ('all')",
    )
    parser.add_argument("--num-generations", type=int, default=8, help="G (default 8)")
    parser.add_argument(
        "--max-completion-length", type=int, default=512, help="L: every completion is L tokens"
    )
    parser.add_argument("--image-size", type=int, default=448, help="square image side (default 448)")
    parser.add_argument(
        "--kernels",
        choices=("cuda", "cpu"),
        default="cuda",
        help="attention kernels simulated: CUDA's flash/memory-efficient (default) or the CPU ones",
    )
    parser.add_argument(
        "--device",
        choices=("cuda", "cpu"),
        default="cuda",
        help="the device the run trains on, for its precision (cuda: bf16 as training picks it)",
    )
    parser.add_argument(
        "--out", default="outputs/bench/memory.json", help="JSON result path (.md written beside)"
    )


def _rows(args: argparse.Namespace) -> list[tuple[str, str, Any]]:
    """(name, source, RunConfig or reason it is not modelled) for every requested row, checked first."""
    from rarl.config import load_config

    rows: list[tuple[str, str, Any]] = []
    for path in args.config:
        rows.append((Path(path).stem, path, load_config(path, list(args.overrides))))
    names = [n.strip() for n in args.bench_configs.split(",") if n.strip()]
    if names:
        from rarl.bench.grpo import CONFIGS, BenchSettings, bench_run_config
        from rarl.models import HUB_MODEL_ID

        if names == ["all"]:
            names = list(CONFIGS)
        unknown = [n for n in names if n not in CONFIGS]
        if unknown:
            valid = ", ".join(CONFIGS)
            raise UserError(f"--bench-configs: unknown configuration(s) {unknown}; valid: {valid}")
        settings = BenchSettings(
            arch="qwen2-vl-2b",
            device="cuda",
            num_generations=args.num_generations,
            max_completion_length=args.max_completion_length,
            image_size=args.image_size,
        )
        for name in names:
            if name in NOT_MODELLED:
                rows.append((name, "rarl bench grpo", NOT_MODELLED[name]))
                continue
            run = _bench_run(CONFIGS[name], settings, HUB_MODEL_ID, bench_run_config)
            rows.append((name, "rarl bench grpo", run))
    if not rows:
        raise UserError("give at least one --config FILE or --bench-configs NAMES")
    for flag, value, low in [
        ("--num-generations", args.num_generations, 2),
        ("--max-completion-length", args.max_completion_length, 1),
        ("--image-size", args.image_size, 28),
    ]:
        if value < low:
            raise UserError(f"{flag} must be >= {low}, got {value}")
    return rows


def _bench_run(config: Any, settings: Any, model_id: str, build: Any) -> Any:
    """A `rarl bench grpo` setup as a RunConfig on the published 2B architecture (no weights needed)."""
    run = build(config, settings, Path("outputs/bench/memory-unused"))
    run.model.name_or_path = model_id
    return run.validate()


def _row(
    name: str, source: str, run: Any, args: argparse.Namespace, done: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    from rarl.train.memory import StepShape, predict_grpo_memory
    from rarl.train.memory.store import step_digest, store_prediction

    row: dict[str, Any] = {"name": name, "source": source}
    if isinstance(run, str):
        return {**row, "status": "not modelled", "reason": run}
    if run.train.method != "grpo" or run.train.grpo.get("use_vllm"):
        why = "SFT" if run.train.method != "grpo" else "vLLM generation"
        return {**row, "status": "not modelled", "reason": f"{why} is not modelled (GRPO with transformers)"}
    shape = StepShape(args.num_generations, args.max_completion_length, args.image_size)
    key = step_digest(run, shape, args.kernels, args.device)
    row["step_digest"] = key
    if key in done:  # the same step as an earlier row: its numbers, said so
        same = done[key]
        return {**same, **row, "same_step_as": same["name"], "simulation_seconds": 0.0}
    start = time.perf_counter()
    try:
        kernels, device = args.kernels, args.device
        prediction = predict_grpo_memory(run, shape, attention_kernels=kernels, target_device=device)
    except UserError:
        raise
    except Exception as exc:  # one row that cannot be simulated must not lose the others
        logger.exception("row %s failed", name)
        return {**row, "status": "error", "reason": f"{type(exc).__name__}: {str(exc).strip()[:200]}"}
    done[key] = {
        **row,
        "status": "ok",
        "model": run.model.name_or_path,
        **prediction.as_dict(),
        "simulation_seconds": round(time.perf_counter() - start, 1),
    }
    store_prediction(done[key])  # `rarl train`'s pre-flight finds it again (rarl.train.memory.store)
    return done[key]


def run(args: argparse.Namespace) -> int:
    import torch
    from rich.console import Console

    from rarl.io import atomic_write_json, atomic_write_text

    console = Console(stderr=True, soft_wrap=True)
    rows = _rows(args)
    out = Path(args.out)
    report: dict[str, Any] = {
        "command": _command(args),
        "environment": {
            "date": time.strftime("%Y-%m-%d"),
            "torch": torch.__version__,
            "python": platform.python_version(),
            **_versions(),
        },
        "shape": {
            "num_generations": args.num_generations,
            "max_completion_length": args.max_completion_length,
            "image_size": args.image_size,
            "attention_kernels": args.kernels,
            "device": args.device,
        },
        "results": [],
    }
    done: dict[str, dict[str, Any]] = {}
    for index, (name, source, config) in enumerate(rows, 1):
        console.print(f"[bold]\\[{index}/{len(rows)}][/bold] {name} ({source})")
        row = _row(name, source, config, args, done)
        report["results"].append(row)
        console.print(markdown_line(row))
        atomic_write_json(out, report)
        atomic_write_text(out.with_suffix(".md"), markdown(report))
    console.print(f"wrote {out} and {out.with_suffix('.md')}")
    print(out.with_suffix(".md").read_text(encoding="utf-8"))
    return 0


def _versions() -> dict[str, str]:
    from importlib import metadata

    return {name: metadata.version(name) for name in ("transformers", "trl", "peft")}


def _command(args: argparse.Namespace) -> str:
    parts = ["rarl bench memory"]
    parts += [f"--config {c}" for c in args.config]
    if args.bench_configs:
        parts.append(f"--bench-configs {args.bench_configs}")
    parts.append(
        f"--num-generations {args.num_generations} --max-completion-length {args.max_completion_length} "
        f"--image-size {args.image_size} --kernels {args.kernels} --device {args.device} --out {args.out}"
    )
    parts += list(args.overrides)
    return " ".join(parts)


# --------------------------------------------------------------------------------------------------
# table

PHASE_COLUMNS = ("generation", "reward", "reference", "forward_backward", "optimizer")
TABLE_HEADER = (
    "| row | source | batch x GA | dtype | LoRA | grad. ckpt | attn | beta | resident GiB | generation GiB "
    "| reward GiB | reference GiB | fwd+bwd GiB | optimizer GiB | **peak GiB** | sim s |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def markdown_line(row: dict[str, Any]) -> str:
    if row["status"] != "ok":
        return f"| {row['name']} | {row['source']} | {row['status']}: {row['reason']} |" + " |" * 13
    s = row["settings"]
    cells = [
        row["name"],
        row["source"],
        f"{s['per_device_train_batch_size']} x {s['gradient_accumulation_steps']}",
        s["dtype"],
        "yes" if s["lora"] else "no",
        "yes" if s["gradient_checkpointing"] else "no",
        s["attn_implementation"],
        f"{s['beta']:g}" if s["beta"] is not None else "",
        f"{row['resident_gib']:.2f}",
        *(f"{row['phases_gib'][p]:.2f}" for p in PHASE_COLUMNS),
        f"**{row['total_gib']:.2f}**",
        f"= {row['same_step_as']}" if row.get("same_step_as") else f"{row['simulation_seconds']:.0f}",
    ]
    return "| " + " | ".join(cells) + " |"


def markdown(report: dict[str, Any]) -> str:
    shape, env = report["shape"], report["environment"]
    return "\n".join(
        [
            "# Predicted peak memory of one GRPO step (no GPU)",
            "",
            f"Command: `{report['command']}`",
            "",
            f"Predicted {env['date']} with torch {env['torch']}, transformers {env['transformers']}, trl "
            f"{env['trl']}, peft {env['peft']}: G={shape['num_generations']} completions of exactly "
            f"{shape['max_completion_length']} tokens, {shape['image_size']}x{shape['image_size']} images, "
            f"precision as on {shape['device']}, {shape['attention_kernels']} attention kernels. Each "
            "column is the peak of live tensor bytes while that phase runs (weights, optimizer states and "
            "whatever the phase keeps), on the second of two simulated optimizer steps; the peak adds the "
            "reward models' weights (BERTScore). A row's batch x GA is the config's own round of "
            "completions per optimizer step.",
            "",
            TABLE_HEADER,
            *[markdown_line(r) for r in report["results"]],
            "",
            "Uncertainty (no GPU has calibrated these numbers yet): the prediction is the tensor bytes "
            "the step allocates, i.e. what `torch.cuda.max_memory_allocated` would report. Not included: "
            "the CUDA context (about 0.3-0.6 GiB), cuBLAS/cuDNN workspaces, memory a CUDA kernel allocates "
            "inside itself, and the caching allocator's rounding and fragmentation "
            "(`max_memory_reserved` is typically 5-20% above allocated). On CPU the same counting agrees "
            "with the allocator's own records to within 1% per phase (tests/test_bench_memory.py); the "
            "GPU-side error has not been measured. Leave at least 1 GiB plus 10% of headroom until a GPU "
            "run calibrates it.",
            "",
        ]
    )


__all__ = ["HELP", "add_arguments", "markdown", "markdown_line", "run"]
