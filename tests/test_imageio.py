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


# --- one rule: NumPy, the graph, predict's pipeline, training's pipeline and the export's input graph ----------

def test_alpha_is_one_formula_in_numpy_and_the_graph_for_every_level_pair():
    """Every (colour, alpha) pair of 8-bit levels against the exact integer rounding of (c·a + 255·(255 − a)) / 255,
    computed here independently: the NumPy twin (Pillow's side) and the graph's ``to_rgb`` give it exactly."""
    import tensorflow as tf

    from affect_zoo import imageio
    from affect_zoo.imageio import graph

    c, a = np.meshgrid(np.arange(256), np.arange(256))
    exact = (c * a + 255 * (255 - a) + 127) // 255
    grey_alpha = np.stack([c, a], axis=-1).astype(np.uint8)
    rgba = np.stack([c, 255 - c, c // 2, a], axis=-1).astype(np.uint8)
    np.testing.assert_array_equal(imageio.to_rgb_array(grey_alpha)[..., 0], exact)
    np.testing.assert_array_equal(graph.to_rgb(tf.constant(grey_alpha)).numpy()[..., 1], exact)
    expected = np.stack([exact, (((255 - c) * a + 255 * (255 - a) + 127) // 255),
                         ((c // 2) * a + 255 * (255 - a) + 127) // 255], axis=-1)
    np.testing.assert_array_equal(imageio.to_rgb_array(rgba), expected)
    np.testing.assert_array_equal(graph.to_rgb(tf.constant(rgba)).numpy(), expected)
    np.testing.assert_array_equal(graph.to_rgb(tf.constant(rgba.astype(np.float32))).numpy(), expected)


def test_the_same_rgba_picture_as_array_png_bytes_and_path_gives_identical_model_inputs(tmp_path):
    """predict's pipeline: a uint8 RGBA array, its PNG bytes and the PNG's path feed the model the same pixels, and
    those are Pillow's decode (alpha on white, ``decode_image``) resized."""
    from affect_zoo import imageio, inference
    from affect_zoo.imageio import graph

    rng = np.random.default_rng(3)
    rgba = rng.integers(0, 256, (23, 31, 4), dtype=np.uint8)
    rgba[..., 3][:5] = 0  # fully transparent rows holding colour: must become white
    png = encoded(Image.fromarray(rgba, "RGBA"), "PNG")
    path = tmp_path / "picture.png"
    path.write_bytes(png)
    errors = [None] * 4
    batches = list(inference.model_inputs([rgba, png, str(path), rgba.astype(np.float32)], (16, 20), errors))
    assert errors == [None] * 4 and len(batches) == 1
    indices, images = batches[0]
    assert list(indices) == [0, 1, 2, 3]
    images = images.numpy()
    for i in (1, 2, 3):
        np.testing.assert_array_equal(images[i], images[0])
    pillow = imageio.decode_image(png)
    assert (pillow[:5] == 255).all()
    np.testing.assert_array_equal(images[0], graph.resize_for_model(pillow, (16, 20)).numpy())


def test_the_export_graph_decodes_exactly_as_the_training_pipeline():
    """JPEG (with EXIF rotation), PNG with alpha, grey PNG, GIF: the serving signature's input graph
    (``decode_and_resize``) equals the evaluation pipeline of training (``data.make_pipeline``) bit for bit (one
    decoder, TensorFlow's, in both), and predict's pipeline equals both. Pillow's JPEG decoder, used by the
    builders, differs from TensorFlow's by a few levels (its accurate DCT against TensorFlow's default): lossless
    formats agree exactly, JPEG within JPEG_TOLERANCE levels on average."""
    import tensorflow as tf

    from affect_zoo import data, imageio, inference
    from affect_zoo.imageio import graph
    from affect_zoo.tasks import Task

    rng = np.random.default_rng(5)
    y, x = np.mgrid[0:37, 0:45]
    photo = np.stack([x * 5, y * 6, 180 - x * 2 - y], axis=-1) + rng.integers(0, 12, (37, 45, 3))
    photo = photo.astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6
    rgba = np.dstack([photo, rng.integers(0, 256, (37, 45), dtype=np.uint8)])
    items = [encoded(Image.fromarray(photo), "JPEG", quality=90),
             encoded(Image.fromarray(photo), "JPEG", quality=90, exif=exif.tobytes()),
             encoded(Image.fromarray(rgba, "RGBA"), "PNG"), encoded(Image.fromarray(photo[..., 0]), "PNG"),
             encoded(Image.fromarray(photo), "GIF")]
    size = (24, 28)
    served = graph.decode_and_resize(tf.constant(items), size).numpy()
    examples = tf.data.Dataset.from_tensor_slices({"image": tf.constant(items), "score": tf.zeros([len(items)])})
    trained = next(iter(data.make_pipeline(examples, [Task("score", "regression", 1)], size, len(items),
                                           training=False)))[0].numpy()
    errors = [None] * len(items)
    (_, predicted), = inference.model_inputs(items, size, errors)
    np.testing.assert_array_equal(served, trained)
    np.testing.assert_array_equal(predicted.numpy(), trained)
    for i, item in enumerate(items):
        pillow = graph.resize_for_model(imageio.decode_image(item), size).numpy()
        gap = np.abs(pillow - trained[i]).mean()
        assert gap == 0 if i >= 2 else gap < JPEG_TOLERANCE, (i, gap)


JPEG_TOLERANCE = 1.5  # mean levels between Pillow's and TensorFlow's JPEG decoders after the resize
