"""The image room's rules as TensorFlow ops, usable in a ``tf.data`` map and in a SavedModel: the graph decoder of
training, ``predict`` and the serving signature. The rules and their NumPy/Pillow twins are described in
``affect_zoo.imageio``; this half is separate only so that importing that one costs no TensorFlow."""
import tensorflow as tf

from affect_zoo.imageio import MAX_PIXELS


def resize_for_model(images, size):
    """RGB images (H, W, 3) or (B, H, W, 3), any numeric dtype → float32 in [0, 255] at ``size`` = (h, w).

    The whole image is resized (bilinear, antialiased), not cropped: aesthetics depend on composition, so the
    evaluation view keeps all of it at the cost of distorting the aspect ratio.
    """
    images = tf.cast(images, tf.float32)
    resized = tf.image.resize(images, size, method="bilinear", antialias=True)
    return tf.clip_by_value(resized, 0.0, 255.0)


def decode_image_bytes(data):
    """Encoded image bytes (scalar tf.string) → RGB uint8 (H, W, 3): the graph decoder of training, ``predict`` and
    the serving signature.

    ``tf.io.decode_image`` reads JPEG (CMYK converted by libjpeg), PNG, GIF (first frame), BMP and WebP. Its JPEG
    decoder uses TensorFlow's default DCT, not Pillow's accurate one: on 198 Emotion6 photos the two differ by up
    to 8 levels (0.9 on average); ``dct_method="INTEGER_ACCURATE"`` would match Pillow exactly, at the cost of
    shifting the pixels the shipped entries were trained on. A JPEG's
    EXIF orientation is applied (``exif_orientation``), as Pillow does in ``decode_image``; then ``to_rgb``. An
    animated WebP is refused (InvalidArgumentError): TensorFlow's decoder corrupts the heap on one. Usable eagerly,
    which is how ``Client`` finds the item a server could not decode.
    """
    check = tf.debugging.Assert(tf.logical_not(is_animated_webp(data)), [
        "animated WebP: TensorFlow's decoder cannot read it; send a still image (e.g. its first frame)"])
    with tf.control_dependencies([check]):
        image = tf.io.decode_image(data, channels=0, dtype=tf.uint8, expand_animations=False)
    return to_rgb(apply_orientation(tf.ensure_shape(image, [None, None, None]), exif_orientation(data)))


def to_rgb(image):
    """(H, W, C) pixels in [0, 255], C = 1 grey, 2 grey + alpha, 3 RGB or 4 RGBA → (H, W, 3) of the same dtype:
    grey repeated, alpha composited on white as round((c·a + 255·(255 − a)) / 255) in float32 (``to_rgb_array``
    is the NumPy twin)."""
    def grey():
        return tf.tile(image[..., :1], [1, 1, 3])

    def on_white(colour, alpha):
        c, a = tf.cast(colour, tf.float32), tf.cast(alpha, tf.float32)
        return tf.cast(tf.round((c * a + 255.0 * (255.0 - a)) / 255.0), image.dtype)

    rgb = tf.switch_case(tf.shape(image)[-1] - 1, [
        grey,
        lambda: on_white(grey(), image[..., 1:2]),
        lambda: image[..., :3],
        lambda: on_white(image[..., :3], image[..., 3:4]),
    ])
    return tf.ensure_shape(rgb, [None, None, 3])


_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM")
GRAPH_FORMATS = "JPEG, PNG, GIF, BMP or WebP"


def known_format(data):
    """Whether encoded bytes (a scalar tf.string) start like a format the graph decoder reads."""
    head = tf.strings.substr(tf.strings.join([data, tf.constant(b"\0" * 12)]), 0, 12)
    checks = [tf.equal(tf.strings.substr(head, 0, len(magic)), magic) for magic in _MAGIC]
    checks.append(tf.logical_and(tf.equal(tf.strings.substr(head, 0, 4), b"RIFF"),
                                 tf.equal(tf.strings.substr(head, 8, 4), b"WEBP")))
    return tf.reduce_any(tf.stack(checks))


