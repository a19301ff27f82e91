"""Seeded synthetic medical-style VQA data: images whose answers are visible, with reference reasoning.

Why: the offline demo and the tests need a task that a *tiny* randomly initialised Qwen2-VL can learn on a
CPU in minutes, so that "training works" can be shown as accuracy going up rather than merely "it ran".
Each image is a chest-film-like field (two dark lung fields, a spine, a body outline) rendered in one of
three modalities that differ by a strongly distinctive colour and texture, with a bright round opacity in
the left lung, the right lung, or none. "Left"/"right" are *image* sides (the viewer's left), not the
patient's, so the answer is a plain visual fact.

Question kinds take turns (index mod 4) and each kind cycles through its answers, so any prefix of the
samples is balanced over kinds and answers to within one sample and chance level is known exactly — see
:data:`CHANCE_LEVEL`. The image factors the answer does not fix (modality, the other side, position, size,
brightness, noise) are drawn at random per sample:

=================  ========  ===========================  ======
kind               type      answers                      chance
=================  ========  ===========================  ======
opacity_left       closed    yes / no                     1/2
opacity_right      closed    yes / no                     1/2
opacity_side       open      left / right / none          1/3
modality           open      x-ray / ct / mri             1/3
=================  ========  ===========================  ======

Overall chance level (uniform kinds): (1/2 + 1/2 + 1/3 + 1/3) / 4 = 5/12 ≈ 0.417; closed questions 0.5,
open questions 1/3. Generation is deterministic per (seed, split, index), so the first ``n`` samples do not
depend on how many are requested, and different splits never share images.

Options (each a ``data.*`` field of a synthetic dataset in the config, so any run can use them):

* ``kinds``: which question kinds to ask (default the four above). :data:`EXTRA_KINDS` holds kinds no
  default set asks: ``opacity_present`` (any opacity, yes/no), ``colour`` (the picture's tint in colour
  words — grey, cyan, orange — a caption task that names what is seen without the modality's name) and
  ``body_shape`` (round or square outline: cross-sections are round, projection films square), a task
  the demo never trains on, for checking that its recipe learns more than the task it was built on;
* ``random_answers``: every answer is one of the kind's answers independent of the image (balanced: each
  (true, shown) pair equally often, see :func:`_balanced_shown_answer`), and the reasoning is one fixed
  sentence (:data:`NEUTRAL_REASONING`): such samples teach the ``<think>…</think><answer>…</answer>``
  format and the answer vocabulary but carry no information about the task (a "format warm-up"; a short
  think also leaves the answer word as the one decision that a reward must credit);
* ``think``: which reasoning the samples carry: ``reference`` (the default; :data:`NEUTRAL_REASONING`
  under ``random_answers``) or ``neutral`` (that fixed sentence, also for samples with true answers: a
  caption task in a warm-up whose think must look like the task's);
* ``reasoning_fraction``: only this fraction of the samples carries reference reasoning (seeded per
  sample), as in real data where only part of the training set is annotated;
* ``paraphrase``: every question is asked in a held-out phrasing (:data:`PARAPHRASES`), a shift that
  training on the default phrasing never saw.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

from PIL import Image

from rarl.schema.sample import Sample

MODALITIES: tuple[str, ...] = ("x-ray", "ct", "mri")
SIDES: tuple[str, ...] = ("left", "right", "none")
KINDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "opacity_left": ("closed", ("yes", "no")),
    "opacity_right": ("closed", ("yes", "no")),
    "opacity_side": ("open", SIDES),
    "modality": ("open", MODALITIES),
}
QUESTIONS: dict[str, str] = {
    "opacity_left": "Is there an opacity in the left lung?",
    "opacity_right": "Is there an opacity in the right lung?",
    "opacity_side": "Which side has the opacity?",
    "modality": "What is the imaging modality?",
    "opacity_present": "Is there any opacity in the lungs?",  # an EXTRA_KINDS kind
    "colour": "What colour is the picture?",
    "body_shape": "Is the body outline round or square?",
}
# The think text of every ``random_answers`` sample: the format, no information about the image.
NEUTRAL_REASONING = "I look at the image and answer the question."
# Kinds asked only when a config names them (``kinds``): a task the default set never trains on.
EXTRA_KINDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "opacity_present": ("closed", ("yes", "no")),
    "colour": ("open", ("grey", "cyan", "orange")),
    "body_shape": ("closed", ("round", "square")),
}
ALL_KINDS: dict[str, tuple[str, tuple[str, ...]]] = {**KINDS, **EXTRA_KINDS}
# The held-out phrasing of every question (``paraphrase``): same facts, words never used in training.
PARAPHRASES: dict[str, str] = {
    "opacity_left": "Does the left lung field contain a bright spot?",
    "opacity_right": "Does the right lung field contain a bright spot?",
    "opacity_side": "On which side is the bright spot?",
    "modality": "Which kind of scan is this?",
    "opacity_present": "Is a bright spot visible anywhere?",
    "colour": "Which colour does the picture have?",
    "body_shape": "What shape is the outline of the body?",
}
CHANCE_LEVEL: dict[str, float] = {
    "overall": sum(1.0 / len(answers) for _, answers in KINDS.values()) / len(KINDS),
    "closed": 0.5,
    "open": 1.0 / 3.0,
    **{kind: 1.0 / len(answers) for kind, (_, answers) in ALL_KINDS.items()},
}


def chance_level(kinds: list[str] | tuple[str, ...] | None = None) -> float:
    """Accuracy of uniform guessing over ``kinds`` (default: the four default kinds), asked in turn."""
    chosen = list(kinds or KINDS)
    return sum(1.0 / len(ALL_KINDS[kind][1]) for kind in chosen) / len(chosen)


# How each modality looks: an RGB tint applied to the grey-scale anatomy, plus a texture.
_MODALITY_LOOK: dict[str, dict[str, Any]] = {
    "x-ray": {"tint": (1.0, 1.0, 1.0), "texture": "grain", "cue": "a grey-scale projection film"},
    "ct": {
        "tint": (0.55, 0.95, 1.0),
        "texture": "rings",
        "cue": "a cyan-tinted axial slice with a round body",
    },
    "mri": {
        "tint": (1.0, 0.6, 0.35),
        "texture": "bands",
        "cue": "an orange-tinted slice with banded texture",
    },
}


def _rng(seed: int, split: str, index: int) -> Any:
    import numpy as np

    return np.random.default_rng([int(seed), zlib.crc32(split.encode("utf-8")), int(index)])


def render_image(modality: str, side: str, rng: Any, size: int = 112) -> Image.Image:
    """Draw one chest-film-like image of ``modality`` with an opacity on ``side`` (or none)."""
    import numpy as np

    look = _MODALITY_LOOK[modality]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) / size  # coordinates in [0, 1)
    jitter = rng.uniform(-0.03, 0.03, size=4)

    # body: a rectangle-ish thorax for projection films, a disc for cross-sections
    if modality == "x-ray":
        body = (np.abs(xx - 0.5) < 0.44) & (np.abs(yy - 0.5) < 0.46)
    else:
        body = ((xx - 0.5) ** 2 + (yy - 0.5) ** 2) < 0.46**2
    grey = np.full((size, size), 18.0)
    grey[body] = 120.0

    # lungs: two dark ellipses; the spine/mediastinum: a bright band between them
    centers = {"left": (0.29 + jitter[0], 0.5 + jitter[1]), "right": (0.71 + jitter[2], 0.5 + jitter[3])}
    radii = (0.15, 0.3 if modality == "x-ray" else 0.22)
    for cx, cy in centers.values():
        lung = ((xx - cx) / radii[0]) ** 2 + ((yy - cy) / radii[1]) ** 2 < 1.0
        grey[lung] = 45.0
    grey[(np.abs(xx - 0.5) < 0.05) & body] = 140.0

    # texture that identifies the modality beyond colour
    if look["texture"] == "rings":
        rings = np.sin(((xx - 0.5) ** 2 + (yy - 0.5) ** 2) ** 0.5 * 90.0)
        grey[body] += 12.0 * rings[body]
    elif look["texture"] == "bands":
        grey[body] += 14.0 * np.sin(yy * 60.0)[body]

    # the finding: a bright disc inside the chosen lung field
    if side != "none":
        cx, cy = centers[side]
        ox, oy = rng.uniform(-0.03, 0.03), rng.uniform(-0.1, 0.1)
        radius = rng.uniform(0.15, 0.18)
        dist = ((xx - cx - ox) ** 2 + (yy - cy - oy) ** 2) ** 0.5
        grey = np.where(dist < radius, 245.0, grey)
        grey = np.where((dist >= radius) & (dist < radius * 1.3), np.maximum(grey, 150.0), grey)

    grey = grey * rng.uniform(0.9, 1.1) + rng.normal(0.0, 7.0, size=grey.shape)
    rgb = np.clip(grey[..., None] * np.asarray(look["tint"])[None, None, :], 0, 255).astype(np.uint8)
    return Image.fromarray(rgb, mode="RGB")


def _reasoning(kind: str, modality: str, side: str, answer: str) -> str:
    """Template reference reasoning that names the visual cue the answer rests on."""
    finding = (
        f"A bright round opacity is visible in the {side} lung field, "
        "and the other lung field is dark and clear."
        if side != "none"
        else "Both lung fields are uniformly dark with no bright round opacity."
    )
    if kind == "modality":
        cue = _MODALITY_LOOK[modality]["cue"]
        return f"The image is {cue}, which is typical of {modality}. So the modality is {answer}."
    if kind == "opacity_side":
        return f"{finding} So the opacity side is {answer}."
    if kind in ("colour", "body_shape"):
        cue = _MODALITY_LOOK[modality]["cue"]
        return f"The image is {cue}. So the answer is {answer}."
    if kind == "opacity_present":
        return f"{finding} So the answer is {answer}."
    asked = "left" if kind == "opacity_left" else "right"
    return f"{finding} So for the {asked} lung the answer is {answer}."


def _balanced_shown_answer(answers: tuple[str, ...], position: int, seed: int, split: str, kind: str) -> str:
    """The shown answer of the ``position``-th sample of ``kind`` under ``random_answers``.

    Why not a fresh random draw per sample: 512 independent draws leave chance correlations between the
    true and the shown answer in each cell (a 40:24 split of "yes" on left opacities, say), which a model
    memorises — a "warm-up without task information" that leaks some. The true answer cycles with period
    ``k`` (:func:`make_sample`); the shown one cycles with period ``k**2`` from a seeded offset, so every
    ``k**2`` consecutive samples of a kind hold each (true, shown) pair exactly once.
    """
    k = len(answers)
    offset = int(_rng(seed, f"{split}/shown/{kind}", 0).integers(k))
    return answers[(position // k + offset) % k]


THINKS = ("reference", "neutral")


def _think_text(think: str, kind: str, modality: str, side: str, answer: str) -> str:
    """The reasoning a sample carries under the ``think`` option (module doc)."""
    if think == "neutral":
        return NEUTRAL_REASONING
    if think == "reference":
        return _reasoning(kind, modality, side, answer)
    raise ValueError(f"unknown synthetic think {think!r}; valid options: {', '.join(THINKS)}")


def _condition_for(kind: str, answer: str, rng: Any) -> tuple[str, str]:
    """Pick (modality, side) consistent with ``answer`` to ``kind``; free factors are drawn uniformly."""
    modality = MODALITIES[int(rng.integers(len(MODALITIES)))]
    if kind == "modality":
        return answer, SIDES[int(rng.integers(len(SIDES)))]
    if kind == "opacity_side":
        return modality, answer
    if kind == "colour":
        colour = EXTRA_KINDS["colour"][1].index(answer)  # the tint each modality is drawn in, in order
        return MODALITIES[colour], SIDES[int(rng.integers(len(SIDES)))]
    if kind == "body_shape":  # projection films have a square thorax, cross-sections a round body
        shaped = [m for m in MODALITIES if (m == "x-ray") == (answer == "square")]
        return shaped[int(rng.integers(len(shaped)))], SIDES[int(rng.integers(len(SIDES)))]
    if kind == "opacity_present":
        if answer == "no":
            return modality, "none"
        return modality, ("left", "right")[int(rng.integers(2))]
    asked = "left" if kind == "opacity_left" else "right"
    if answer == "yes":
        return modality, asked
    others = [s for s in SIDES if s != asked]
    return modality, others[int(rng.integers(len(others)))]


def make_sample(
    index: int,
    seed: int = 0,
    split: str = "train",
    image_size: int = 112,
    *,
    kinds: list[str] | tuple[str, ...] | None = None,
    random_answers: bool = False,
    reasoning_fraction: float = 1.0,
    paraphrase: bool = False,
    think: str | None = None,
) -> Sample:
    """The ``index``-th sample of ``(seed, split)``, identical on every call; options: module doc."""
    rng = _rng(seed, split, index)
    chosen = list(kinds or KINDS)
    unknown = [kind for kind in chosen if kind not in ALL_KINDS]
    if unknown:
        raise ValueError(f"unknown synthetic kind(s) {unknown}; valid options: {', '.join(ALL_KINDS)}")
    kind = chosen[index % len(chosen)]  # round-robin: any prefix of n samples is balanced to within one
    question_type, answers = ALL_KINDS[kind]
    answer = answers[(index // len(chosen)) % len(answers)]
    modality, side = _condition_for(kind, answer, rng)
    image = render_image(modality, side, rng, size=image_size)
    # Drawn from a stream of their own, so the image is the same with or without these options.
    side_rng = _rng(seed, f"{split}/options", index)
    shown_answer, reasoning = answer, _reasoning(kind, modality, side, answer)
    if random_answers:
        shown_answer = _balanced_shown_answer(answers, index // len(chosen), seed, split, kind)
        side_rng.integers(len(answers))  # the draw this replaced: the stream below stays as it was
        reasoning = NEUTRAL_REASONING
    if think is not None:
        reasoning = _think_text(think, kind, modality, side, answer)
    annotated = reasoning_fraction >= 1.0 or float(side_rng.random()) < reasoning_fraction
    return Sample(
        id=f"synthetic-{split}-{seed}-{index:05d}",
        image=image,
        question=(PARAPHRASES if paraphrase else QUESTIONS)[kind],
        answer=shown_answer,
        question_type=question_type,  # type: ignore[arg-type]
        reasoning=reasoning if annotated else None,
        modality=modality,
        dataset="synthetic",
        split=split,
        extra={"kind": kind, "opacity_side": side},
    )


def generate_samples(
    n: int, seed: int = 0, split: str = "train", image_size: int = 112, **options: Any
) -> list[Sample]:
    """``n`` balanced synthetic samples (in-memory PIL images), deterministic per ``(seed, split)``.

    ``options``: ``kinds``, ``random_answers``, ``reasoning_fraction``, ``paraphrase`` (module doc).
    """
    return [make_sample(i, seed, split, image_size, **options) for i in range(n)]


def synthetic_texts() -> list[str]:
    """Every question, answer and reasoning text the generator can produce (e.g. for a tiny tokenizer)."""
    texts = [*QUESTIONS.values(), *PARAPHRASES.values(), NEUTRAL_REASONING]
    for kind, (_, answers) in ALL_KINDS.items():
        for modality in MODALITIES:
            for side in SIDES:
                for answer in answers:
                    texts.append(_reasoning(kind, modality, side, answer))
                    texts.append(
                        f"<think>{_reasoning(kind, modality, side, answer)}</think><answer>{answer}</answer>"
                    )
    return sorted(set(texts))


def write_reasoning_jsonl(samples: list[Sample], directory: str | Path) -> dict[str, Path]:
    """Write samples as PNG images plus one reasoning-JSONL file per split; returns ``{split: path}``.

    The layout is what the ``reasoning_jsonl`` loader reads back: ``<dir>/<split>.jsonl`` with one object
    per line (id, image relative to the file, question, reasoning, answer, question_type, choices,
    modality) and images under ``<dir>/images/``. Files are written atomically.
    """
    import json

    from tqdm import tqdm

    from rarl.data.images import load_image
    from rarl.io import atomic_write_text

    target = Path(directory)
    (target / "images").mkdir(parents=True, exist_ok=True)
    lines: dict[str, list[str]] = {}
    for sample in tqdm(samples, desc="writing images", unit="img", disable=len(samples) < 500):
        split = sample.split or "train"
        image_rel = Path("images") / f"{_safe_name(sample.id)}.png"
        image_abs = target / image_rel
        tmp = image_abs.with_name(f".{image_abs.name}.tmp")
        load_image(sample.image).save(tmp, format="PNG")
        tmp.replace(image_abs)
        record = {
            "id": sample.id,
            "image": image_rel.as_posix(),
            "question": sample.question,
            "reasoning": sample.reasoning,
            "answer": sample.answer,
            "question_type": sample.question_type,
            "choices": sample.choices,
            "modality": sample.modality,
            "dataset": sample.dataset,
            "split": split,
            **({"extra": sample.extra} if sample.extra else {}),
        }
        lines.setdefault(split, []).append(json.dumps(record, ensure_ascii=False))
    written: dict[str, Path] = {}
    for split, split_lines in lines.items():
        written[split] = atomic_write_text(target / f"{split}.jsonl", "\n".join(split_lines) + "\n")
    return written


def _safe_name(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


__all__ = [
    "ALL_KINDS",
    "CHANCE_LEVEL",
    "EXTRA_KINDS",
    "KINDS",
    "MODALITIES",
    "NEUTRAL_REASONING",
    "PARAPHRASES",
    "QUESTIONS",
    "SIDES",
    "chance_level",
    "generate_samples",
    "make_sample",
    "render_image",
    "synthetic_texts",
    "write_reasoning_jsonl",
]
