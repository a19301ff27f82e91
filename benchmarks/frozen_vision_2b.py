"""Forward+backward of the Qwen2-VL-2B architecture with LoRA + gradient checkpointing, before and after the
frozen-vision fix (issue 25 item 1), on CPU: seconds and peak memory from torch.profiler's memory records.

Run from the repository root (fp32 2B model: ~9 GB RAM, one process, model built once):

    PYTHONPATH=. python benchmarks/frozen_vision_2b.py --rows 2 --image-size 224 --completion 16

"before" is the same model with the vision tower's input-grad hook put back the way transformers, PEFT and
TRL place it (``restore_tower_embeddings`` + re-enabling the hooks); "after" is rarl's loader behaviour.
The batch is what the GRPO loss forward sees: ``--rows`` copies of one prompt (image + question) followed by
``--completion`` tokens. Peak = max over time of the running sum of the profiler's allocation records
during the step, i.e. the bytes the step itself had live above what existed before it.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch


def _peak_bytes(prof: torch.profiler.profile) -> int:
    """Max of the running sum of the allocator's records (allocations positive, frees negative)."""
    records = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    live = peak = 0
    for event in sorted(records, key=lambda e: e.start_ns()):
        live += event.nbytes()
        peak = max(peak, live)
    return peak


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--completion", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="benchmarks/frozen_vision_2b_cpu.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from peft import get_peft_model
    from PIL import Image

    from rarl.bench.grpo.settings import BenchSettings
    from rarl.bench.grpo.setup import arch_for_tokenizer, build_processor
    from rarl.config import LoraSettings
    from rarl.models import build_model_from_arch, freeze_vision_tower, lora_config, vision_tower
    from rarl.models._checkpointing_hooks import restore_tower_embeddings
    from rarl.prompts import inference_messages

    settings = BenchSettings(arch="qwen2-vl-2b", device="cpu", image_size=args.image_size)
    processor = build_processor(settings)
    model = build_model_from_arch(arch_for_tokenizer(processor.tokenizer, "sdpa"), torch.float32, "cpu")
    freeze_vision_tower(model)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model = get_peft_model(model, lora_config(LoraSettings()))
    model.enable_input_require_grads()  # as TRL's trainers do
    base = model.base_model.model

    text = processor.apply_chat_template(
        inference_messages("Is there an opacity in the left lung?"),
        add_generation_prompt=True,
        tokenize=False,
    )
    image = Image.new("RGB", (args.image_size, args.image_size), (40, 40, 40))
    inputs = processor(text=[text] * args.rows, images=[image] * args.rows, return_tensors="pt", padding=True)
    generator = torch.Generator().manual_seed(0)
    completion = torch.randint(0, 1000, (args.rows, args.completion), generator=generator)
    prompt_shape = tuple(inputs["input_ids"].shape)
    for key, value in list(inputs.items()):  # per-token columns (mask, mm_token_type_ids) grow with it
        if key != "input_ids" and torch.is_tensor(value) and tuple(value.shape) == prompt_shape:
            fill = torch.ones_like(completion) if key == "attention_mask" else torch.zeros_like(completion)
            inputs[key] = torch.cat([value, fill.to(value.dtype)], dim=1)
    inputs["input_ids"] = torch.cat([inputs["input_ids"], completion], dim=1)

    def step() -> dict[str, float]:
        model.zero_grad(set_to_none=True)
        torch.manual_seed(0)  # the same LoRA dropout masks in both runs
        with torch.profiler.profile(
            activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True
        ) as prof:
            start = time.perf_counter()
            loss = model(**inputs, labels=inputs["input_ids"]).loss
            loss.backward()
            seconds = time.perf_counter() - start
        grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
        return {"seconds": seconds, "peak_bytes": _peak_bytes(prof), "grads": grads}

    results = {}
    for label in ("before", "after"):
        tower = vision_tower(model)
        if label == "before":
            restore_tower_embeddings(tower)
        else:
            freeze_vision_tower(model)
        base.disable_input_require_grads()
        base.enable_input_require_grads()
        results[label] = step()
        print(label, round(results[label]["seconds"], 2), "s", results[label]["peak_bytes"] / 2**30, "GiB")
    before, after = results["before"], results["after"]
    max_diff = max((before["grads"][n] - after["grads"][n]).abs().max().item() for n in after["grads"])
    max_grad = max(g.abs().max().item() for g in after["grads"].values())
    report = {
        "what": "LoRA (r8 q/k/v/o, LM only) fwd+bwd of the Qwen2-VL-2B architecture, gradient checkpointing, "
        "frozen vision tower; before/after the frozen-vision fix",
        "command": "python benchmarks/frozen_vision_2b.py "
        f"--rows {args.rows} --image-size {args.image_size} --completion {args.completion} "
        f"--threads {args.threads}",
        "sequence_length": int(inputs["input_ids"].shape[1]),
        "rows": args.rows,
        "image_size": args.image_size,
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "threads": args.threads,
        "lora_grad_tensors": len(after["grads"]),
        "max_abs_lora_grad_difference": max_diff,
        "max_abs_lora_grad": max_grad,
        **{
            label: {"seconds": round(r["seconds"], 3), "peak_gib": round(r["peak_bytes"] / 2**30, 4)}
            for label, r in results.items()
        },
    }
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2)
        handle.write("\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
