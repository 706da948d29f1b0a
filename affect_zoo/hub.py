"""The hub: weights files found, downloaded, cached and verified (no TensorFlow).

Weights are always verified: a local file against the sha256 in its card, a hosted one (``url`` in the card) is
downloaded into ``$AFFECT_ZOO_HOME`` (else ``$KERAS_HOME/affect_zoo``, else ``~/.keras/affect_zoo``) and kept only
if its sha256 matches. A user's own weights file is checked against a ``.sha256`` beside it when there is one and
loaded with an ``UnverifiedWeightsWarning`` when there is none.
"""
import contextlib
import glob
import http.client
import os
import pathlib
import tempfile
import time
import urllib.request
import warnings

from affect_zoo import registry
from affect_zoo.cache import sha256


class WeightsError(RuntimeError):
    """Weights that cannot be used: missing, unverifiable, or for another architecture."""


class UnverifiedWeightsWarning(UserWarning):
    """A user's weights file was loaded without a ``.sha256`` beside it to check it against."""


def verify_user_weights(path):
    """A user's ``.weights.h5`` file, checked against ``<file>.sha256`` beside it when there is one (its first
    word, as ``sha256sum`` writes it); without one it is loaded with an UnverifiedWeightsWarning."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    sidecar = path.with_name(path.name + ".sha256")
    if not sidecar.is_file():
        warnings.warn(f"{path}: no {sidecar.name} beside it, so these weights are loaded unverified",
                      UnverifiedWeightsWarning, stacklevel=3)
        return path
    words = sidecar.read_text(encoding="utf-8", errors="replace").split()
    expected = _normalised_sha256(words[0] if words else "", sidecar)
    if sha256(path) != expected:
        raise WeightsError(f"{path}: sha256 does not match {sidecar} ({expected}); the file is corrupt or was "
                           f"replaced")
    return path


def _normalised_sha256(value, where):
    """A sha256 as 64 lower-case hex digits (cards and ``sha256sum`` may write upper case), or a WeightsError."""
    text = str(value).strip().lower()
    if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
        raise WeightsError(f"{where}: {value!r} is not a sha256 (64 hex digits)")
    return text


def resolve_weights(name, weights):
    """Path of verified weights for a card's ``weights`` entry: the local file in saved_models/ if present,
    else the cached download, else a fresh download from ``url``."""
    if not weights.get("sha256"):
        raise WeightsError(f"{name}: the card's weights have no sha256; refusing to load unverified weights")
    expected = _normalised_sha256(weights["sha256"], f"{name}: the card's weights.sha256")
    local = registry.folders().saved_models / name / weights["file"]
    if local.is_file():
        if sha256(local) != expected:
            raise WeightsError(f"{local}: sha256 does not match the card ({expected}); the file is corrupt or "
                               f"was replaced")
        return local
    cached = registry.folders().cache_dir / name / weights["file"]
    if cached.is_file() and sha256(cached) == expected:
        return cached
    if not weights.get("url"):
        raise WeightsError(f"{name}: weights file {local} is missing and the card names no url to fetch it from")
    return download(weights["url"], cached, expected)


def download(url, target, expected_sha256, timeout=60, chunk_bytes=1 << 16):
    """Fetch ``url`` (http(s) or file) to ``target``, keeping it only if its sha256 is ``expected_sha256``.

    timeout: seconds for the whole download (a server that drips bytes is cut off once it is spent), checked
    after every read; one read waits at most that long too, so a download ends within about twice ``timeout``.
    The data goes to ``<target>.<pid>.<random>.part``, removed on any failure; ``.part`` files left by a killed
    download (their pid no longer runs) are removed by the next download of the same file.
    """
    target = pathlib.Path(target)
    expected = _normalised_sha256(expected_sha256, f"expected sha256 of {url}")
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_parts(target)
    fd, partial = tempfile.mkstemp(dir=target.parent, prefix=f"{target.name}.{os.getpid()}.", suffix=".part")
    deadline = time.monotonic() + timeout
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            read = getattr(response, "read1", response.read)
            while True:
                if time.monotonic() > deadline:
                    raise WeightsError(f"download of {url} did not finish within {timeout} s: not kept")
                block = read(chunk_bytes)
                if not block:
                    break
                out.write(block)
        got = sha256(partial)
        if got != expected:
            raise WeightsError(f"download of {url} has sha256 {got}, expected {expected}: not kept")
        os.replace(partial, target)
        return target
    except (OSError, http.client.HTTPException, ValueError) as error:
        raise WeightsError(f"could not download {url}: {error}") from None
    finally:
        if os.path.exists(partial):
            os.remove(partial)


def _remove_stale_parts(target):
    """Delete ``<target>.<pid>.*.part`` files whose process is gone (a download killed before its cleanup)."""
    for part in target.parent.glob(f"{glob.escape(target.name)}.*.part"):
        pid = part.name[len(target.name) + 1:].split(".", 1)[0]
        if pid.isdigit() and not _process_alive(int(pid)):
            with contextlib.suppress(OSError):
                part.unlink()


def _process_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
