"""affect_zoo.imageio: every common format decodes to RGB uint8, and every broken file fails naming itself."""
import io

import numpy as np
import pytest
from PIL import Image, ImageFile

from affect_zoo.imageio import ImageDecodeError, decode_image, encode_jpeg, to_jpeg_bytes


def encoded(image, fmt, **kwargs):
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


@pytest.fixture
def rgb(rng):
    """A smooth colour image with mild noise, so lossy JPEG stays close to it."""
    y, x = np.mgrid[0:12, 0:17]
    image = np.stack([x * 12, y * 18, 200 - x * 6 - y * 4], axis=-1) + rng.integers(0, 8, size=(12, 17, 3))
    return image.astype(np.uint8)


def test_lossless_formats_round_trip_exactly(rgb):
    for fmt in ("PNG", "BMP"):
        out = decode_image(encoded(Image.fromarray(rgb), fmt))
        assert out.dtype == np.uint8 and out.shape == (12, 17, 3)
        np.testing.assert_array_equal(out, rgb)


def test_jpeg_from_bytes_path_and_file_object(rgb, tmp_path):
    data = encode_jpeg(rgb)
    (tmp_path / "a.jpg").write_bytes(data)
    expected = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    np.testing.assert_array_equal(decode_image(data), expected)
    np.testing.assert_array_equal(decode_image(tmp_path / "a.jpg"), expected)
    np.testing.assert_array_equal(decode_image(str(tmp_path / "a.jpg")), expected)
    with open(tmp_path / "a.jpg", "rb") as f:
        np.testing.assert_array_equal(decode_image(f), expected)
    assert np.abs(expected.astype(int) - rgb).mean() < 6  # the JPEG itself is faithful


def test_grayscale_becomes_three_equal_channels(rgb):
    grey = Image.fromarray(rgb).convert("L")
    out = decode_image(encoded(grey, "PNG"))
    assert out.shape == (12, 17, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], np.asarray(grey))


def test_16_bit_grey_is_scaled_not_clipped():
    values = np.array([[0, 257 * 128, 65535]], dtype=np.uint16)
    out = decode_image(encoded(Image.fromarray(values), "PNG"))
    np.testing.assert_array_equal(out[0, :, 0], [0, 128, 255])


def test_alpha_is_composited_on_white():
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)  # opaque red; the rest fully transparent black
    out = decode_image(encoded(Image.fromarray(rgba, "RGBA"), "PNG"))
    np.testing.assert_array_equal(out[0, 0], (255, 0, 0))
    np.testing.assert_array_equal(out[1, 1], (255, 255, 255))


def test_palette_with_transparency_and_gif_first_frame():
    frames = [Image.new("P", (4, 3), color) for color in (1, 2)]
    for frame in frames:
        frame.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255] + [0] * 759)
    gif = encoded(frames[0], "GIF", save_all=True, append_images=frames[1:])
    np.testing.assert_array_equal(decode_image(gif)[0, 0], (255, 0, 0))
    transparent = encoded(frames[1], "PNG", transparency=2)
    np.testing.assert_array_equal(decode_image(transparent)[0, 0], (255, 255, 255))


def test_cmyk_jpeg_decodes_to_rgb(rgb):
    cmyk = encoded(Image.fromarray(rgb).convert("CMYK"), "JPEG", quality=95)
    out = decode_image(cmyk)
    assert out.shape == (12, 17, 3)
    assert np.abs(out.astype(int) - rgb).mean() < 6


