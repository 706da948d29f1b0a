"""Strict image decoding shared by the TFDS builders and `affect_zoo.predict`.

Real image collections contain zero-byte downloads, truncated JPEGs and odd colour modes (CMYK, palette,
16-bit grey, alpha). Everything here decodes to RGB uint8 with Pillow, and every failure becomes an
`ImageDecodeError` that names the file, so a caller can skip and report it instead of training on grey padding.
"""
from __future__ import annotations

import io
import os
import struct
import threading
from typing import BinaryIO, Union

import numpy as np
from PIL import Image, ImageFile, ImageOps

ImageSource = Union[bytes, bytearray, memoryview, str, os.PathLike, BinaryIO]

JPEG_QUALITY = 95

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


def _read_source(source: ImageSource, name: str | None) -> tuple[bytes, str]:
    """Returns the encoded bytes and a display name for errors."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), name or "<bytes>"
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        try:
            with open(path, "rb") as f:
                return f.read(), name or path
        except OSError as e:
            raise ImageDecodeError(name or path, f"cannot read file ({e.strerror or e})") from e
    if hasattr(source, "read"):
        return source.read(), name or getattr(source, "name", "<stream>")
    raise TypeError(f"expected bytes, a path or a binary file object, got {type(source).__name__}")


def _open_strict(data: bytes, name: str) -> Image.Image:
    """Opens and fully loads the first frame, refusing truncated data."""
    if not data:
        raise ImageDecodeError(name, "empty file (0 bytes)")
    with _TRUNCATION_LOCK:
        previous = ImageFile.LOAD_TRUNCATED_IMAGES
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        try:
            image = Image.open(io.BytesIO(data))
            image.seek(0)
            image.load()
        except _DECODE_ERRORS as e:
            raise ImageDecodeError(name, str(e) or type(e).__name__) from e
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = previous
    return image


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB view of any Pillow mode; alpha is composited on white because transparent pixels often store black."""
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


def decode_image(source: ImageSource, name: str | None = None) -> np.ndarray:
    """Decodes bytes, a path or a binary file to an RGB uint8 array of shape (H, W, 3).

    GIFs and other multi-frame files give their first frame. Raises `ImageDecodeError` (a `ValueError`)
    naming the file for zero-byte, truncated, corrupt or unknown-format input.
    """
    data, name = _read_source(source, name)
    image = _open_strict(data, name)
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
    upright = image.getexif().get(0x0112, 1) == 1  # EXIF Orientation, which TF's JPEG decoder ignores
    if image.format == "JPEG" and image.mode == "RGB" and upright:
        return data
    try:
        rgb = np.asarray(_to_rgb(image), dtype=np.uint8)
    except _DECODE_ERRORS as e:
        raise ImageDecodeError(name, str(e) or type(e).__name__) from e
    return encode_jpeg(rgb, quality)
