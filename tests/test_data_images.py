"""Images: RGB conversion, the max_pixels cap, DICOM windowing on pydicom's bundled test files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_modality_lut

from rarl.data.images import cap_pixels, is_dicom, load_image, window_to_uint8
from rarl.errors import UserError


def test_rgb_conversion_of_common_modes(tmp_path):
    grey = Image.fromarray((np.arange(64 * 32) % 256).astype(np.uint8).reshape(64, 32), mode="L")
    grey.save(tmp_path / "grey.png")
    rgba = Image.new("RGBA", (10, 10), (255, 0, 0, 0))  # fully transparent red → black
    rgba.save(tmp_path / "alpha.png")
    deep = Image.fromarray(np.arange(100, dtype=np.uint16).reshape(10, 10) * 600)
    deep.save(tmp_path / "deep.png")
    for name in ("grey.png", "alpha.png", "deep.png"):
        image = load_image(tmp_path / name)
        assert image.mode == "RGB"
    assert np.asarray(load_image(tmp_path / "alpha.png")).max() == 0
    deep_rgb = np.asarray(load_image(tmp_path / "deep.png"))
    assert deep_rgb.min() == 0 and deep_rgb.max() == 255  # 16 bit windowed to the full 8-bit range
    assert load_image(grey).mode == "RGB"  # PIL input


def test_max_pixels_caps_without_upscaling():
    image = Image.new("RGB", (800, 400))
    capped = load_image(image, max_pixels=112 * 112)
    assert capped.width * capped.height <= 112 * 112
    assert abs(capped.width / capped.height - 2.0) < 0.05
    small = Image.new("RGB", (50, 40))
    assert cap_pixels(small, 112 * 112).size == (50, 40)
    assert cap_pixels(image, None).size == (800, 400)


@pytest.mark.parametrize(
    ("size", "max_pixels"), [((4000, 20), 50_000), ((20, 4000), 50_000), ((6000, 30), 12_544)]
)
def test_the_pixel_cap_never_widens_a_strip_past_what_the_processor_takes(size, max_pixels):
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    width, height = size
    smart_resize(height, width)  # the oracle: the processor takes the original (aspect ratio 200) ...
    capped = cap_pixels(Image.new("RGB", size), max_pixels)
    assert capped.width * capped.height <= max_pixels
    smart_resize(capped.height, capped.width)  # ... and must take what the cap hands it


def test_missing_and_unreadable_images_name_the_file(tmp_path):
    with pytest.raises(UserError, match=r"nope\.png: image file not found"):
        load_image(tmp_path / "nope.png")
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    with pytest.raises(UserError, match=r"bad\.jpg: not a readable image"):
        load_image(bad)
    fake_dicom = tmp_path / "fake.dcm"
    fake_dicom.write_bytes(b"\0" * 200)
    with pytest.raises(UserError, match=r"fake\.dcm"):
        load_image(fake_dicom)
    with pytest.raises(UserError, match="expected an image path"):
        load_image(42)


def test_ct_dicom_uses_robust_window_without_window_tags():
    path = get_testdata_file("CT_small.dcm")
    ds = pydicom.dcmread(path)
    assert "WindowCenter" not in ds  # so the percentile window is what is exercised
    image = load_image(path)
    assert image.mode == "RGB" and image.size == (ds.Columns, ds.Rows)
    pixels = np.asarray(image)[..., 0]
    assert np.array_equal(pixels, np.asarray(image)[..., 2])  # grey scale
    assert pixels.min() == 0 and pixels.max() == 255
    # brighter stored values stay brighter (monotone mapping of the HU image)
    hu = ds.pixel_array.astype(float) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    lo, hi = np.percentile(hu, 10), np.percentile(hu, 90)
    assert pixels[hu >= hi].mean() > pixels[hu <= lo].mean() + 50


def test_mr_dicom_uses_its_window_center_and_width(tmp_path):
    path = get_testdata_file("MR_small.dcm")
    ds = pydicom.dcmread(path)
    center, width = float(ds.WindowCenter), float(ds.WindowWidth)
    pixels = np.asarray(load_image(path))[..., 0]
    plain = window_to_uint8(ds.pixel_array, center, width)  # the plain center ± width/2 window
    # DICOM's LINEAR function (PS3.3 C.11.2.1.2.1, applied by pydicom) shifts that window by half a stored
    # value: the same picture to within one grey level, and the same black and white points.
    assert np.abs(pixels.astype(int) - plain.astype(int)).max() <= 1
    assert (pixels == 0).sum() == (plain == 0).sum() or pixels.min() == plain.min()
    assert pixels.max() == plain.max() == 255
    assert is_dicom(path)
    # a DICOM without the .dcm suffix is still recognised by its DICM magic
    renamed = tmp_path / "scan_without_suffix"
    renamed.write_bytes(Path(path).read_bytes())
    assert np.array_equal(np.asarray(load_image(renamed))[..., 0], pixels)
    assert load_image(path, max_pixels=32 * 32).size == (32, 32)


def test_monochrome1_is_inverted(tmp_path):
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    normal = np.asarray(load_image(get_testdata_file("MR_small.dcm")))[..., 0]
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.save_as(tmp_path / "inverted.dcm")
    inverted = np.asarray(load_image(tmp_path / "inverted.dcm"))[..., 0]
    assert np.array_equal(inverted, 255 - normal)


def test_window_flat_image_does_not_divide_by_zero():
    assert window_to_uint8(np.full((4, 4), 7.0)).max() == 0


def test_colour_multiframe_and_non_image_dicom():
    rgb = np.asarray(load_image(get_testdata_file("SC_rgb_rle.dcm")))
    assert rgb.shape == (100, 100, 3)
    assert (rgb[..., 0] != rgb[..., 1]).any()  # colour stays colour
    path = get_testdata_file("rtdose.dcm")
    ds = pydicom.dcmread(path)
    frames = int(ds.NumberOfFrames)
    middle = np.asarray(load_image(path))[..., 0]
    values = apply_modality_lut(ds.pixel_array[frames // 2], ds)  # the middle of the 15 frames
    assert np.array_equal(middle, window_to_uint8(values))
    with pytest.raises(UserError, match="no pixel data"):
        load_image(get_testdata_file("rtplan.dcm"))
