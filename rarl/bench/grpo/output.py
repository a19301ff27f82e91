"""The JSON report and its markdown table, rewritten atomically after every configuration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rarl.io import atomic_write_json, atomic_write_text

# --------------------------------------------------------------------------------------------------
# output


def _memory_cell(row: dict[str, Any]) -> str:
    """Peak memory; on CPU also the growth over the process's memory before the configuration started."""
    above = row.get("peak_memory_above_baseline_gib")
    text = f"{row['peak_memory_gib']:.2f}"
    return f"{text} (+{above:.2f})" if above is not None else text


def markdown_line(row: dict[str, Any]) -> str:
    """One table row: the numbers a reader compares across configurations."""
    if row["status"] != "ok":
        return f"| {row['config']} | {row['status']}: {row.get('reason', '')} |" + " |" * 12
    s, each = row["seconds_per_step"], row["seconds_per_step_each"]
    mfu = f"{100 * row['mfu']:.1f}%" if row.get("mfu") is not None else "n/a"
    bw = row.get("rollout_bandwidth_util")
    bw_text = f"{100 * bw:.0f}%" if bw is not None else "n/a"
    cells = [
        row["config"],
        f"{s['total']:.3f} ({min(each):.2f}-{max(each):.2f})",
        *(f"{s[k]:.3f}" for k in ("generation", "reward", "logprob", "forward_backward")),
        f"{s['optimizer'] + s['other']:.3f}",
        f"{row['generated_tokens_per_s']:.1f}",
        f"{row['samples_per_s']:.2f}",
        _memory_cell(row),
        f"{row['achieved_tflops']:.3g}",
        mfu,
        bw_text,
        f"{row['completion_length_min']}-{row['completion_length_max']}",
    ]
    return "| " + " | ".join(cells) + " |"


TABLE_HEADER = (
    "| config | s/step (min-max) | generation s | reward s | ref logprob s | fwd+bwd s | optim+other s "
    "| gen tok/s | samples/s | peak mem GiB | TFLOP/s | MFU | rollout BW | gen len |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def markdown(report: dict[str, Any]) -> str:
    """The results as a markdown section: hardware, settings, table, configuration legend, formulas."""
    env, st = report["environment"], report["settings"]
    threads = env["cpu_threads"]
    hardware = env.get("gpu") or f"CPU ({env['cpu']}, {threads} torch thread{'s' if threads != 1 else ''})"
    memory_kind = next((r.get("memory_kind") for r in report["results"] if r.get("memory_kind")), "")
    lines = [
        f"# GRPO step cost: {st['arch']} on {hardware}",
        "",
        f"Command: `{report['command']}`",
        "",
        f"Measured {env['date']} with torch {env['torch']}, transformers {env['transformers']}, "
        f"trl {env['trl']}, peft {env['peft']}. G={st['num_generations']} completions per step (one prompt), "
        f"every completion exactly {st['max_completion_length']} tokens, "
        f"{st['image_size']}x{st['image_size']} images, rewards {', '.join(st['rewards'])}; mean of "
        f"{st['steps']} steps after {st['warmup_steps']} warm-up step(s). Peak memory: {memory_kind}. "
        "Random weights (speed and memory do not depend on them).",
        "",
        TABLE_HEADER,
        *[markdown_line(r) for r in report["results"]],
        "",
        "Configurations:",
        "",
        *[f"- `{r['config']}`: {r['description']}" for r in report["results"]],
        "",
        "Peak FLOP/s and bandwidth for MFU and rollout BW: "
        + next((r["peak_source"] for r in report["results"] if r.get("peak_source")), "n/a")
        + ". Formulas: docs/benchmarks.md and the JSON's `formulas`.",
        "",
    ]
    return "\n".join(lines)


def write_report(report: dict[str, Any], out: Path) -> None:
    atomic_write_json(out, report)
    atomic_write_text(out.with_suffix(".md"), markdown(report))
