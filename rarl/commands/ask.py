"""`rarl ask`: one question about one image (PNG/JPG/DICOM), answered with reasoning.

``rarl ask --model Qwen/Qwen2-VL-2B-Instruct --adapter outputs/run --image scan.dcm "Is the lung healthy?"``
prints the model's reasoning and its answer (``--json`` for a machine-readable record). It uses the same
inference prompt, image loading and answer extraction as ``rarl eval``, so what you see here is what the
benchmarks score.
"""

from __future__ import annotations

import argparse

HELP = "Answer one question about one image (PNG/JPG/DICOM) with reasoning"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("question", help='the question, e.g. "Is there a pleural effusion?"')
    parser.add_argument("--image", required=True, help="image file: PNG, JPG or DICOM (.dcm)")
    parser.add_argument("--model", required=True, help="hub id, local checkpoint directory, or 'tiny'")
    parser.add_argument("--adapter", help="trained LoRA adapter directory (e.g. a rarl train output)")
    parser.add_argument("--choices", nargs="+", help="options of a multiple-choice question")
    parser.add_argument("--prompt", choices=["reasoning", "non_reasoning"], default="reasoning")
    parser.add_argument("--max-new-tokens", type=int, default=512)
    parser.add_argument(
        "--max-pixels", type=int, default=448 * 448, help="image pixel budget (default 448*448)"
    )
    parser.add_argument("--dtype", choices=["auto", "bfloat16", "float16", "float32"], default="auto")
    parser.add_argument("--device", help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--json", action="store_true", help="print the prediction record as JSON")


def check_device(device: str | None) -> str | None:
    """``device`` if this machine has it; a :class:`UserError` now rather than a CUDA traceback later."""
    from rarl.errors import UserError

    if device is None:
        return None
    import torch

    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise UserError(f"--device {device!r}: not a device name (use cpu, cuda or cuda:N)") from None
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise UserError(f"--device {device}: no CUDA GPU is available here (use --device cpu)")
        if parsed.index is not None and parsed.index >= count:
            raise UserError(f"--device {device}: only {count} CUDA device(s) here (cuda:0..cuda:{count - 1})")
    elif parsed.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"--device {device}: MPS is not available here (use --device cpu)")
    elif parsed.type not in ("cpu", "cuda", "mps"):
        raise UserError(f"--device {device!r}: unsupported device type (use cpu, cuda or cuda:N)")
    return device


def run(args: argparse.Namespace) -> int:
    import json

    from rarl.config import ModelConfig
    from rarl.data.budget import checked_image_tokens
    from rarl.data.images import load_image
    from rarl.errors import UserError
    from rarl.eval.generate import generate_predictions
    from rarl.models import load_model, load_processor, model_label
    from rarl.schema.sample import Sample

    if not args.question.strip():
        raise UserError("the question is empty")
    if args.max_new_tokens < 1:
        raise UserError(f"--max-new-tokens must be at least 1 (got {args.max_new_tokens})")
    config = ModelConfig(
        name_or_path=args.model, adapter_path=args.adapter, dtype=args.dtype, max_pixels=args.max_pixels
    )
    # The same range checks as a config file's model section, reported under the flag's name.
    problems = [e.replace("model.max_pixels", "--max-pixels") for e in config.validation_errors("model")]
    if problems:
        raise UserError("; ".join(problems))
    check_device(args.device)
    image = load_image(args.image, max_pixels=args.max_pixels)  # fail on a bad image before loading a model
    checked_image_tokens(str(args.image), image.size, config.min_pixels, config.max_pixels)
    processor = load_processor(config)
    model = load_model(config, device=args.device)
    sample = Sample(
        id="ask",
        image=image,
        question=args.question.strip(),
        answer="",
        question_type="choice" if args.choices else "open",
        choices=args.choices,
        dataset="ask",
        split="",
    )
    (record,) = generate_predictions(
        model,
        processor,
        [sample],
        prompt=args.prompt,
        batch_size=1,
        max_new_tokens=args.max_new_tokens,
        model_name=model_label(config),
        progress=False,
    )
    record.image = str(args.image)
    if args.json:
        data = record.to_dict()
        for unused in ("reference_answer", "reference_reasoning", "split", "dataset", "id"):
            data.pop(unused, None)
        print(json.dumps(data, ensure_ascii=False, indent=2))
    else:
        print(f"Reasoning: {record.pred_reasoning or '(none given)'}")
        print(f"Answer: {record.pred_answer or '(none given)'}")
    return 0
