"""Generation through an OpenAI-compatible server: ``eval.backend: openai``.

Why: in-process ``generate`` is the slow path for the thousands of items of PathVQA and SLAKE, and cannot
ask an API model at all. A model served by vLLM, SGLang, TGI or Ollama (or an API model used as a
baseline) is asked here with exactly what the local path would give it, so the two are comparable:

* the same chat messages (:func:`rarl.prompts.inference_messages`: system prompt, question, options,
  format hint), the image part sent as a base64 PNG data URL in place of the processor's image token;
* the same image: :func:`rarl.data.images.load_image` with ``model.max_pixels`` (DICOM windowed and
  rendered to RGB exactly as locally), encoded losslessly, so the server receives the local pixels;
* the same records: :func:`rarl.eval.generate.prediction_record` (answer extraction, item fingerprint);
* greedy decoding (temperature 0) unless ``eval.do_sample``; ``max_tokens`` = ``eval.max_new_tokens``.

Requests go through the judges' client (:mod:`rarl.eval.openai_client`: ``concurrency`` at once, bounded
retries, a total deadline per attempt). An item that still fails after its retries stops the run with one
line naming it: the predictions finished before are already in ``predictions.jsonl``, so rerunning the
same command resumes. (Recording the failure as an empty prediction would score it as a wrong answer and
resuming would keep it: an outage would read as a worse model.)
"""

from __future__ import annotations

import asyncio
import base64
import io
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from rarl.errors import UserError
from rarl.eval.generate import prediction_record
from rarl.eval.openai_client import complete, error_text, make_client
from rarl.prompts import inference_messages
from rarl.schema.records import PredictionRecord
from rarl.schema.sample import Sample

if TYPE_CHECKING:
    from PIL import Image

    from rarl.config import OpenAIGenerationConfig

OWNER = "eval.openai"
ImageFn = Callable[[Sample], "Image.Image"]


def served_label(endpoint: OpenAIGenerationConfig) -> str:
    """How a served model is named in records and tables: ``openai:<served model name>``."""
    return f"openai:{endpoint.model}"


def image_data_url(image: Image.Image) -> str:
    """The image as a ``data:image/png;base64,...`` URL: PNG is lossless, so the server decodes exactly
    the pixels the local path would give the processor."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def openai_messages(messages: list[dict[str, Any]], image_url: str) -> list[dict[str, Any]]:
    """rarl's chat messages in the OpenAI format: each ``{"type": "image"}`` part becomes an
    ``image_url`` part holding ``image_url``; a message of text parts only becomes one string (the
    form every server accepts for a system turn)."""
    out = []
    for message in messages:
        content = message["content"]
        if isinstance(content, list):
            parts = [
                {"type": "image_url", "image_url": {"url": image_url}}
                if part.get("type") == "image"
                else {"type": "text", "text": part["text"]}
                for part in content
            ]
            if all(part["type"] == "text" for part in parts):
                content = "\n".join(part["text"] for part in parts)
            else:
                content = parts
        out.append({"role": message["role"], "content": content})
    return out


def sample_messages(sample: Sample, prompt: str, image: Image.Image) -> list[dict[str, Any]]:
    """The request messages of one item: the inference prompt with the item's image as a data URL."""
    return openai_messages(inference_messages(sample.question, prompt, sample.choices), image_data_url(image))


def _default_image(max_pixels: int | None) -> ImageFn:
    from rarl.data.images import load_image

    return lambda sample: load_image(sample.image, max_pixels=max_pixels)


def generate_served(
    endpoint: OpenAIGenerationConfig,
    samples: Sequence[Sample],
    *,
    prompt: str = "reasoning",
    max_new_tokens: int = 512,
    do_sample: bool = False,
    max_pixels: int | None = None,
    model_name: str = "",
    on_record: Callable[[PredictionRecord], None] | None = None,
    progress: bool = True,
    image_fn: ImageFn | None = None,
) -> list[PredictionRecord]:
    """Ask the served model for every sample, ``endpoint.concurrency`` at a time; records in sample order.

    ``on_record`` is called as each item finishes (in the order they finish). ``image_fn(sample)`` gives
    the image sent (default: the item's own, loaded with ``max_pixels``). Raises a one-line
    :class:`UserError` naming the first item that failed after its retries (the others in flight are
    cancelled; those finished were passed to ``on_record``).
    """
    if not samples:
        return []
    load = image_fn or _default_image(max_pixels)
    options: dict[str, Any] = {"max_tokens": max_new_tokens}
    if not do_sample:
        options["temperature"] = 0.0
    client = make_client(endpoint, OWNER)
    results: list[PredictionRecord | None] = [None] * len(samples)
    bar = None
    if progress and samples:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(samples), desc=f"generate ({prompt}, {endpoint.model})", unit="sample")

    async def run_all() -> None:
        semaphore = asyncio.Semaphore(max(1, endpoint.concurrency))

        async def one(index: int, sample: Sample) -> None:
            async with semaphore:
                image = await asyncio.to_thread(load, sample)
                messages = await asyncio.to_thread(sample_messages, sample, prompt, image)
                try:
                    raw, _ = await complete(client, endpoint, messages, **options)
                except Exception as exc:
                    attempts = getattr(exc, "rarl_attempts", 1)
                    raise UserError(
                        f"{OWNER}: item {sample.dataset}/{sample.split}/{sample.id} failed after {attempts} "
                        f"attempt(s) at {endpoint.base_url or 'the default endpoint'} ({error_text(exc)}); "
                        "the predictions finished so far are kept, rerun to resume"
                    ) from None
            record = prediction_record(sample, raw.strip(), prompt, model_name)
            results[index] = record
            if on_record is not None:
                on_record(record)
            if bar is not None:
                bar.update(1)

        tasks = [asyncio.ensure_future(one(i, s)) for i, s in enumerate(samples)]
        try:
            _, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            failed = [task for task in tasks if task.done() and not task.cancelled() and task.exception()]
            if failed:
                raise failed[0].exception()  # type: ignore[misc]
        finally:
            await client.close()

    try:
        asyncio.run(run_all())
    finally:
        if bar is not None:
            bar.close()
    return [record for record in results if record is not None]


__all__ = [
    "generate_served",
    "image_data_url",
    "openai_messages",
    "sample_messages",
    "served_label",
]
