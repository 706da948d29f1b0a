"""The image room: every rule for turning an image (file, bytes or array) into the pixels a model sees.

One conversion rule holds wherever an image enters: the dataset builders (Pillow, ``decode_image`` /
``to_jpeg_bytes``), the training and evaluation pipelines (``data.make_pipeline``), ``affect_zoo.predict``
(``inference``) and the exported serving graph (``decode_and_resize``):
- grey is repeated over three channels; alpha is composited on white, round((c·a + 255·(255 − a)) / 255) per
  channel (transparent pixels often store black), the same formula in NumPy (``to_rgb_array``) and in the graph
  (``to_rgb``), so an RGBA array and its PNG give the same pixels;
- CMYK becomes RGB (each decoder converts it; Pillow and TensorFlow's libjpeg differ by a few levels);
- 16-bit samples keep their high byte, as TensorFlow's decoder does;
- at most ``MAX_PIXELS`` pixels, read from the header before anything is decoded (a 218 KB PNG can declare
  15000×15000 and take 4 GB to decode);
- the EXIF Orientation of a JPEG is applied (photos are scored the way they are shown); orientation tags in other
  formats (PNG eXIf, WebP, TIFF) are ignored, since the graph reads only JPEG's APP1 segment;
- the whole image is resized to the model's input (``resize_for_model``: bilinear, antialiased, no crop).

Real image collections contain zero-byte downloads, truncated JPEGs and odd colour modes (CMYK, palette, 16-bit
grey, alpha). The Pillow half decodes strictly: every failure becomes an ``ImageDecodeError`` naming the file, so a
caller can skip and report it instead of training on grey padding. The graph half (TensorFlow ops, usable in a
``tf.data`` map and in a SavedModel, in ``affect_zoo.imageio.graph``, so that this module imports no TensorFlow and the
CLI's start-up stays fast) reads JPEG, PNG, GIF (first frame), BMP and still WebP; Pillow also reads
TIFF and animated WebP, which ``predict`` decodes with it. Paths that are not regular files (directories, fifos,
devices) are refused without being opened, so a named pipe cannot block a caller.
"""
from __future__ import annotations

import io
import os
import stat
import struct
import threading
import warnings
from typing import BinaryIO, Union

import numpy as np
from PIL import Image, ImageFile, ImageOps

ImageSource = Union[bytes, bytearray, memoryview, str, os.PathLike, BinaryIO]

JPEG_QUALITY = 95
#: Decoded pixels (width × height) above which an image is refused, by ``predict`` and, by default, the serving
#: graph (``export_saved_model(max_pixels=...)``): 8000×8000, more than a 50-megapixel camera's photos.
MAX_PIXELS = 64_000_000
#: formats whose EXIF Orientation is applied (Pillow opens some camera JPEGs as MPO)
ORIENTED_FORMATS = ("JPEG", "MPO")

# Pillow decodes truncated files silently (grey fill) when its module-global LOAD_TRUNCATED_IMAGES is True, which
# some libraries set at import time. With Pillow's default (False) decoding changes nothing global and takes no
# lock, so callers decode in parallel; only while a library has set it True is it switched off around a decode,
# under this lock (a global can only be switched under one).
_FLAG_LOCK = threading.Lock()
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error, Image.DecompressionBombError)


class ImageDecodeError(ValueError):
    """An image that cannot be decoded; `name` says which file (or input) it was."""

    def __init__(self, name: str, reason: str):
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason


def read_file(path: str | os.PathLike, name: str | None = None) -> bytes:
    """The bytes of a regular file; anything else raises `ImageDecodeError` naming it.

    The path is checked with ``os.stat`` before it is opened, so a directory, fifo, socket or device is refused
    without blocking; the file is then opened non-blocking and checked again (it may have been replaced meanwhile).
    """
    path = os.fspath(path)
    name = name or path
    try:
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode):
            raise ImageDecodeError(name, f"not a regular file ({_file_kind(mode)})")
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise ImageDecodeError(name, "not a regular file (replaced while being opened)")
            return f.read()
    except OSError as e:
        raise ImageDecodeError(name, f"cannot read file ({e.strerror or e})") from e


def _file_kind(mode: int) -> str:
    kinds = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))
    return next((kind for test, kind in kinds if test(mode)), "not a file")


