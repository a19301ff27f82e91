"""Image-dependence controls: how much of a model's accuracy needs the image at all.

Why: medical VQA has strong language priors (a yes/no question is right half the time by guessing, and
many questions give their answer away); a model can score well while barely looking. ``rarl eval
--image-control`` asks the same items with the image replaced, and ``rarl report`` pairs that run with the
normal run of the same model on the same items (:func:`rarl.report.tables.image_control_table`):

* ``blank``: a uniform mid-grey (128, 128, 128) image of the size the item's own image has after loading
  and the pixel cap — the same number of image tokens, no content. Mid-grey rather than the image's mean
  colour, which would still tell the model the modality's overall brightness.
* ``shuffled``: another item's image (loaded and capped the same way), by a seeded derangement over the
  run's items (``eval.image_control_seed``): no item keeps its own image when there are two or more, and
  items whose images are one file (several questions about one image) are re-paired so that an item gets
  another file's image wherever the items allow it. A realistic image that answers some other question.

The mapping depends only on the seed and the ordered list of items, so a resumed run (or a sharded one)
gives every item the same replacement image.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from rarl.schema.sample import Sample

if TYPE_CHECKING:
    from PIL import Image

IMAGE_CONTROLS = ("blank", "shuffled")
BLANK_GREY = (128, 128, 128)


def _image_identity(sample: Sample, index: int) -> str:
    """Items whose images are one file share an identity; an in-memory image is its item's own."""
    return f"file:{sample.image}" if isinstance(sample.image, str) else f"item:{index}"


def derangement(samples: Sequence[Sample], seed: int = 0) -> list[int]:
    """``donor[i]``: the index of the item whose image item ``i`` is shown.

    A seeded random cyclic permutation (Sattolo's algorithm: every cycle covers all items, so no fixed
    point when n > 1), then repaired by swapping donors so that no item is shown an image of its own file
    where a swap can avoid it (a swap is made only when it leaves both items with another file's image).
    """
    n = len(samples)
    donor = list(range(n))
    rng = random.Random(f"rarl-image-control:{seed}")
    for i in range(n - 1, 0, -1):  # Sattolo: j < i, never j == i
        j = rng.randrange(i)
        donor[i], donor[j] = donor[j], donor[i]
    identity = [_image_identity(sample, index) for index, sample in enumerate(samples)]
    for i in range(n):
        if identity[donor[i]] != identity[i]:
            continue
        for j in rng.sample(range(n), n):
            if j != i and identity[donor[j]] != identity[i] and identity[donor[i]] != identity[j]:
                donor[i], donor[j] = donor[j], donor[i]
                break
    return donor


def control_image_fn(
    samples: Sequence[Sample], control: str, max_pixels: int | None, seed: int = 0
) -> Callable[[Sample], Image.Image]:
    """The image each item is shown under ``control``, by the item's key (dataset/split/id).

    ``samples`` are all the run's items in order (not one process's share), so the shuffled mapping is
    the same whichever items are still to generate.
    """
    from PIL import Image

    from rarl.data.images import load_image

    if control not in IMAGE_CONTROLS:
        raise ValueError(f"unknown image control {control!r}")
    key = lambda sample: f"{sample.dataset}/{sample.split}/{sample.id}"  # noqa: E731
    if control == "blank":

        def blank(sample: Sample) -> Image.Image:
            size = load_image(sample.image, max_pixels=max_pixels).size
            return Image.new("RGB", size, BLANK_GREY)

        return blank
    donors = derangement(samples, seed)
    source = {key(sample): samples[donors[index]] for index, sample in enumerate(samples)}
    return lambda sample: load_image(source[key(sample)].image, max_pixels=max_pixels)


__all__ = ["BLANK_GREY", "IMAGE_CONTROLS", "control_image_fn", "derangement"]
