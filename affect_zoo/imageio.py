"""Strict image decoding shared by the TFDS builders and `affect_zoo.predict`.

Real image collections contain zero-byte downloads, truncated JPEGs and odd colour modes (CMYK, palette,
16-bit grey, alpha). Everything here decodes to RGB uint8 with Pillow, and every failure becomes an
`ImageDecodeError` that names the file, so a caller can skip and report it instead of training on grey padding.

Two rules hold everywhere images are decoded (here, ``data.decode_image_bytes`` for training and ``predict``, and
the exported serving graph):
- at most ``MAX_PIXELS`` pixels, read from the header before anything is decoded (a 218 KB PNG can declare
  15000×15000 and take 4 GB to decode);
- the EXIF Orientation of a JPEG is applied (photos are scored the way they are shown); orientation tags in other
  formats (PNG eXIf, WebP, TIFF) are ignored, since the serving graph reads only JPEG's APP1 segment.
Paths that are not regular files (directories, fifos, devices) are refused without being opened, so a named pipe
cannot block a caller.
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

# Pillow decodes truncated files silently (grey fill) when this module-global flag is True, and some
# libraries set it at import time. Decoding forces it off under a lock and restores it afterwards.
_TRUNCATION_LOCK = threading.Lock()
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error, Image.DecompressionBombError)
_WHITE = (255, 255, 255, 255)


class ImageDecodeError(ValueError):
    """An image that cannot be decoded; `name` says which file (or input) it was."""

    def __init__(self, name: str, reason: str):
        super().__init__(f"cannot decode image {name}: {reason}")
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
    with _TRUNCATION_LOCK, warnings.catch_warnings():
        # our limit is lower than the size at which Pillow warns, so its warning would only repeat our error
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        previous = ImageFile.LOAD_TRUNCATED_IMAGES
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        try:
            image = Image.open(io.BytesIO(data))
            check_pixels(image.size[0], image.size[1], name, max_pixels)
            image.seek(0)
            image.load()
        except Image.DecompressionBombError as e:  # Pillow's own check, in Image.open, came before ours
            raise ImageDecodeError(name, f"more than the limit of {max_pixels} pixels ({e})") from e
        except _DECODE_ERRORS as e:
            raise ImageDecodeError(name, str(e) or type(e).__name__) from e
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = previous
    return image


def check_pixels(width: int, height: int, name: str, max_pixels: int | None = MAX_PIXELS) -> None:
    """Raises `ImageDecodeError` when a width × height image exceeds ``max_pixels``."""
    if max_pixels is not None and width * height > max_pixels:
        raise ImageDecodeError(name, f"{width}x{height} = {width * height} pixels, more than the limit of "
                                     f"{max_pixels}")


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB view of any Pillow mode; alpha is composited on white because transparent pixels often store black."""
    if image.format in ORIENTED_FORMATS:
        image = ImageOps.exif_transpose(image)  # raters saw the upright picture
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16-bit grey: convert("L") would clip instead of scaling.
        grey = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or grey.max(initial=0) > 255 else 255.0
        image = Image.fromarray(np.clip(grey * (255.0 / top), 0, 255).round().astype(np.uint8), "L")
    elif image.mode == "F":
        image = Image.fromarray(np.clip(np.asarray(image), 0, 255).astype(np.uint8), "L")
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        image.mode == "P" and "transparency" in image.info
    )
    if has_alpha:
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, _WHITE), rgba).convert("RGB")
    return image.convert("RGB")


def decode_image(source: ImageSource, name: str | None = None, max_pixels: int | None = MAX_PIXELS) -> np.ndarray:
    """Decodes bytes, a path or a binary file to an RGB uint8 array of shape (H, W, 3).

    GIFs and other multi-frame files give their first frame. Raises `ImageDecodeError` (a `ValueError`)
    naming the file for zero-byte, truncated, corrupt, unknown-format or over-``max_pixels`` input and for paths
    that are not regular files.
    """
    data, name = _read_source(source, name)
    image = _open_strict(data, name, max_pixels)
    try:
        return np.asarray(_to_rgb(image), dtype=np.uint8)
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
        rgb = np.asarray(_to_rgb(image), dtype=np.uint8)
    except _DECODE_ERRORS as e:
        raise ImageDecodeError(name, str(e) or type(e).__name__) from e
    return encode_jpeg(rgb, quality)