def _read_source(source: ImageSource, name: str | None) -> tuple[bytes, str]:
    """Returns the encoded bytes and a display name for errors."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), name or "<bytes>"
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        return read_file(path, name), name or path
    if hasattr(source, "read"):
        return source.read(), name or getattr(source, "name", "<stream>")
    raise TypeError(f"expected bytes, a path or a binary file object, got {type(source).__name__}")


def _open_strict(data: bytes, name: str, max_pixels: int | None = MAX_PIXELS) -> Image.Image:
    """Opens and fully loads the first frame, refusing truncated data and, from the header alone, more than
    ``max_pixels`` pixels (None: no limit but Pillow's own decompression-bomb one)."""
    if not data:
        raise ImageDecodeError(name, "empty file (0 bytes)")
    if not ImageFile.LOAD_TRUNCATED_IMAGES:
        return _load(data, name, max_pixels)
    with _FLAG_LOCK:
        previous = ImageFile.LOAD_TRUNCATED_IMAGES
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        try:
            return _load(data, name, max_pixels)
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = previous


def _load(data, name, max_pixels):
    with warnings.catch_warnings():
        # our limit is lower than the size at which Pillow warns, so its warning would only repeat our error
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
            check_pixels(image.size[0], image.size[1], name, max_pixels)
            image.seek(0)
            image.load()
        except Image.DecompressionBombError as e:  # Pillow's own check, in Image.open, came before ours
            raise ImageDecodeError(name, f"more than the limit of {max_pixels} pixels ({e})") from e
        except _DECODE_ERRORS as e:
            raise ImageDecodeError(name, str(e) or type(e).__name__) from e
    return image


def check_pixels(width: int, height: int, name: str, max_pixels: int | None = MAX_PIXELS) -> None:
    """Raises `ImageDecodeError` when a width × height image exceeds ``max_pixels``."""
    if max_pixels is not None and width * height > max_pixels:
        raise ImageDecodeError(name, f"{width}x{height} = {width * height} pixels, more than the limit of "
                                     f"{max_pixels}")


def _to_rgb(image: Image.Image) -> np.ndarray:
    """RGB uint8 of any Pillow mode: upright, brought to grey, grey + alpha, RGB or RGBA, then ``to_rgb_array``."""
    if image.format in ORIENTED_FORMATS:
        image = ImageOps.exif_transpose(image)  # raters saw the upright picture
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16 bits: the high byte, as TensorFlow's decoder reduces them (convert("L") would clip instead).
        grey = np.asarray(image, dtype=np.int64)
        if image.mode.startswith("I;16") or grey.max(initial=0) > 255:
            grey = np.clip(grey, 0, 65535) >> 8
        image = Image.fromarray(grey.astype(np.uint8), "L")
    elif image.mode == "F":
        image = Image.fromarray(np.clip(np.asarray(image), 0, 255).astype(np.uint8), "L")
    if image.mode not in ("L", "LA", "RGB", "RGBA"):
        has_alpha = image.mode in ("PA", "RGBa", "La") or (image.mode == "P" and "transparency" in image.info)
        image = image.convert("RGBA" if has_alpha else "RGB")
    return to_rgb_array(np.asarray(image))


def to_rgb_array(pixels: np.ndarray) -> np.ndarray:
    """(H, W), (H, W, 1) grey, (H, W, 2) grey + alpha, (H, W, 3) RGB or (H, W, 4) RGBA, values in [0, 255] →
    (H, W, 3) uint8: the NumPy twin of the graph's ``to_rgb`` (same float32 formula, so the same levels)."""
    pixels = np.asarray(pixels)
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    channels = pixels.shape[-1]
    colour = np.repeat(pixels[..., :1], 3, axis=-1) if channels in (1, 2) else pixels[..., :3]
    if channels in (2, 4):
        c, a = colour.astype(np.float32), pixels[..., -1:].astype(np.float32)
        colour = np.round((c * a + np.float32(255) * (np.float32(255) - a)) / np.float32(255))
    return np.round(colour).astype(np.uint8) if colour.dtype != np.uint8 else colour


def decode_image(source: ImageSource, name: str | None = None, max_pixels: int | None = MAX_PIXELS) -> np.ndarray:
    """Decodes bytes, a path or a binary file to an RGB uint8 array of shape (H, W, 3).

    GIFs and other multi-frame files give their first frame. Raises `ImageDecodeError` (a `ValueError`)
    naming the file for zero-byte, truncated, corrupt, unknown-format or over-``max_pixels`` input and for paths
    that are not regular files.
    """
    data, name = _read_source(source, name)
    image = _open_strict(data, name, max_pixels)
    try:
        return _to_rgb(image)
    except _DECODE_ERRORS as e:
        raise ImageDecodeError(name, str(e) or type(e).__name__) from e


def encode_jpeg(rgb: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """JPEG bytes of an (H, W, 3) uint8 array."""
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(rgb, dtype=np.uint8), "RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def to_jpeg_bytes(source: ImageSource, name: str | None = None, quality: int = JPEG_QUALITY) -> bytes:
    """Validated JPEG bytes for storage: a clean RGB JPEG passes through unchanged (no generation loss),
    anything else (PNG, CMYK, grey, alpha, rotated by EXIF) is decoded and re-encoded.

    Raises `ImageDecodeError` naming the file when the input cannot be decoded.
    """
    data, name = _read_source(source, name)
    image = _open_strict(data, name)
    upright = image.getexif().get(0x0112, 1) == 1  # EXIF Orientation: stored upright, the stored file needs none
    if image.format == "JPEG" and image.mode == "RGB" and upright:
        return data
    try:
        rgb = _to_rgb(image)
    except _DECODE_ERRORS as e:
        raise ImageDecodeError(name, str(e) or type(e).__name__) from e
    return encode_jpeg(rgb, quality)


def check_array(image, name, max_pixels=MAX_PIXELS):
    """An array image as (H, W, C) float32, C in (1, 3, 4), refusing what would silently give NaN or saturated
    outputs: another shape, dtype or range, NaN, inf, more than ``max_pixels`` pixels; ``name`` is in the error."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[-1] not in (1, 3, 4) or min(image.shape[:2]) < 1:
        raise ValueError(f"{name}: an array must be (H, W), (H, W, 3) or (H, W, 4), got {image.shape}")
    if image.dtype == bool or not (np.issubdtype(image.dtype, np.integer) or np.issubdtype(image.dtype, np.floating)):
        raise ValueError(f"{name}: an array must hold integers or floats in [0, 255], got dtype {image.dtype}")
    check_pixels(image.shape[1], image.shape[0], name, max_pixels)
    image = image.astype(np.float32)
    if not np.isfinite(image).all():
        raise ValueError(f"{name}: the array holds {np.isnan(image).sum()} NaN and {np.isinf(image).sum()} "
                         f"infinite values")
    low, high = float(image.min()), float(image.max())
    if low < 0 or high > 255:
        raise ValueError(f"{name}: array values must lie in [0, 255] (RGB), got [{low:g}, {high:g}]")
    return image


# Header parsing in the graph, so the serving signature can refuse a decompression bomb before decoding it and apply
