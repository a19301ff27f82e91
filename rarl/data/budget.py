"""Token budget: how many tokens each sample's prompt takes (image + text) against the run's limits.

Why: a VLM sequence that is truncated loses image tokens or the answer. Qwen2-VL then fails with "Image
features and image tokens do not match" (the error users of GRPO-for-VLM projects report most), or the
model silently trains on prompts without their answer. Both are decided by numbers known before any model
loads: the image sizes, ``model.min_pixels``/``max_pixels``, the prompt text and the configured lengths.
:func:`preflight` runs in ``rarl train`` and ``rarl eval`` right after the data is loaded and refuses such a
configuration naming the dataset, the sample and the numbers; ``rarl data audit`` reports the same figures.

Image tokens follow Qwen2-VL's processor: the image is first capped at ``max_pixels`` (as
:func:`rarl.data.images.load_image` does), then resized by the processor's own ``smart_resize`` to multiples
of 28 px within ``[min_pixels, max_pixels]``, and every 28x28 block becomes one token (14 px patches, 2x2
merged). The prompt text is counted as the model sees it: the messages rendered through the checkpoint's chat
template (role tags, vision markers, the template's default system turn) and tokenized by its tokenizer, with
the one ``<|image_pad|>`` placeholder per image replaced by the image's tokens, as the processor does.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rarl.errors import UserError
from rarl.schema.sample import Sample

if TYPE_CHECKING:
    from rarl.config import RunConfig

log = logging.getLogger("rarl.data")

PATCH_SIZE = 14
MERGE_SIZE = 2
IMAGE_PLACEHOLDER = "<|image_pad|>"  # one per image in the rendered chat; the processor expands it


def image_tokens(width: int, height: int, min_pixels: int, max_pixels: int) -> int:
    """Visual tokens Qwen2-VL spends on a ``width`` x ``height`` image under the pixel budget.

    Exactly the processor's arithmetic: :func:`~rarl.data.images.capped_size` (what ``load_image`` hands the
    processor), then transformers' ``smart_resize`` with the same budget (which :func:`~rarl.models.
    load_processor` gives the processor whatever the checkpoint's preprocessor_config.json says).
    """
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    from rarl.data.images import capped_size

    width, height = capped_size(width, height, max_pixels)
    resized_h, resized_w = smart_resize(
        height, width, factor=PATCH_SIZE * MERGE_SIZE, min_pixels=min_pixels, max_pixels=max_pixels
    )
    return (resized_h // PATCH_SIZE) * (resized_w // PATCH_SIZE) // (MERGE_SIZE**2)


def checked_image_tokens(label: str, size: tuple[int, int], min_pixels: int, max_pixels: int) -> int:
    """:func:`image_tokens`, or a one-line error naming ``label`` for an image the processor refuses."""
    try:
        return image_tokens(*size, min_pixels, max_pixels)
    except ValueError as exc:  # smart_resize: aspect ratio over 200 (the processor raises the same)
        raise UserError(
            f"{label}: image {size[0]}x{size[1]}: {exc}; Qwen2-VL's processor cannot take it "
            "(crop or pad the image, or drop the row)"
        ) from None


_SIZE_CACHE: dict[str, tuple[int, int]] = {}


def image_size(image: Any) -> tuple[int, int] | None:
    """(width, height) from the file header (cached) or a PIL image; None for a text-only sample."""
    if image is None:
        return None
    if hasattr(image, "size") and not isinstance(image, str):
        return tuple(image.size)  # type: ignore[return-value]
    path = str(image)
    if path not in _SIZE_CACHE:
        from rarl.data.images import is_dicom, load_image

        if is_dicom(path):
            _SIZE_CACHE[path] = load_image(path).size
        else:
            from PIL import Image

            with Image.open(path) as opened:
                _SIZE_CACHE[path] = opened.size
    return _SIZE_CACHE[path]


def require_images(samples: Sequence[Sample]) -> None:
    """Training and evaluation need every sample's image; text-only loads are for inspect/audit only."""
    missing: dict[str, int] = {}
    totals: dict[str, int] = {}
    for sample in samples:
        key = f"{sample.dataset or '?'}/{sample.split or '?'}"
        totals[key] = totals.get(key, 0) + 1
        if sample.image is None:
            missing[key] = missing.get(key, 0) + 1
    if missing:
        key, count = next(iter(missing.items()))
        raise UserError(
            f"{key}: {count} of {totals[key]} samples have no image (the questions were loaded text-only, "
            "which is enough for 'rarl data inspect/audit' but not for a model); set image_dir to the images"
        )


# --------------------------------------------------------------------------------------------------
# counting


class TokenCounter:
    """Counts tokens with the model's tokenizer and chat template, or UTF-8 bytes where none could load.

    ``counter(texts)`` counts plain texts; :meth:`prompts` counts chat prompts as rendered for generation,
    less their image placeholders (the image's own tokens are added by :func:`image_tokens`);
    :meth:`completions` counts SFT targets as the assistant turn they are trained as.
    Without a tokenizer, bytes are an upper bound: a byte-level BPE token covers at least one byte.
    """

    def __init__(self, tokenizer: Any = None, renderer: Any = None) -> None:
        self.tokenizer = tokenizer
        self.renderer = renderer if renderer is not None else tokenizer
        self.exact = tokenizer is not None

    def __call__(self, texts: list[str]) -> list[int]:
        if not texts:
            return []
        if self.tokenizer is None:
            return [len(text.encode("utf-8")) for text in texts]
        return [len(ids) for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]

    def render(self, messages: list[dict[str, Any]], add_generation_prompt: bool = True) -> str:
        """The text the processor sees: the chat template applied (a prompt with the generation prompt)."""
        renderer = self.renderer
        if renderer is None or getattr(renderer, "chat_template", None) is None:
            from jinja2 import Template

            from rarl.models.hub_layout import HUB_CHAT_TEMPLATE  # the usual Qwen2-VL template

            return Template(HUB_CHAT_TEMPLATE).render(
                messages=messages, add_generation_prompt=add_generation_prompt
            )
        return renderer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=add_generation_prompt
        )

    def completions(self, texts: list[str]) -> list[int]:
        """Tokens of each text as the assistant turn that follows a prompt (SFT): the text and the turn's
        closing markup (``<|im_end|>\n`` in Qwen's template), i.e. the rendered conversation less the
        prompt."""
        user = [{"role": "user", "content": "?"}]
        prompt = self.render(user)
        full = [self.render([*user, {"role": "assistant", "content": t}], False) for t in texts]
        if self.tokenizer is None:
            return [len(text.encode("utf-8")) - len(prompt.encode("utf-8")) for text in full]
        base = len(self.tokenizer(prompt, add_special_tokens=False)["input_ids"])
        return [len(ids) - base for ids in self.tokenizer(full, add_special_tokens=False)["input_ids"]]

    def prompts(self, groups: list[list[dict[str, Any]]]) -> list[int]:
        """Tokens of each rendered prompt, not counting its image placeholders."""
        rendered = [self.render(messages) for messages in groups]
        if self.tokenizer is None:
            return [len(text.replace(IMAGE_PLACEHOLDER, "").encode("utf-8")) for text in rendered]
        # the processor tokenizes the whole rendered text (special tokens are matched, never merged)
        pad = self.tokenizer.convert_tokens_to_ids(IMAGE_PLACEHOLDER)
        ids = self.tokenizer(rendered, add_special_tokens=False)["input_ids"]
        return [len(row) - row.count(pad) for row in ids]


def load_token_counter(
    config: RunConfig, processor: Any = None, allow_download: bool = True
) -> tuple[TokenCounter, str]:
    """A token counter from the model's tokenizer and chat template (no weights loaded), and what it is.

    Without a loadable tokenizer the UTF-8 byte count is used: a byte-level BPE token covers at least one
    byte, so it never under-counts (it may refuse a configuration that would fit; the message says so).
    """
    tokenizer = getattr(processor, "tokenizer", processor)
    renderer = processor
    if tokenizer is None:
        try:
            from transformers import AutoProcessor, AutoTokenizer

            from rarl.models import resolve_model_path

            path = resolve_model_path(config.model)
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=not allow_download)
            renderer = tokenizer
            if getattr(tokenizer, "chat_template", None) is None:  # the template may live with the processor
                renderer = AutoProcessor.from_pretrained(path, local_files_only=not allow_download)
        except Exception as exc:  # offline, unknown model...: fall back to the safe upper bound
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            log.info("token budget: no tokenizer (%s); counting UTF-8 bytes as an upper bound", reason)
            return TokenCounter(), "UTF-8 bytes (upper bound)"
    return TokenCounter(tokenizer, renderer), "tokenizer"


def model_context_length(config: RunConfig) -> int | None:
    """``max_position_embeddings`` from the model's config.json when it is available locally."""
    from rarl.models import resolve_model_path

    try:
        path = Path(resolve_model_path(config.model))
    except Exception:
        return None
    file = path / "config.json"
    if not file.is_file():
        return None
    data = json.loads(file.read_text(encoding="utf-8"))
    value = (data.get("text_config") or {}).get("max_position_embeddings") or data.get(
        "max_position_embeddings"
    )
    return int(value) if value else None


def _setting(section: Any, name: str) -> Any:
    if section is None:
        return None
    return section.get(name) if isinstance(section, dict) else getattr(section, name, None)


def configured_limits(config: RunConfig, role: str) -> dict[str, int]:
    """Length limits that would truncate: TRL's ``max_length``/``max_prompt_length``/``vllm_max_model_length``
    (wherever the train section keeps them) and the model's context window."""
    limits: dict[str, int] = {}
    if role == "train":
        train = config.train
        owners = (
            ("train", train),
            ("train.grpo", _setting(train, "grpo")),
            ("train.sft", _setting(train, "sft")),
        )
        for prefix, owner in owners:
            for name in ("max_length", "max_prompt_length", "vllm_max_model_length"):
                value = _setting(owner, name)
                if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                    limits[f"{prefix}.{name}"] = value
    context = model_context_length(config)
    if context:
        limits["model context (max_position_embeddings)"] = context
    return limits


@dataclass
class SampleTokens:
    """One sample's token needs."""

    sample: Sample
    image_tokens: int
    text_tokens: int  # rendered prompt without image tokens (worst training template for role=train)
    target_tokens: int  # SFT target / completion budget / max_new_tokens

    @property
    def prompt_tokens(self) -> int:
        return self.image_tokens + self.text_tokens


def prompt_messages(sample: Sample, role: str, config: RunConfig) -> list[list[dict[str, Any]]]:
    """The chat prompts a sample can be shown with (every training template in use, or the eval prompt;
    ``eval.prompt: training_template`` shows each item one of the training templates)."""
    from rarl import prompts

    if role == "train" or config.eval.prompt == "training_template":
        names = [name for name, ratio in config.data.template_ratios.items() if ratio > 0]
        if not config.data.prompt_diversity:
            names = [config.data.single_template]
        return [prompts.training_messages(sample.question, name, sample.choices) for name in names]
    return [prompts.inference_messages(sample.question, config.eval.prompt, sample.choices)]


def sample_tokens(
    samples: Sequence[Sample], config: RunConfig, role: str, count: TokenCounter
) -> list[SampleTokens]:
    """Token needs of every sample (image via its header, prompt text via ``count``)."""
    groups = [prompt_messages(sample, role, config) for sample in samples]
    flat = count.prompts([messages for group in groups for messages in group])
    method = _setting(config.train, "method")
    targets: list[int]
    if role == "train" and method == "sft":
        targets = count.completions([_sft_target(sample) for sample in samples])
    elif role == "train":
        completion = _setting(config.train, "max_completion_length") or _setting(
            _setting(config.train, "grpo"), "max_completion_length"
        )
        targets = [int(completion or 0)] * len(samples)
    else:
        targets = [int(config.eval.max_new_tokens)] * len(samples)
    result = []
    position = 0
    for sample, group, target in zip(samples, groups, targets, strict=True):
        text_tokens = max(flat[position : position + len(group)])
        position += len(group)
        size = image_size(sample.image)
        label = f"{sample.dataset}/{sample.split} sample {sample.id}"
        visual = (
            checked_image_tokens(label, size, config.model.min_pixels, config.model.max_pixels) if size else 0
        )
        result.append(SampleTokens(sample, visual, text_tokens, target))
    return result


def _sft_target(sample: Sample) -> str:
    """The SFT completion's text (same shape as the trainer's ``<think>…</think><answer>…</answer>``)."""
    return f"<think>{(sample.reasoning or '').strip()}</think><answer>{sample.answer.strip()}</answer>"


# --------------------------------------------------------------------------------------------------
# the check


def budget_problems(
    needs: Sequence[SampleTokens], limits: dict[str, int], role: str, method: str
) -> list[str]:
    """One message per limit that some sample exceeds, naming the worst sample and its numbers."""
    problems = []
    for limit_name, limit in limits.items():
        prompt_only = limit_name.endswith("max_prompt_length")
        whole = [(n.prompt_tokens if prompt_only else n.prompt_tokens + n.target_tokens, n) for n in needs]
        over = [(total, n) for total, n in whole if total > limit]
        if not over:
            continue
        total, worst = max(over, key=lambda pair: pair[0])
        sample = worst.sample
        if prompt_only:
            parts = f"{worst.image_tokens} image + {worst.text_tokens} text tokens"
            cut = "image tokens"
        else:
            what = {"train": "completion" if method != "sft" else "SFT target", "eval": "max_new_tokens"}[
                role
            ]
            parts = (
                f"{worst.image_tokens} image + {worst.text_tokens} text + {worst.target_tokens} {what} tokens"
            )
            cut = "the answer or image tokens"
        problems.append(
            f"{sample.dataset}/{sample.split} sample {sample.id}: {parts} = {total} > {limit_name} {limit} "
            f"({len(over)} of {len(needs)} samples over); truncation would cut {cut}. "
            "Lower model.max_pixels, shorten the completion budget or raise the limit"
        )
    return problems


def preflight(
    config: RunConfig, samples: Sequence[Sample], role: str, processor: Any = None
) -> dict[str, Any]:
    """Refuse (one-line UserError) text-only samples and any sample truncation would cut; else a summary.

    ``role`` is ``"train"`` or ``"eval"``. Called by ``rarl train``/``rarl eval`` before the model loads.
    """
    require_images(samples)
    if not samples:
        return {"samples": 0}
    count, counter = load_token_counter(config, processor)
    needs = sample_tokens(samples, config, role, count)
    limits = configured_limits(config, role)
    method = str(_setting(config.train, "method") or "grpo")
    problems = budget_problems(needs, limits, role, method)
    if problems:
        note = " (counted in UTF-8 bytes: no tokenizer could be loaded)" if counter != "tokenizer" else ""
        raise UserError(f"token budget{note}: " + "; ".join(problems))
    longest = max(needs, key=lambda n: n.prompt_tokens + n.target_tokens)
    summary = {
        "samples": len(needs),
        "max_prompt_tokens": max(n.prompt_tokens for n in needs),
        "max_image_tokens": max(n.image_tokens for n in needs),
        "max_total_tokens": longest.prompt_tokens + longest.target_tokens,
        "limits": limits,
    }
    log.info("token budget (%s): %s", role, summary)
    return summary


__all__ = [
    "SampleTokens",
    "TokenCounter",
    "budget_problems",
    "checked_image_tokens",
    "configured_limits",
    "image_size",
    "image_tokens",
    "load_token_counter",
    "preflight",
    "prompt_messages",
    "require_images",
    "sample_tokens",
]