def decode_checked(data, index, max_pixels=MAX_PIXELS):
    """``decode_image_bytes`` after checks that name ``images[index]``: bytes in no known format, an animated WebP or
    a header declaring more than ``max_pixels`` pixels (None: no limit) raise InvalidArgumentError before anything is
    decoded; a known format that fails to decode gives TF's decoder error."""
    checks = [tf.debugging.Assert(known_format(data), [tf.strings.format(
        "images[{}] is not an image: expected " + GRAPH_FORMATS + " bytes", index)])]
    with tf.control_dependencies(checks):  # the decoder's own, index-less error must not come first
        checks.append(tf.debugging.Assert(tf.logical_not(is_animated_webp(data)), [tf.strings.format(
            "images[{}] is an animated WebP, which TensorFlow's decoder cannot read: send a still image", index)]))
    if max_pixels is not None:
        with tf.control_dependencies(checks):
            height, width = tf.unstack(image_size_from_header(data))
        checks.append(tf.debugging.Assert(height * width <= max_pixels, [tf.strings.format(
            "images[{}] is {}x{} = {} pixels, more than the limit of " + str(max_pixels) + " set at export "
            "(export_saved_model(max_pixels=...), CLI: --max-pixels)", (index, width, height, height * width))]))
    with tf.control_dependencies(checks):
        data = tf.identity(data)
    return decode_image_bytes(data)


def decode_and_resize(images, size, max_pixels=MAX_PIXELS):
    """A batch of encoded images (tf.string [None]) → float32 [None, h, w, 3] in [0, 255], as in training: the
    serving signature's input graph (``decode_checked`` then ``resize_for_model`` per item). A bad item stops the
    batch with an InvalidArgumentError naming its index (``images[i]``), before anything is decoded."""
    size = tuple(int(s) for s in size)

    def one(args):
        index, data = args
        return resize_for_model(decode_checked(data, index, max_pixels), size)

    indices = tf.range(tf.shape(images, out_type=tf.int64)[0])
    return tf.map_fn(one, (indices, images), fn_output_signature=tf.TensorSpec(size + (3,), tf.float32))


