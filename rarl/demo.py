"""The offline demo: the paper's recipe in miniature — SFT warm-up, then GRPO training a LoRA adapter.

Why it exists: to show on a laptop CPU, in minutes, that the training code *learns* — held-out accuracy
far above chance after the warm-up, the LoRA adapter trained by GRPO with the paper's four rewards, the
mean reward rising — and to say with an interval and a paired test whether GRPO improved on the warm-up,
rather than printing two bare percentages. Everything is the real code path
(``rarl.train.run.run_training`` with TRL's SFT and GRPO trainers and PEFT, the real reward functions);
only the model is tiny and the data synthetic.

Honest choices, stated in the output too:

* the tiny model starts from random weights, so the SFT warm-up fully fine-tunes its language model: it
  plays the role of the pretrained base. GRPO then trains only a LoRA adapter (r=8, alpha=16 on
  q/k/v/o of the language model), as in the paper; the warm-up weights stay untouched (checked), and
  the vision tower stays frozen throughout (random but fixed features: colour, texture and bright spots
  survive a random projection);
* held-out questions are asked with the *training* templates (seeded per sample, as in training). A model
  this small never generalises to prompt wording it has not seen, so evaluating it with the inference
  system prompt would measure prompt mismatch, not learning. Real models are evaluated with ``rarl eval``.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rarl.config import RunConfig
from rarl.errors import UserError
from rarl.schema.sample import Sample

log = logging.getLogger(__name__)


def _sft_train_settings() -> dict[str, Any]:
    """SFT warm-up settings under their TRL names (tuned so the warm-up learns within minutes)."""
    return {
        "max_steps": 300,  # 400 left GRPO little to add; 150-200 left the warm-up near chance
        "learning_rate": 3e-3,
        "per_device_train_batch_size": 8,  # SFT targets are ~45 tokens, far below TRL's max_length
    }


def _grpo_train_settings() -> dict[str, Any]:
    """GRPO settings under their TRL names (the LoRA adapter's learning rate is the one that matters)."""
    return {
        "max_steps": 300,
        "learning_rate": 2e-3,  # LoRA: about 10x the 3e-4 that full fine-tuning of this model tolerated
        "per_device_train_batch_size": 32,  # 8 prompts x 4 generations
        "num_generations": 4,
        "max_completion_length": 72,  # room so sampled completions are not truncated
        "temperature": 0.8,
        "scale_rewards": "batch",  # per-group std scaling amplifies reward noise in all-same-answer groups
        "beta": 0.0,  # no KL term: the adapter starts at the warm-up and 300 steps stay close to it
    }


# The paper's RARL rewards and weights (configs/rarl_qwen2vl_2b.yaml): all four at 1.0.
PAPER_REWARDS: dict[str, float] = {"format": 1.0, "length": 1.0, "accuracy": 1.0, "reasoning": 1.0}


@dataclass
class DemoSettings:
    """Sizes and hyper-parameters of the demo; the trainer settings live in ``sft_train``/``grpo_train``.

    ``sft_train`` and ``grpo_train`` hold TRL settings under TRL's names, so they map one to one onto the
    run config's train section; everything else is the demo's own (data sizes, model width, LoRA, seeds).
    """

    output_dir: str = "outputs/demo"
    seed: int = 0
    n_train: int = 512
    n_test: int = 192
    width: int = 64  # hidden size of the tiny language model (rarl.models.build_tiny_model)
    lora_r: int = 8  # the paper's adapter: r=8, alpha=16 on q/k/v/o of the language model
    lora_alpha: int = 16
    rewards: dict[str, float] = field(default_factory=lambda: dict(PAPER_REWARDS))
    sft_train: dict[str, Any] = field(default_factory=_sft_train_settings)
    grpo_train: dict[str, Any] = field(default_factory=_grpo_train_settings)
    eval_batch: int = 32
    threads: int = 1  # one thread makes CPU runs bit-reproducible (same numbers on every run)


def tiny_texts() -> list[str]:
    """Tokenizer corpus: every prompt and every synthetic question/reasoning/answer text."""
    from rarl import prompts
    from rarl.data.synthetic import synthetic_texts
    from rarl.models.tiny import prompt_texts

    return [*prompt_texts(), prompts.REASONING_FORMAT_HINT, *synthetic_texts()]


def demo_config(settings: DemoSettings, model_path: str, method: str) -> RunConfig:
    """The run config of one demo stage (``sft`` or ``grpo``); also written beside its outputs.

    SFT fully fine-tunes the language model (it plays the pretrained base); GRPO trains a LoRA adapter on
    top of it, the paper's recipe. The vision tower stays frozen in both.
    """
    config = RunConfig()
    config.model.name_or_path = model_path
    config.model.dtype = "float32"
    config.model.max_pixels = 112 * 112
    config.model.freeze_vision = True
    config.lora.enabled = method == "grpo"
    config.lora.r = settings.lora_r
    config.lora.alpha = settings.lora_alpha
    config.data.seed = settings.seed
    config.reward.names = list(settings.rewards)
    config.reward.weights = list(settings.rewards.values())
    config.train.method = method  # type: ignore[assignment]
    stage = {
        "output_dir": str(Path(settings.output_dir) / method),
        "seed": settings.seed,
        "logging_steps": 1,
        "report_to": ["tensorboard"],
        **(settings.sft_train if method == "sft" else settings.grpo_train),
    }
    stage["save_steps"] = stage["max_steps"]
    getattr(config.train, method).update(stage)
    return config.validate()


def heldout_accuracy(
    model: Any, processor: Any, samples: list[Sample], config: RunConfig, batch_size: int, max_new_tokens: int
) -> dict[str, Any]:
    """Greedy answers on held-out samples, asked with their seeded training template; ``rarl.accuracy`` by
    type.

    Generation and answer extraction are the evaluation harness's own (``generate_predictions``); only the
    chat messages differ: each sample gets the training template it would have had in training.
    """
    from rarl.eval.generate import generate_predictions
    from rarl.eval.metrics import rule_correct
    from rarl.prompts import training_messages
    from rarl.train.dataset import template_names

    template_of = {
        id(sample): name for sample, name in zip(samples, template_names(samples, config.data), strict=True)
    }
    records = generate_predictions(
        model,
        processor,
        samples,
        prompt="training_template",
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        max_pixels=config.model.max_pixels,
        progress=False,
        messages_fn=lambda sample: training_messages(
            sample.question, template_of[id(sample)], sample.choices
        ),
    )
    from rarl.stats import WILSON, wilson_interval

    correct: dict[str, list[float]] = {}
    hits: list[int] = []
    for sample, record in zip(samples, records, strict=True):
        hit = rule_correct(record)  # rarl.accuracy, the eval's own per-item verdict (and its task's rules)
        hits.append(int(hit))
        kind = (sample.extra or {}).get("kind")
        for key in ("overall", sample.question_type, f"kind/{kind}" if kind else None):
            if key:
                correct.setdefault(key, []).append(float(hit))
    result: dict[str, Any] = {key: sum(v) / len(v) for key, v in sorted(correct.items())}
    for key in ("overall", "closed", "open"):
        if key in correct:
            result[f"{key}_n"] = len(correct[key])
            result[f"{key}_ci"] = list(wilson_interval(sum(correct[key]), len(correct[key])) or ())
    result["n"] = len(records)
    result["interval"] = f"95% {WILSON}"
    result["correct"] = hits  # per held-out item, in order: the paired comparison needs them
    result["examples"] = [record.raw_output for record in records[:3]]
    return result


def mean_reward_trend(metrics_path: Path, window: int | None = None) -> dict[str, Any]:
    """Mean GRPO reward over the first and the last ``window`` logged steps, and its change with a CI.

    The sampled reward of one step is noisy (SD ~0.1 here), so the default window is a sixth of the run
    (50 of 300 steps), not a handful of steps. ``change_ci`` is a bootstrap interval of last - first with
    the steps of each window as independent draws (approximate: consecutive steps share the policy).
    """
    from rarl.io import read_jsonl
    from rarl.stats import bootstrap_difference_interval

    rewards = [
        float(r["reward"])
        for r in read_jsonl(metrics_path, tolerate_truncated_tail=True)
        if r.get("reward") is not None
    ]
    if not rewards:
        return {"first": float("nan"), "last": float("nan"), "window": window or 0}
    size = window if window is not None else max(10, len(rewards) // 6)
    size = max(1, min(size, len(rewards) // 2 or 1))
    first, last = rewards[:size], rewards[-size:]
    change_ci = bootstrap_difference_interval(first, last) if size > 1 else None
    return {
        "first": sum(first) / size,
        "last": sum(last) / size,
        "window": size,
        "steps": len(rewards),
        "change_ci": list(change_ci) if change_ci else None,
    }


def snapshot_weights(model: Any) -> dict[str, Any]:
    """A copy of every parameter, to prove later that LoRA training left the base weights untouched."""
    return {name: param.detach().clone() for name, param in model.named_parameters()}


def adapter_check(before: dict[str, Any], trained: Any) -> dict[str, Any]:
    """Did GRPO train the adapter only? Compares the PEFT model's base weights with ``before``.

    PEFT wraps each targeted projection in place (``q_proj.weight`` becomes ``q_proj.base_layer.weight``
    beside ``q_proj.lora_A/B``); ``lora_B`` starts at zero, so a non-zero ``lora_B`` means it was trained.
    """
    base = trained.get_base_model() if hasattr(trained, "get_base_model") else trained
    lora_b_norm = 0.0
    lora_tensors = 0
    changed: list[str] = []
    max_change = 0.0
    for name, param in base.named_parameters():
        if ".lora_" in name:
            lora_tensors += 1
            if ".lora_B." in name:
                lora_b_norm += float(param.detach().float().norm()) ** 2
            continue
        original = before.get(name.replace(".base_layer", ""))
        if original is None:
            continue
        delta = float((param.detach() - original).abs().max()) if param.numel() else 0.0
        max_change = max(max_change, delta)
        if delta > 0:
            changed.append(name)
    trainable = [n for n, p in base.named_parameters() if p.requires_grad]
    return {
        "lora_tensors": lora_tensors,
        "lora_b_norm": lora_b_norm**0.5,
        "adapter_trained": lora_b_norm > 0,
        "trainable_tensors": len(trainable),
        "only_lora_trainable": bool(trainable) and all(".lora_" in n for n in trainable),
        "base_weights_unchanged": not changed,
        "base_max_abs_change": max_change,
        "vision_lora_tensors": sum(1 for n in trainable if "visual" in n),
    }


def compare_stages(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Paired held-out comparison of two stages on the same items: difference, bootstrap CI, McNemar p."""
    from rarl.stats import BOOTSTRAP, paired_difference

    paired = paired_difference(before["correct"], after["correct"])
    if paired is None:
        return {"n": 0}
    return {
        "n": paired.n,
        "difference": paired.difference,
        "ci": list(paired.interval),
        "mcnemar_p": paired.mcnemar_p,
        "before_only_correct": paired.a_only,
        "after_only_correct": paired.b_only,
        "ci_excludes_zero": paired.interval[0] > 0 or paired.interval[1] < 0,
        "interval": f"95% paired {BOOTSTRAP}; McNemar's exact test",
    }


def check_demo_stage_dir(out: Path, stage: str) -> None:
    """Refuse to delete a training run the demo did not make (``--output-dir`` pointed at real runs).

    The demo starts each stage from scratch by deleting ``<out>/<stage>``; a run there whose
    ``resolved_config.yaml`` names another model than the demo's tiny one is somebody's result.
    """
    import yaml

    from rarl.schema.rundir import checkpoints, final_weights

    folder = out / stage
    if not folder.is_dir() or not (checkpoints(folder) or final_weights(folder)):
        return
    resolved = folder / "resolved_config.yaml"
    try:
        model = ((yaml.safe_load(resolved.read_text(encoding="utf-8")) or {}).get("model") or {}).get(
            "name_or_path"
        )
    except (OSError, yaml.YAMLError, AttributeError):
        model = None
    if model != str(out / "tiny_model"):
        raise UserError(
            f"{folder} holds a training run the demo did not make (model {model or 'unknown'}); the demo "
            "deletes its stage folders, so choose another --output-dir"
        )


def run_demo(settings: DemoSettings | None = None) -> dict[str, Any]:
    """Build, train (SFT, then GRPO with a LoRA adapter), evaluate; write ``results.json``; return it."""
    import torch

    from rarl.data.synthetic import CHANCE_LEVEL, generate_samples
    from rarl.io import atomic_write_json
    from rarl.models import build_tiny_model, load_model, load_processor
    from rarl.train.run import run_training

    settings = settings or DemoSettings()
    torch.set_num_threads(settings.threads)
    out = Path(settings.output_dir)
    for stage in ("sft", "grpo"):
        check_demo_stage_dir(out, stage)
    for stage in ("sft", "grpo"):
        shutil.rmtree(out / stage, ignore_errors=True)  # the demo always starts from scratch
    started, cpu_started = time.time(), time.process_time()
    timings: dict[str, float] = {}

    model_path = str(
        build_tiny_model(out / "tiny_model", seed=settings.seed, texts=tiny_texts(), width=settings.width)
    )
    sft_config = demo_config(settings, model_path, "sft")
    grpo_config = demo_config(settings, model_path, "grpo")
    train_samples = generate_samples(settings.n_train, seed=settings.seed, split="train")
    test_samples = generate_samples(settings.n_test, seed=settings.seed, split="test")
    torch.manual_seed(settings.seed)
    model = load_model(sft_config.model, model_path)
    processor = load_processor(sft_config.model, model_path)

    def evaluate(stage: str, trained: Any) -> dict[str, Any]:
        t = time.time()
        result = heldout_accuracy(
            trained,
            processor,
            test_samples,
            sft_config,
            settings.eval_batch,
            settings.grpo_train["max_completion_length"] + 8,  # room beyond the longest sampled completion
        )
        timings[f"eval_{stage}_s"] = round(time.time() - t, 1)
        log.info("held-out accuracy %s: %.3f %s", stage, result["overall"], result.get("overall_ci"))
        return result

    accuracy = {"untrained": evaluate("untrained", model)}
    t = time.time()
    run_training(sft_config, samples=train_samples, model=model, processor=processor)
    timings["sft_s"] = round(time.time() - t, 1)
    accuracy["sft"] = evaluate("sft", model)
    before = snapshot_weights(model)
    t = time.time()
    grpo = run_training(grpo_config, samples=train_samples, model=model, processor=processor)
    timings["grpo_s"] = round(time.time() - t, 1)
    trained = grpo["trainer"].model  # the PEFT model: warm-up weights + the LoRA adapter
    trained.eval()
    accuracy["sft_grpo"] = evaluate("sft_grpo", trained)
    adapter = adapter_check(before, trained)
    adapter["saved"] = (Path(grpo_config.train.output_dir) / "adapter_config.json").is_file()
    reward = mean_reward_trend(Path(grpo_config.train.output_dir) / "metrics.jsonl")
    comparison = compare_stages(accuracy["sft"], accuracy["sft_grpo"])

    far = CHANCE_LEVEL["overall"] + 0.2
    results = {
        "accuracy": {
            stage: {k: v for k, v in r.items() if k not in ("examples", "correct")}
            for stage, r in accuracy.items()
        },
        "chance": {
            "overall": CHANCE_LEVEL["overall"],
            "closed": CHANCE_LEVEL["closed"],
            "open": CHANCE_LEVEL["open"],
        },
        "grpo_vs_sft": comparison,
        "grpo_mean_reward": reward,
        "adapter": adapter,
        "examples_after_grpo": accuracy["sft_grpo"]["examples"],
        "learned": {
            "sft_far_above_chance": accuracy["sft"]["overall"] >= far,
            "grpo_far_above_chance": accuracy["sft_grpo"]["overall"] >= far,
            "reward_rises": reward["last"] > reward["first"],
            "adapter_trained": adapter["adapter_trained"],
            "base_weights_unchanged": adapter["base_weights_unchanged"],
        },
        "setup": {
            **asdict(settings),
            "model": f"tiny Qwen2-VL (2 layers, {settings.width} wide); SFT: full fine-tuning of the "
            f"language model; GRPO: LoRA r={settings.lora_r}, alpha={settings.lora_alpha} on q/k/v/o of "
            "the language model; vision tower frozen",
            "eval_prompt": "training templates (seeded per held-out sample), greedy decoding",
            "rewards": dict(zip(grpo_config.reward.names, grpo_config.reward.weights, strict=True)),
        },
        "timings_s": {
            **timings,
            "total_s": round(time.time() - started, 1),
            "cpu_s": round(time.process_time() - cpu_started, 1),
        },
    }
    atomic_write_json(out / "results.json", results)
    return results


def run_demo_seeds(settings: DemoSettings, seeds: int) -> dict[str, Any]:
    """Repeat the demo with ``seeds`` consecutive seeds (each in ``seed<k>/``); mean ± spread of each number.

    One seed's held-out interval covers test-set sampling only; repeating over seeds shows how much the
    result moves with the model's initialisation, the data draw and the sampled rollouts as well.
    """
    from dataclasses import replace

    from rarl.io import atomic_write_json

    runs = []
    for offset in range(seeds):
        seed = settings.seed + offset
        runs.append(
            run_demo(replace(settings, seed=seed, output_dir=str(Path(settings.output_dir) / f"seed{seed}")))
        )
    summary = seed_summary(runs)
    atomic_write_json(Path(settings.output_dir) / "results.json", summary)
    return summary


def seed_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean, sample SD, min and max over demo runs of each stage's accuracy and the GRPO-vs-SFT change."""
    from rarl.stats import summary_spread

    def spread(get: Any) -> dict[str, Any]:
        return summary_spread([float(get(run)) for run in runs])

    return {
        "seeds": [run["setup"]["seed"] for run in runs],
        "accuracy": {
            stage: spread(lambda run, stage=stage: run["accuracy"][stage]["overall"])
            for stage in ("untrained", "sft", "sft_grpo")
        },
        "grpo_vs_sft_difference": spread(lambda run: run["grpo_vs_sft"]["difference"]),
        "grpo_better_seeds": sum(run["grpo_vs_sft"]["difference"] > 0 for run in runs),
        "grpo_ci_above_zero_seeds": sum(run["grpo_vs_sft"]["ci"][0] > 0 for run in runs),
        "reward_rises_seeds": sum(run["learned"]["reward_rises"] for run in runs),
        "chance": runs[0]["chance"] if runs else None,
        "runs": runs,
    }


def _fmt_ci(value: float, interval: list[float] | None) -> str:
    return f"{value:.3f} [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else f"{value:.3f}"


def results_table(results: dict[str, Any]) -> str:
    """A plain-text table of one demo run (what ``rarl demo`` prints): accuracy with 95% CIs and n."""
    chance = results["chance"]
    lines = [
        f"{'stage':<14}{'overall [95% CI]':>26}{'closed':>9}{'open':>9}{'n':>6}",
        f"{'chance':<14}{chance['overall']:>26.3f}{chance['closed']:>9.3f}{chance['open']:>9.3f}",
    ]
    names = {"untrained": "untrained", "sft": "SFT warm-up", "sft_grpo": "+ GRPO (LoRA)"}
    for stage, acc in results["accuracy"].items():
        overall = _fmt_ci(acc.get("overall", 0.0), acc.get("overall_ci"))
        cells = "".join(f"{acc.get(key, 0.0):>9.3f}" for key in ("closed", "open"))
        lines.append(f"{names.get(stage, stage):<14}{overall:>26}{cells}{acc['n']:>6}")
    diff = results["grpo_vs_sft"]
    if diff.get("n"):
        lines.append(
            f"GRPO - SFT on the same {diff['n']} items: {diff['difference']:+.3f} "
            f"[{diff['ci'][0]:+.3f}, {diff['ci'][1]:+.3f}] (95% paired bootstrap), McNemar exact "
            f"p = {diff['mcnemar_p']:.3g} ({diff['before_only_correct']} items right only before GRPO, "
            f"{diff['after_only_correct']} only after)"
        )
    reward = results["grpo_mean_reward"]
    change = reward.get("change_ci")
    lines.append(
        f"GRPO mean reward: first {reward['window']} steps {reward['first']:.3f} -> "
        f"last {reward['window']} steps {reward['last']:.3f}"
        + (f" (change 95% CI [{change[0]:+.3f}, {change[1]:+.3f}])" if change else "")
    )
    adapter = results["adapter"]
    lines.append(
        f"LoRA adapter: {adapter['lora_tensors']} tensors, trained={adapter['adapter_trained']}, "
        f"base weights unchanged={adapter['base_weights_unchanged']}"
    )
    return "\n".join(lines)


def seeds_table(summary: dict[str, Any]) -> str:
    """Mean ± SD (min-max) over seeds, printed by ``rarl demo --seeds N``."""
    names = {"untrained": "untrained", "sft": "SFT warm-up", "sft_grpo": "+ GRPO (LoRA)"}
    n = len(summary["seeds"])
    lines = [
        f"held-out accuracy over {n} seeds ({', '.join(map(str, summary['seeds']))}): mean ± SD (min-max)"
    ]
    for stage, spread in summary["accuracy"].items():
        lines.append(f"{names[stage]:<14}{_spread(spread)}")
    lines.append(f"{'GRPO - SFT':<14}{_spread(summary['grpo_vs_sft_difference'])}")
    lines.append(
        f"GRPO better on {summary['grpo_better_seeds']}/{n} seeds; its 95% CI above 0 on "
        f"{summary['grpo_ci_above_zero_seeds']}/{n}; reward rose on {summary['reward_rises_seeds']}/{n}"
    )
    return "\n".join(lines)


def _spread(spread: dict[str, Any]) -> str:
    sd = spread["sd"]
    return (
        f"{spread['mean']:.3f} ± {sd:.3f} ({spread['min']:.3f}-{spread['max']:.3f})"
        if sd is not None
        else f"{spread['mean']:.3f}"
    )
