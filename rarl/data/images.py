"""Image loading: any PNG/JPG/DICOM (or an in-memory PIL image) → an RGB ``PIL.Image`` within a pixel budget.

Why: Qwen2-VL's processor wants RGB images, and its visual-token count grows with the pixel count, so every
consumer (training, eval, ``rarl ask``, the review page) goes through :func:`load_image` to get the same
conversion and the same ``max_pixels`` cap. DICOM is what hospitals actually store; its raw values are
stored intensities (often 12-16 bit, HU after the modality LUT for CT), so they are windowed to 8 bit with
the file's own VOI LUT or WindowCenter/WindowWidth when present (applied by pydicom; what a
radiologist's viewer shows by default) and with a robust 0.5-99.5 percentile window otherwise (so one
hot pixel cannot wash out the image).

Every way in refuses the same files with one line naming the file: unreadable or truncated data, DICOM
pixel data that does not decode, and shapes Qwen2-VL's processor cannot take (an aspect ratio over
:data:`MAX_ASPECT_RATIO`). The loaders run the same check on every row (:func:`image_file_problem`), so such
a file stops the load naming its row, or is skipped and counted under ``skip_bad``, instead of crashing the
processor later.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from rarl.errors import UserError

DICOM_SUFFIXES = (".dcm", ".dicom", ".dic")
ROBUST_PERCENTILES = (0.5, 99.5)
# Qwen2-VL's smart_resize raises on a longer/shorter side ratio above 200 (a 6000x20 strip, a 1000x2 DICOM).
MAX_ASPECT_RATIO = 200
# Errors PIL raises for files that are not (complete) images.
_PIL_ERRORS = (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError)


class ImageProblem(Exception):
    """Why a file is not a usable image; callers add the file name (and the loaders the row)."""


def is_dicom(path: str | os.PathLike[str]) -> bool:
    """True for a ``.dcm``-like suffix or a file carrying the ``DICM`` magic at byte 128 (Part 10)."""
    source = Path(path)
    if source.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with source.open("rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def capped_size(width: int, height: int, max_pixels: int | None) -> tuple[int, int]:
    """The size :func:`cap_pixels` gives a ``width`` x ``height`` image (what the token budget counts).

    The aspect ratio is never widened: flooring both sides independently can stretch a long strip (4000x20
    at 50,000 pixels would become 3162x15, ratio 211 from 200, which the processor refuses), so the long
    side is derived from the short one.
    """
    if not max_pixels or width * height <= max_pixels:
        return width, height
    scale = math.sqrt(max_pixels / (width * height))
    if width >= height:
        new_height = max(1, math.floor(height * scale))
        return max(1, min(math.floor(width * scale), math.floor(new_height * width / height))), new_height
    new_width = max(1, math.floor(width * scale))
    return new_width, max(1, min(math.floor(height * scale), math.floor(new_width * height / width)))


def cap_pixels(image: Image.Image, max_pixels: int | None) -> Image.Image:
    """Downscale (never upscale) so that ``width * height <= max_pixels``, keeping the aspect ratio."""
    size = capped_size(image.width, image.height, max_pixels)
    if size == image.size:
        return image
    return image.resize(size, Image.Resampling.BICUBIC)


def shape_problem(width: int, height: int) -> str | None:
    """Why an image of this size cannot reach the model (no pixels, aspect ratio over 200), or None."""
    if width < 1 or height < 1:
        return f"has no pixels ({width}x{height})"
    ratio = max(width, height) / min(width, height)
    if ratio > MAX_ASPECT_RATIO:
        return (
            f"{width}x{height} pixels: aspect ratio {ratio:.0f}:1 is over {MAX_ASPECT_RATIO}:1, "
            "the most Qwen2-VL's image processor accepts"
        )
    return None


def _first_value(value: Any) -> float | None:
    """WindowCenter/Width may be multi-valued (several presets); the first is the default view."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = value[0] if len(value) else None
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def window_to_uint8(values: Any, center: float | None = None, width: float | None = None) -> Any:
    """Map stored intensities to 0-255: a linear window (center/width) or a robust percentile window."""
    import numpy as np

    data = np.asarray(values, dtype=np.float64)
    if center is not None and width is not None and width > 0:
        low, high = center - width / 2.0, center + width / 2.0
    else:
        finite = data[np.isfinite(data)]
        if finite.size == 0:
            return np.zeros(data.shape, dtype=np.uint8)
        low, high = (float(v) for v in np.percentile(finite, ROBUST_PERCENTILES))
        if high <= low:  # a flat image: keep it flat instead of dividing by zero
            low, high = float(finite.min()), float(finite.min()) + 1.0
    scaled = (np.clip(data, low, high) - low) / (high - low) * 255.0
    return np.nan_to_num(scaled).round().astype(np.uint8)


