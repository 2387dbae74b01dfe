"""Reading source images: every format OpenCV decodes, and depth that is really 16-bit mm."""
import cv2
import numpy as np
import pytest

from tf_rgbd.data import image_io
from tf_rgbd.data.errors import SkipExample


def _photo(height=48, width=64) -> np.ndarray:
    """A smooth RGB test card (lossy codecs keep it close)."""
    rows, cols = np.mgrid[0:height, 0:width]
    return np.stack([cols * 255 // (width - 1), rows * 255 // (height - 1),
                     np.full_like(rows, 90)], axis=-1).astype(np.uint8)


# The formats issue 11 names (FRGC ships .ppm), plus the rest OpenCV 4.11 decodes.
REQUIRED_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".pgm", ".bmp", ".tif", ".tiff", ".webp")
OTHER_OPENCV_EXTENSIONS = (".jpe", ".jp2", ".dib", ".pbm", ".pnm", ".sr", ".ras")


def test_accepted_extensions_are_those_opencv_decodes():
    assert set(image_io.IMAGE_EXTENSIONS) == set(REQUIRED_EXTENSIONS + OTHER_OPENCV_EXTENSIONS)


@pytest.mark.parametrize("extension", REQUIRED_EXTENSIONS + OTHER_OPENCV_EXTENSIONS)
def test_every_accepted_extension_is_decoded(tmp_path, extension):
    photo = _photo()
    grey = extension in (".pgm", ".pbm")
    pixels = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY) if grey else photo[..., ::-1]
    if extension == ".pbm":
        pixels = np.where(pixels > 127, 255, 0).astype(np.uint8)
    ok, encoded = cv2.imencode(extension, pixels)
    assert ok, extension
    path = tmp_path / f"photo{extension.upper()}"          # extensions are case-insensitive
    path.write_bytes(encoded.tobytes())
    assert image_io.is_image_file(str(path))
    image_io.check_image_extension(str(path))
    rgb = image_io.read_rgb(str(path))
    assert rgb.shape == photo.shape and rgb.dtype == np.uint8
    expected = np.repeat(pixels[..., None], 3, axis=-1) if grey else photo
    lossy = extension in (".jpg", ".jpeg", ".jpe", ".jp2", ".webp")
    assert np.abs(rgb.astype(int) - expected).mean() < (6 if lossy else 0.01), extension


def test_other_extensions_are_a_counted_reason(tmp_path):
    for name in ("notes.txt", "clip.gif", "README"):
        with pytest.raises(SkipExample, match=rf"{name}: extension .* is not an image") as error:
            image_io.check_image_extension(str(tmp_path / name))
        assert error.value.reason == "unsupported_extension"
        assert ".ppm" in error.value.message and ".tiff" in error.value.message


def test_8bit_depth_is_rejected_unless_its_scale_is_given(tmp_path):
    depth_8bit = np.zeros((20, 30), np.uint8)
    depth_8bit[5:15, 5:25] = 210                      # a normalised rendering, not mm
    path = str(tmp_path / "face_depth.png")
    assert cv2.imwrite(path, depth_8bit)
    with pytest.raises(SkipExample, match=r"face_depth.png: 8-bit depth image .*"
                                          r"--depth_8bit_scale_mm") as error:
        image_io.read_depth_png_mm(path)
    assert error.value.reason == "depth_not_16bit"
    # With its scale stated, the 8-bit file is read in mm.
    depth = image_io.read_depth_png_mm(path, depth_8bit_scale_mm=4.0)
    assert set(np.unique(depth)) == {0.0, 840.0}
    # 16-bit mm is read as is (and the 8-bit scale does not apply to it).
    path16 = str(tmp_path / "face16_depth.png")
    assert cv2.imwrite(path16, depth_8bit.astype(np.uint16) * 4)
    np.testing.assert_array_equal(image_io.read_depth_png_mm(path16, depth_8bit_scale_mm=9.0),
                                  depth_8bit.astype(np.float32) * 4)
    # Float depth (metres, from some tools) is not silently taken as mm either.
    path_float = str(tmp_path / "metres_depth.tiff")
    assert cv2.imwrite(path_float, depth_8bit.astype(np.float32) / 250.0)
    with pytest.raises(SkipExample, match=r"metres_depth.tiff: depth samples are float32") as error:
        image_io.read_depth_png_mm(path_float)
    assert error.value.reason == "depth_not_16bit"