@pytest.mark.parametrize("make, reason", [
    (lambda data: b"", "empty file"),
    (lambda data: data[: len(data) // 2], "truncated"),
    (lambda data: data[:-2], "truncated"),
    (lambda data: b"not an image at all", "cannot identify"),
])
def test_broken_input_raises_naming_the_file(rgb, tmp_path, make, reason):
    path = tmp_path / "broken_001.jpg"
    path.write_bytes(make(encode_jpeg(rgb)))
    with pytest.raises(ImageDecodeError, match=rf"(?i)broken_001\.jpg.*{reason}") as info:
        decode_image(path)
    assert isinstance(info.value, ValueError) and info.value.name == str(path)
    with pytest.raises(ImageDecodeError, match=rf"(?i)upload\.jpg.*{reason}"):
        to_jpeg_bytes(path.read_bytes(), name="upload.jpg")


def test_truncated_is_refused_even_when_pillow_is_told_to_accept_it(rgb):
    data = encode_jpeg(rgb)[:-40]
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = True
    try:
        with pytest.raises(ImageDecodeError, match="(?i)truncated"):
            decode_image(data, name="x.jpg")
        assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # the caller's setting is restored
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous


def test_missing_path_raises_naming_it(tmp_path):
    with pytest.raises(ImageDecodeError, match=r"nope\.jpg.*cannot read file"):
        decode_image(tmp_path / "nope.jpg")


def test_to_jpeg_bytes_passes_clean_jpeg_through_and_reencodes_the_rest(rgb):
    jpeg = encode_jpeg(rgb)
    assert to_jpeg_bytes(jpeg) == jpeg
    png = encoded(Image.fromarray(rgb), "PNG")
    out = to_jpeg_bytes(png)
    assert out[:3] == b"\xff\xd8\xff"
    assert np.abs(decode_image(out).astype(int) - rgb).mean() < 6
    grey = to_jpeg_bytes(encoded(Image.fromarray(rgb).convert("L"), "JPEG"))
    assert Image.open(io.BytesIO(grey)).mode == "RGB"


def test_exif_rotation_is_applied_before_storage(rgb):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    rotated = encoded(Image.fromarray(rgb), "JPEG", exif=exif.tobytes())
    assert decode_image(rotated).shape == (17, 12, 3)
    stored = to_jpeg_bytes(rotated)
    assert stored != rotated and Image.open(io.BytesIO(stored)).size == (12, 17)


def test_too_many_pixels_are_refused_from_the_header():
    data = encoded(Image.new("L", (300, 200)), "PNG")
    with pytest.raises(ImageDecodeError, match=r"big\.png: 300x200 = 60000 pixels, more than the limit of 59999"):
        decode_image(data, name="big.png", max_pixels=59999)
    assert decode_image(data, max_pixels=60000).shape == (200, 300, 3)


def test_exif_orientation_of_other_formats_is_ignored_as_the_serving_graph_does(rgb):
    """One rule everywhere: JPEG's EXIF orientation is applied, a PNG's eXIf chunk is not (the graph reads only
    JPEG's APP1 segment)."""
    import tensorflow as tf

    from affect_zoo.data import decode_image_bytes

    exif = Image.Exif()
    exif[0x0112] = 6
    png = encoded(Image.fromarray(rgb), "PNG", exif=exif.tobytes())
    assert Image.open(io.BytesIO(png)).getexif().get(0x0112) == 6
    np.testing.assert_array_equal(decode_image(png), rgb)
    np.testing.assert_array_equal(decode_image_bytes(tf.constant(png)).numpy(), rgb)
    assert to_jpeg_bytes(png)[:3] == b"\xff\xd8\xff" and decode_image(to_jpeg_bytes(png)).shape == rgb.shape


def test_paths_that_are_not_regular_files_are_named(tmp_path):
    (tmp_path / "folder.jpg").mkdir()
    with pytest.raises(ImageDecodeError, match=r"folder\.jpg: not a regular file \(a directory\)"):
        decode_image(tmp_path / "folder.jpg")
    (tmp_path / "loop.jpg").symlink_to(tmp_path / "loop.jpg")
    with pytest.raises(ImageDecodeError, match=r"loop\.jpg: cannot read file \(Too many levels of symbolic links"):
        decode_image(tmp_path / "loop.jpg")