def _voi_to_uint8(values: Any, ds: Any) -> Any:
    """The file's own VOI transform (VOI LUT Sequence, else WindowCenter/Width with its VOILUTFunction:
    LINEAR, LINEAR_EXACT or SIGMOID) by pydicom, scaled to 0-255; None when the file has none we can use.

    Why pydicom: it implements the standard's exact definitions (PS3.3 C.11.2), which a hand-written
    ``center ± width/2`` only approximates and which ignores VOI LUT tables and the sigmoid function.
    """
    import numpy as np
    from pydicom.pixels import apply_voi_lut

    has_window = _first_value(ds.get("WindowCenter")) is not None and _first_value(ds.get("WindowWidth"))
    if "VOILUTSequence" not in ds and not has_window:
        return None
    try:
        out = np.asarray(apply_voi_lut(values, ds, index=0), dtype=np.float64)
        # The output range of this transform: what it gives far below and far above any stored value.
        low, high = (float(v) for v in apply_voi_lut(np.array([-1e12, 1e12]), ds, index=0))
    except (ValueError, TypeError, AttributeError, KeyError, IndexError):
        return None  # a malformed window (e.g. width < 1 for LINEAR): fall back to the percentile window
    if not high > low:
        return None
    scaled = (np.clip(out, low, high) - low) / (high - low) * 255.0
    return np.nan_to_num(scaled).round().astype(np.uint8)


@contextlib.contextmanager
def _quiet_pydicom() -> Iterator[None]:
    """Silence pydicom's own logger while decoding: a failing decoder plugin logs its full traceback (a
    40-line panel under rich) before pydicom raises; the one-line error we raise says the same."""
    logger = logging.getLogger("pydicom")
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(level)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _check_dicom_frame_size(ds: Any) -> None:
    """Refuse a frame over PIL's decompression-bomb limit before decoding it: a compressed DICOM can claim
    65535x65535 pixels in a few bytes, and its decoder would allocate all of them."""
    try:
        pixels = int(ds.get("Rows", 0) or 0) * int(ds.get("Columns", 0) or 0)
    except (TypeError, ValueError):
        return  # a malformed size: the decoder names it
    limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)  # PIL raises DecompressionBombError above twice its limit
    if limit and pixels > limit:
        raise ImageProblem(
            f"refused as a possible decompression bomb ({pixels} pixels per frame, over the limit of {limit})"
        )


def load_dicom(path: str | os.PathLike[str]) -> Image.Image:
    """Read a DICOM file as RGB: modality LUT (rescale slope/intercept), then windowing to 8 bit.

    Multi-frame files contribute their middle frame (the most representative single slice); MONOCHROME1
    (inverted grey scale) is flipped so bright always means dense; colour files are returned as RGB.
    Raises :class:`~rarl.errors.UserError` naming the file when it has no pixel data or they do not decode.
    """
    source = Path(path)
    try:
        return _decode_dicom(source)
    except ImageProblem as exc:
        raise UserError(f"{source}: {exc}") from None


