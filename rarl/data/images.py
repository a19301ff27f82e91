"""Image loading: any PNG/JPG/DICOM (or an in-memory PIL image) → an RGB ``PIL.Image`` within a pixel budget.

Why: Qwen2-VL's processor wants RGB images, and its visual-token count grows with the pixel count, so every
consumer (training, eval, ``rarl ask``, the review page) goes through :func:`load_image` to get the same
conversion and the same ``max_pixels`` cap. DICOM is what hospitals actually store; its raw values are
stored intensities (often 12-16 bit, HU after the modality LUT for CT), so they are windowed to 8 bit with
the file's own VOI LUT or WindowCenter/WindowWidth when present (applied by pydicom; what a
radiologist's viewer shows by default) and with a robust 0.5-99.5 percentile window otherwise (so one
hot pixel cannot wash out the image).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from rarl.errors import UserError

DICOM_SUFFIXES = (".dcm", ".dicom", ".dic")
ROBUST_PERCENTILES = (0.5, 99.5)


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
    """The size :func:`cap_pixels` gives a ``width`` x ``height`` image (what the token budget counts)."""
    if not max_pixels or width * height <= max_pixels:
        return width, height
    scale = math.sqrt(max_pixels / (width * height))
    return max(1, math.floor(width * scale)), max(1, math.floor(height * scale))


def cap_pixels(image: Image.Image, max_pixels: int | None) -> Image.Image:
    """Downscale (never upscale) so that ``width * height <= max_pixels``, keeping the aspect ratio."""
    size = capped_size(image.width, image.height, max_pixels)
    if size == image.size:
        return image
    return image.resize(size, Image.Resampling.BICUBIC)


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


def load_dicom(path: str | os.PathLike[str]) -> Image.Image:
    """Read a DICOM file as RGB: modality LUT (rescale slope/intercept), then windowing to 8 bit.

    Multi-frame files contribute their middle frame (the most representative single slice); MONOCHROME1
    (inverted grey scale) is flipped so bright always means dense; colour files are returned as RGB.
    """
    import numpy as np
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import apply_modality_lut

    source = Path(path)
    try:
        ds = pydicom.dcmread(source)
    except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
        raise UserError(f"{source}: not a readable DICOM file ({exc})") from None
    if "PixelData" not in ds:
        raise UserError(f"{source}: DICOM file has no pixel data (not an image: {ds.get('Modality', '?')})")
    try:
        pixels = ds.pixel_array
    except Exception as exc:  # pydicom raises various errors for unsupported transfer syntaxes
        raise UserError(f"{source}: cannot decode DICOM pixel data ({exc})") from None
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


_PROBLEM_CACHE: dict[tuple[str, int, int], str | None] = {}


def image_file_problem(path: str | os.PathLike[str]) -> str | None:
    """Why an image file cannot be used (empty, truncated, not an image, a decompression bomb), or None.

    Cheap enough to run on every row at load time: the header gives the size; JPEGs are decoded at 1/8
    scale (``draft``), which still reads every entropy-coded byte and so catches truncation; other formats
    are decoded fully (they are small in medical VQA sets). Results are cached per (path, size, mtime), so
    the 2,248 VQA-RAD rows that share 315 images decode each image once.
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
        import pydicom

        try:
            pydicom.dcmread(source, stop_before_pixels=True)
        except Exception as exc:  # pydicom raises many types for broken headers
            return f"not a readable DICOM file ({exc})"
        return None
    return _pil_problem(source)


def _pil_problem(source: Any) -> str | None:
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(source) as opened:
                if opened.format == "JPEG":
                    opened.draft("RGB", (max(1, opened.width // 8), max(1, opened.height // 8)))
                opened.load()
    except Image.DecompressionBombError as exc:
        return f"refused as a possible decompression bomb ({exc})"
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as exc:
        return f"not a readable image ({exc})"
    return None


def load_image(path_or_pil: Any, max_pixels: int | None = None) -> Image.Image:
    """An RGB ``PIL.Image`` from a path (PNG/JPG/…/DICOM) or a PIL image, capped at ``max_pixels``.

    Raises :class:`~rarl.errors.UserError` naming the file when it is missing or not an image.
    """
    if isinstance(path_or_pil, Image.Image):
        image = path_or_pil
    elif isinstance(path_or_pil, (str, os.PathLike)):
        source = Path(path_or_pil)
        if not source.is_file():
            raise UserError(f"{source}: image file not found")
        if is_dicom(source):
            image = load_dicom(source)
        else:
            try:
                with Image.open(source) as opened:
                    opened.load()
                    image = opened.copy()
            except (UnidentifiedImageError, OSError, ValueError) as exc:
                raise UserError(f"{source}: not a readable image ({exc})") from None
            except Image.DecompressionBombError as exc:
                raise UserError(f"{source}: refused as a possible decompression bomb ({exc})") from None
    else:
        raise UserError(f"expected an image path or a PIL image, got {type(path_or_pil).__name__}")
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
    "cap_pixels",
    "image_bytes_problem",
    "image_file_problem",
    "is_dicom",
    "load_dicom",
    "load_image",
    "window_to_uint8",
]