# EXIF orientation without Pillow. Reads never leave the data: the bytes are padded and positions clipped.
_HEADER_BYTES = 32
_IFD_ENTRIES = 32  # IFD0 entries searched for the Orientation tag (cameras write it among the first dozen)
# Where APP1 Exif is looked for: the first segment (cameras) or right after a standard JFIF APP0 (16 bytes long).
# Fixed positions compared as strings, as this runs for every training image and every op costs ~10 µs in a
# tf.data map: a walk over the segments (or a search for "Exif") halved the rate of decode_image_bytes.
_EXIF_AT = {6: b"\xff\xd8\xff\xe1", 24: b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"}
_ORIENTATION_TAG = 0x0112


def _reader(data):
    """``read(pos, n)``: n bytes of ``data`` from int64 ``pos`` as int64 [n], zeros past the end (only those n
    bytes are copied)."""
    length = tf.cast(tf.strings.length(data), tf.int64)

    def read(pos, n):
        start = tf.cast(tf.clip_by_value(tf.cast(pos, tf.int64), 0, length), tf.int32)
        piece = tf.strings.join([tf.strings.substr(data, start, n), tf.constant(b"\0" * n)])
        return tf.reshape(tf.cast(tf.io.decode_raw(tf.strings.substr(piece, 0, n), tf.uint8), tf.int64), [n])

    return read


def _uint(raw, little_endian):
    """Unsigned integers from the bytes on the last axis of ``raw`` (int64), little- or big-endian."""
    powers = [256 ** i for i in range(raw.shape[-1])]
    little, big = (tf.reduce_sum(raw * tf.constant(p, tf.int64), -1) for p in (powers, powers[::-1]))
    return tf.where(little_endian, little, big)


def _starts(raw, offset, magic):
    return tf.reduce_all(tf.equal(raw[offset:offset + len(magic)], list(magic)))


def is_animated_webp(data):
    """Whether encoded bytes (scalar tf.string) are a WebP with the animation flag of its VP8X chunk."""
    head = _reader(data)(0, _HEADER_BYTES)
    return _starts(head, 0, b"RIFF") & _starts(head, 8, b"WEBPVP8X") & tf.not_equal(head[20] & 2, 0)


def image_size_from_header(data):
    """(height, width) that encoded bytes (scalar tf.string) declare, int64 [2], read without decoding: JPEG's frame
    header (``tf.io.extract_jpeg_shape``), PNG's IHDR, GIF's logical screen, BMP's info header, WebP's VP8 / VP8L /
    VP8X chunk; [0, 0] for bytes in no such format (the decoder refuses those)."""
    h = _reader(data)(0, _HEADER_BYTES)

    def le(offset, n):
        return _uint(h[offset:offset + n], True)

    def be(offset, n):
        return _uint(h[offset:offset + n], False)

    def signed(value):
        return tf.where(value >= 2 ** 31, value - 2 ** 32, value)

    webp = _starts(h, 0, b"RIFF") & _starts(h, 8, b"WEBP")
    lossless = le(21, 4)  # VP8L: 14 bits width - 1, then 14 bits height - 1
    lossless_height = (tf.bitwise.right_shift(lossless, 14) & 0x3FFF) + 1
    cases = [
        (_starts(h, 0, b"\x89PNG\r\n\x1a\n"), (be(20, 4), be(16, 4))),
        (_starts(h, 0, b"GIF8"), (le(8, 2), le(6, 2))),
        (_starts(h, 0, b"BM"), (tf.abs(signed(le(22, 4))), tf.abs(signed(le(18, 4))))),  # height < 0: top-down
        (webp & _starts(h, 12, b"VP8 "), (le(28, 2) & 0x3FFF, le(26, 2) & 0x3FFF)),
        (webp & _starts(h, 12, b"VP8L"), (lossless_height, (lossless & 0x3FFF) + 1)),
        (webp & _starts(h, 12, b"VP8X"), (le(27, 3) + 1, le(24, 3) + 1)),
    ]
    size = tf.zeros([2], tf.int64)
    for matches, value in reversed(cases):
        size = tf.where(matches, tf.stack(value), size)
    return tf.cond(tf.io.is_jpeg(data), lambda: tf.cast(tf.io.extract_jpeg_shape(data)[:2], tf.int64), lambda: size)


def exif_orientation(data):
    """The EXIF Orientation (int32, 1–8) of JPEG bytes (scalar tf.string), read in the graph; 1 for other bytes,
    no Exif segment, no such tag or a value outside 1–8.

    Looks for the APP1 segment starting ``Exif\\0\\0`` as the first JPEG segment, or as the second after a standard
    16-byte JFIF APP0 (where cameras and most writers put it; Exif placed elsewhere is not seen), then for tag
    0x0112 among the first ``_IFD_ENTRIES`` entries of IFD0, in the TIFF block's byte order (``II`` little-, ``MM``
    big-endian).
    """
    read = _reader(data)
    found = _exif_segments(data)
    tiff = tf.where(found[0], tf.constant(12, tf.int64), tf.constant(30, tf.int64))  # after "Exif\0\0"

    def orientation(tiff):
        head = read(tiff, 8)
        little = _starts(head, 0, b"II")
        ifd = tiff + _uint(head[4:8], little)
        count = _uint(read(ifd, 2), little)
        entries = tf.reshape(read(ifd + 2, 12 * _IFD_ENTRIES), [_IFD_ENTRIES, 12])
        hit = tf.equal(_uint(entries[:, 0:2], little), _ORIENTATION_TAG) & (
            tf.range(_IFD_ENTRIES, dtype=tf.int64) < count)
        value = tf.gather(_uint(entries[:, 8:10], little), tf.argmax(tf.cast(hit, tf.int32)))
        valid = (little | _starts(head, 0, b"MM")) & tf.reduce_any(hit) & (value >= 1) & (value <= 8)
        return tf.where(valid, tf.cast(value, tf.int32), 1)

    # Most JPEGs have no Exif and skip the IFD's ~40 ops.
    return tf.cond(found[0] | found[1], lambda: orientation(tiff), lambda: tf.constant(1))


def _exif_segments(data):
    """[APP1 Exif is the first segment, it follows a standard JFIF APP0] (bool scalars) for encoded bytes."""
    head = tf.strings.join([tf.strings.substr(data, 0, 32), tf.constant(b"\0" * 32)])
    return [tf.equal(tf.strings.substr(head, at, 6), b"Exif\0\0")
            & tf.equal(tf.strings.substr(head, 0, len(start)), start) for at, start in _EXIF_AT.items()]


def has_exif(data):
    """Whether encoded bytes hold an APP1 Exif segment where ``exif_orientation`` reads one (no IFD parsed)."""
    first, second = _exif_segments(data)
    return first | second


def apply_orientation(image, orientation):
    """An (H, W, C) image as displayed under EXIF ``orientation`` (1–8), as Pillow's ``ImageOps.exif_transpose``:
    2 mirrored, 3 rotated 180°, 4 flipped, 5 transposed, 6 rotated 90° clockwise, 7 transversed, 8 rotated 90°
    counter-clockwise."""
    def transposed():
        return tf.transpose(image, [1, 0, 2])

    return tf.switch_case(orientation - 1, [
        lambda: image, lambda: tf.reverse(image, [1]), lambda: tf.reverse(image, [0, 1]),
        lambda: tf.reverse(image, [0]), transposed, lambda: tf.reverse(transposed(), [1]),
        lambda: tf.reverse(transposed(), [0, 1]), lambda: tf.reverse(transposed(), [0])])