def _decode_dicom(source: Path) -> Image.Image:
    """:func:`load_dicom`'s work; every way a file can fail becomes one :class:`ImageProblem`."""
    import numpy as np
    import pydicom
    from pydicom.pixels import apply_modality_lut

    with _quiet_pydicom():
        try:
            ds = pydicom.dcmread(source)
        except Exception as exc:  # pydicom raises many types for broken headers
            raise ImageProblem(f"not a readable DICOM file ({_one_line(exc)})") from None
        if "PixelData" not in ds:
            raise ImageProblem(f"DICOM file has no pixel data (not an image: {ds.get('Modality', '?')})")
        _check_dicom_frame_size(ds)
        try:
            # no transfer syntax, truncated data, a codec failing (JPEG 2000...) or an unsupported one
            pixels = ds.pixel_array
        except Exception as exc:  # pydicom and its decoder plugins raise many types
            raise ImageProblem(f"cannot decode DICOM pixel data ({_one_line(exc)})") from None
    try:
        photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        samples_per_pixel = int(ds.get("SamplesPerPixel", 1) or 1)
        if frames > 1:
            pixels = pixels[frames // 2]
        if samples_per_pixel == 3:  # colour (pydicom already converted YBR to RGB)
            if pixels.dtype != np.uint8:
                pixels = window_to_uint8(pixels)
            return Image.fromarray(np.ascontiguousarray(pixels), mode="RGB")
        values = apply_modality_lut(pixels, ds)
        grey = _voi_to_uint8(values, ds)
        if grey is None:
            grey = window_to_uint8(values)
        if photometric == "MONOCHROME1":
            grey = 255 - grey
        return Image.fromarray(grey, mode="L").convert("RGB")
    except (ValueError, TypeError, IndexError, KeyError, AttributeError) as exc:  # header contradicts data
        raise ImageProblem(f"cannot convert DICOM pixel data to an image ({_one_line(exc)})") from None


_PROBLEM_CACHE: dict[tuple[str, int, int], str | None] = {}


def image_file_problem(path: str | os.PathLike[str]) -> str | None:
    """Why an image file cannot be used (empty, truncated, not an image, a decompression bomb, a shape the
    processor refuses, DICOM pixel data that does not decode), or None.

    Cheap enough to run on every row at load time: the header gives the size; JPEGs are decoded at 1/8
    scale (``draft``), which still reads every entropy-coded byte and so catches truncation; other formats,
    DICOM included, are decoded fully (they are small in medical VQA sets). Results are cached per (path,
    size, mtime), so the 2,248 VQA-RAD rows that share 315 images decode each image once.
    """
    source = Path(path)
    try:
        stat = source.stat()
    except OSError as exc:
        return f"cannot read ({exc.strerror})"
    key = (str(source.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _PROBLEM_CACHE:
        _PROBLEM_CACHE[key] = _decode_problem(source, stat.st_size)
    return _PROBLEM_CACHE[key]


def image_bytes_problem(data: bytes) -> str | None:
    """:func:`image_file_problem` for an image embedded in a table cell (parquet ``{bytes, path}``)."""
    import io

    if not data:
        return "empty (0 bytes)"
    return _pil_problem(io.BytesIO(data))


def _decode_problem(source: Path, size: int) -> str | None:
    if size == 0:
        return "empty file (0 bytes)"
    if is_dicom(source):
        try:
            return shape_problem(*_decode_dicom(source).size)
        except ImageProblem as exc:
            return str(exc)
    return _pil_problem(source)


def _pil_problem(source: Any) -> str | None:
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(source) as opened:
                problem = shape_problem(opened.width, opened.height)
                if problem:
                    return problem
                if opened.format == "JPEG":
                    opened.draft("RGB", (max(1, opened.width // 8), max(1, opened.height // 8)))
                opened.load()
    except Image.DecompressionBombError as exc:
        return f"refused as a possible decompression bomb ({exc})"
    except _PIL_ERRORS as exc:
        return f"not a readable image ({_one_line(exc)})"
    return None


def load_image(path_or_pil: Any, max_pixels: int | None = None) -> Image.Image:
    """An RGB ``PIL.Image`` from a path (PNG/JPG/…/DICOM) or a PIL image, capped at ``max_pixels``.

    Raises :class:`~rarl.errors.UserError` naming the file when it is missing, not an image, or of a shape
    the processor refuses (aspect ratio over 200).
    """
    name = "image"
    if isinstance(path_or_pil, Image.Image):
        image = path_or_pil
    elif isinstance(path_or_pil, (str, os.PathLike)):
        source = Path(path_or_pil)
        name = str(source)
        if not source.is_file():
            raise UserError(f"{source}: image file not found")
        if is_dicom(source):
            image = load_dicom(source)
        else:
            try:
                with Image.open(source) as opened:
                    opened.load()
                    image = opened.copy()
            except Image.DecompressionBombError as exc:
                raise UserError(f"{source}: refused as a possible decompression bomb ({exc})") from None
            except _PIL_ERRORS as exc:
                raise UserError(f"{source}: not a readable image ({_one_line(exc)})") from None
    else:
        raise UserError(f"expected an image path or a PIL image, got {type(path_or_pil).__name__}")
    problem = shape_problem(image.width, image.height)
    if problem:
        raise UserError(f"{name}: {problem}")
    if image.mode != "RGB":
        image = _to_rgb(image)
    return cap_pixels(image, max_pixels)


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB conversion that composites transparency on black and windows 16-bit grey scale properly."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        import numpy as np

        return Image.fromarray(window_to_uint8(np.asarray(image)), mode="L").convert("RGB")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


__all__ = [
    "MAX_ASPECT_RATIO",
    "ImageProblem",
    "cap_pixels",
    "capped_size",
    "image_bytes_problem",
    "image_file_problem",
    "is_dicom",
    "load_dicom",
    "load_image",
    "shape_problem",
    "window_to_uint8",
]
