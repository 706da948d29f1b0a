"""Torture suite (issue 12): a corpus of hostile and odd inputs, generated at test time, sent through
``affect_zoo.predict``, ``affect-zoo predict`` (one subprocess with every path) and the bytes signature of an export
of a tiny model. For each case: a clean error naming the item, or a correct result; the good images of the same
batch scored as they are alone; no hang (every call bounded by a timeout); no traceback.

Outcomes are tallied per entry point in ``LEDGER``; ``AFFECT_ZOO_TORTURE_TABLE=out.md pytest tests/test_torture.py``
writes the table the README's "Reliability" section quotes.
"""
import collections
import dataclasses
import io
import json
import os
import re
import struct
import subprocess
import sys
import threading
import time
import types
import zlib

import keras
import numpy as np
import pytest
import tensorflow as tf
import yaml
from PIL import Image, ImageOps
from test_zoo import TINY

from affect_zoo import data, export, imageio, inference, registry, zoo
from affect_zoo.tasks import Task
from affect_zoo.training import MultiTaskModel

CALL_TIMEOUT = 60  # seconds for one in-process predict / signature call (a fifo opened for reading blocks forever)
CLI_TIMEOUT = 300  # one subprocess: ~15 s of TensorFlow import, the model, every path
OUTCOMES = ("clean error", "correct result", "crash", "hang", "silent-wrong", "lost")
LEDGER = collections.defaultdict(collections.Counter)  # entry point → outcome → cases
TIMINGS = {}  # what → seconds, printed under the table
SERVED_BOMB = "more than the limit of 64000000 set at export"
BOMB_SIDE = 15000  # a 15000×15000 single-colour PNG: ~220 KB of bytes, 225 M pixels


@dataclasses.dataclass
class Case:
    name: str
    item: object  # what predict gets: a path (str), or an object for the non-file kinds
    error: str = None  # regex the per-item error must match; None: the case must be scored
    served_error: str = None  # the same for the bytes signature when it differs from predict
    data: bytes = None  # the encoded bytes, for the signature (byte-like kinds only)
    turned: bool = False  # EXIF says rotate: the decoded pixels must be Pillow's upright ones
    served_names_item: bool = True  # the signature's refusal names images[i] (TF's decoder errors do not)


def _encoded(image, fmt, **options):
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _photo(height, width, seed):
    """A smooth image with an off-centre bright blob, so orientation and content change the pixels."""
    y, x = np.mgrid[0:height, 0:width]
    blob = 255 * np.exp(-((y - 0.3 * height) ** 2 + (x - 0.7 * width) ** 2) / (0.05 * height * width))
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, 3)
    return np.clip(np.stack([blob + base[0] * x / width, base[1] * y / height + blob / 2, 0 * x + base[2]], -1),
                   0, 255).astype(np.uint8)


def png_bomb(side=BOMB_SIDE):
    """A valid single-colour grey PNG of side × side pixels, compressed by zlib row by row (small in bytes)."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    packer, row = zlib.compressobj(9), b"\0" * (side + 1)
    idat = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def _jpeg_header_bomb():
    """A small JPEG whose frame header (SOF0) declares 60000×60000."""
    raw = bytearray(_encoded(Image.fromarray(_photo(16, 16, 9)), "JPEG"))
    sof = raw.index(b"\xff\xc0")
    raw[sof + 5:sof + 9] = struct.pack(">HH", 60000, 60000)
    return bytes(raw)


def _gif_header_bomb():
    """A one-pixel GIF whose logical screen (the canvas decoders allocate) is 65535×65535."""
    raw = bytearray(_encoded(Image.new("P", (1, 1)), "GIF"))
    raw[6:10] = struct.pack("<HH", 65535, 65535)
    return bytes(raw)


def rotated_jpeg(array, orientation=6):
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _encoded(Image.fromarray(array), "JPEG", quality=95, exif=exif.tobytes())


def corpus(folder):
    """Every kind of case (≥ 18), files written under ``folder``. Returns (cases, good image paths)."""
    folder.mkdir(exist_ok=True)
    photo = _photo(40, 56, 1)
    frames = [Image.fromarray(_photo(24, 30, s)) for s in (3, 4, 5)]
    grey16 = (np.linspace(0, 65535, 30 * 20).reshape(20, 30)).astype(np.uint16)
    rgba = np.dstack([photo, np.tile(np.linspace(0, 255, 56, dtype=np.uint8), (40, 1))])
    jpeg = _encoded(Image.fromarray(photo), "JPEG", quality=90)
    files = {
        "truncated.jpg": (jpeg[: len(jpeg) // 2], "truncated", "Invalid JPEG data"),
        "empty.jpg": (b"", "empty file", "is not an image"),
        "text.jpg": (b"this is not a picture\n" * 20, "cannot identify", "is not an image"),
        "photo.png": (_encoded(Image.fromarray(photo), "PNG"), None),
        "animated.gif": (_encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50), None),
        "animated.webp": (_encoded(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=50),
                          None, "animated WebP"),
        "photo.bmp": (_encoded(Image.fromarray(photo), "BMP"), None),
        "photo.webp": (_encoded(Image.fromarray(photo), "WEBP", quality=90), None),
        "lossless.webp": (_encoded(Image.fromarray(rgba), "WEBP", lossless=True), None),
        "photo.tiff": (_encoded(Image.fromarray(photo), "TIFF"), None, "is not an image"),
        "grey16.png": (_encoded(Image.fromarray(grey16), "PNG"), None),
        "grey.jpg": (_encoded(Image.fromarray(photo[..., 0]), "JPEG"), None),
        "cmyk.jpg": (_encoded(Image.fromarray(photo).convert("CMYK"), "JPEG"), None),
        "rgba.png": (_encoded(Image.fromarray(rgba), "PNG"), None),
        "palette.gif": (_encoded(Image.fromarray(photo).convert("P"), "GIF", transparency=3), None),
        "one_pixel.png": (_encoded(Image.new("RGB", (1, 1), (10, 200, 30)), "PNG"), None),
        "bomb.png": (png_bomb(), "more than the limit of", SERVED_BOMB),
        "header_bomb.jpg": (_jpeg_header_bomb(), "more than the limit of", SERVED_BOMB),
        "header_bomb.gif": (_gif_header_bomb(), "more than the limit of", SERVED_BOMB),
        "exif_rotated.jpg": (rotated_jpeg(photo), None),
    }
    cases = []
    for filename, (encoded, error, *served) in files.items():
        path = folder / filename
        path.write_bytes(encoded)
        cases.append(Case(filename, str(path), error, served[0] if served else error, encoded,
                          turned=filename.startswith("exif"), served_names_item=filename != "truncated.jpg"))
    (folder / "a_directory.jpg").mkdir()
    (folder / "loop.jpg").symlink_to(folder / "loop.jpg")
    os.mkfifo(folder / "pipe.jpg")
    cases += [Case("directory", str(folder / "a_directory.jpg"), "not a regular file \\(a directory\\)"),
              Case("missing", str(folder / "missing.jpg"), "No such file"),
              Case("symlink loop", str(folder / "loop.jpg"), "Too many levels of symbolic links"),
              Case("fifo", str(folder / "pipe.jpg"), "not a regular file \\(a named pipe\\)"),
              Case("path under a file", str(folder / "photo.png" / "x.jpg"), "Not a directory")]
    goods = []
    for i, seed in enumerate((11, 12)):
        path = folder / f"good_{i}.jpg"
        path.write_bytes(_encoded(Image.fromarray(_photo(48, 64, seed)), "JPEG", quality=92))
        goods.append(str(path))
    return cases, goods


def object_cases():
    """Kinds only the Python API takes: arrays and other objects."""
    nan = np.full((20, 20, 3), 100.0)
    nan[3, 4, 1] = np.nan
    return [Case("NaN array", nan, "NaN"), Case("inf array", np.full((8, 8, 3), np.inf), "infinite"),
            Case("out-of-range array", np.full((8, 8, 3), 300.0), r"\[0, 255\]"),
            Case("negative array", np.full((8, 8), -1, np.int16), r"\[0, 255\]"),
            Case("5-channel array", np.zeros((8, 8, 5), np.uint8), "must be"),
            Case("empty array", np.zeros((0, 8, 3), np.uint8), "must be"),
            Case("boolean array", np.ones((8, 8, 3), bool), "dtype bool"),
            Case("huge array", np.broadcast_to(np.uint8(0), (9000, 9000, 3)), "more than the limit of"),
            Case("int", 42, "expected a path"), Case("None", None, "expected a path"),
            Case("dict", {"image": "a.jpg"}, "expected a path"),
            Case("float32 array in range", np.full((10, 12, 3), 127.5, np.float32), None)]


def bounded(fn, *args, seconds=CALL_TIMEOUT):
    """``fn(*args)`` in a daemon thread (one left blocked, e.g. on a fifo, does not hold up the interpreter's exit):
    ``(result, None)``, ``(None, exception)`` or ``(None, "hang")``."""
    outcome = {}

    def call():
        try:
            outcome["result"] = fn(*args)
        except Exception as error:  # noqa: BLE001 - any escape is a crash, counted by the caller
            outcome["error"] = error

    worker = threading.Thread(target=call, daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        return None, "hang"
    return outcome.get("result"), outcome.get("error")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny recipe entry (MobileNetV2 α 0.35 at 32 px, untrained, seeded), its weights file, its export."""
    root = tmp_path_factory.mktemp("torture")
    (root / "recipes").mkdir()
    (root / "recipes" / "tiny_entry.yaml").write_text(yaml.safe_dump(TINY))
    with registry.using(recipes=root / "recipes"):
        keras.utils.set_random_seed(0)
        model = zoo.load("tiny_entry", weights=None)
    weights = root / "tiny.weights.h5"
    model.network.save_weights(str(weights))
    version = export.export_saved_model(model, root / "exports", warmup=False)
    signature = tf.saved_model.load(str(version)).signatures["serving_default"]
    cases, goods = corpus(root / "corpus")
    return types.SimpleNamespace(root=root, model=model, weights=weights, version=version, signature=signature,
                                 cases=cases, goods=goods)


@pytest.fixture(scope="module", autouse=True)
def table():
    yield
    target = os.environ.get("AFFECT_ZOO_TORTURE_TABLE")
    if target and LEDGER:
        with open(target, "w") as out:
            out.write(markdown_table(LEDGER))


def markdown_table(ledger):
    headers = ("clean errors", "correct results", "crashes", "hangs", "silent-wrong", "lost")
    lines = ["| category | cases | " + " | ".join(headers) + " |", "|---" * (len(OUTCOMES) + 2) + "|"]
    for category, counts in ledger.items():
        lines.append(f"| {category} | {sum(counts.values())} | " + " | ".join(str(counts[o]) for o in OUTCOMES)
                     + " |")
    lines += [""] + [f"- {what}: {seconds:.2f} s" for what, seconds in TIMINGS.items()]
    return "\n".join(lines) + "\n"


def _scores(out, index):
    return np.concatenate([np.atleast_1d(np.asarray(out[key][index], np.float64)) for key in _numeric(out)])


def _numeric(out):
    return [k for k, v in out.items() if k != "errors" and np.asarray(v).dtype != object]


def _pixels_ok(case):
    """Whether predict's decoding of a file equals Pillow's (an independent decoder) within JPEG rounding."""
    if not isinstance(case.item, str):
        return True
    reference = imageio.decode_image(case.item)
    if case.turned:
        reference = np.asarray(ImageOps.exif_transpose(Image.open(case.item)).convert("RGB"))
    errors = [None]
    (_, got), = inference.model_inputs([case.item], reference.shape[:2], errors)  # at the native size: no resize
    return errors == [None] and np.abs(got.numpy()[0] - reference).mean() < 3


@pytest.mark.slow
def test_predict_scores_every_good_image_and_names_every_bad_one(tiny):
    """One batch: every case between good images. Each bad item gets an error naming it; each good one a result
    equal to predicting it alone; nothing escapes, nothing hangs."""
    cases = tiny.cases + object_cases()
    batch = [tiny.goods[0]]
    for case in cases:
        batch += [case.item, tiny.goods[1]]
    out, failure = bounded(inference.predict, tiny.model, batch)
    ledger = LEDGER["`affect_zoo.predict` (one batch)"]
    if failure is not None:
        ledger["hang" if failure == "hang" else "crash"] += len(cases)
        pytest.fail(f"predict did not return: {failure!r}")
    alone = {path: inference.predict(tiny.model, [path]) for path in tiny.goods}
    lost = [i for i, item in enumerate(batch) if isinstance(item, str) and item in alone
            and not np.allclose(_scores(out, i), _scores(alone[item], 0), atol=1e-6)]
    ledger["lost"] += len(lost)
    wrong = []
    for k, case in enumerate(cases):
        i = 1 + 2 * k
        error = out["errors"][i]
        if case.error is None:
            scores = _scores(out, i)
            fine = (error is None and np.isfinite(scores).all() and _pixels_ok(case)
                    and np.allclose(scores, _scores(inference.predict(tiny.model, [case.item]), 0), atol=1e-6))
        else:
            named = case.name if not isinstance(case.item, str) else case.item
            fine = (error is not None and re.search(case.error, error) is not None
                    and (str(named) in error or f"image {i}" in error) and np.isnan(_scores(out, i)).all())
        ledger["correct result" if fine and case.error is None else "clean error" if fine else "silent-wrong"] += 1
        if not fine:
            wrong.append((case.name, error))
    assert not lost, f"good images scored differently in the batch: {lost}"
    assert not wrong, wrong


@pytest.mark.slow
def test_cli_predict_prints_every_row_and_no_traceback(tiny):
    """One subprocess with every path of the corpus between good images: a row per argument in order, an error row
    naming each bad one, results equal to the in-process predict, exit 1, no traceback, bounded in time."""
    paths = [tiny.goods[0]]
    for case in tiny.cases:
        paths += [case.item, tiny.goods[1]]
    ledger = LEDGER["`affect-zoo predict` (one call)"]
    try:
        result = subprocess.run(_cli(tiny, "predict", "tiny_entry", *paths), capture_output=True, text=True,
                                timeout=CLI_TIMEOUT, env=CLI_ENV)
    except subprocess.TimeoutExpired:
        ledger["hang"] += len(tiny.cases)
        pytest.fail(f"the CLI did not finish within {CLI_TIMEOUT} s")
    if result.returncode not in (0, 1) or "Traceback" in result.stderr:
        ledger["crash"] += len(tiny.cases)
        pytest.fail(f"exit {result.returncode}: {result.stderr[-3000:]}")
    rows = json.loads(result.stdout)
    assert [row["image"] for row in rows] == paths
    here = inference.predict(tiny.model, paths)
    keys = ["valence", "arousal", "emotion_intensity"]
    lost = [i for i, path in enumerate(paths) if path in tiny.goods
            and not np.allclose([rows[i][k] for k in keys], [here[k][i] for k in keys], atol=1e-5)]
    ledger["lost"] += len(lost)
    wrong = []
    for k, case in enumerate(tiny.cases):
        row = rows[1 + 2 * k]
        if case.error is None:
            fine = "error" not in row and np.allclose([row[key] for key in keys],
                                                      [here[key][1 + 2 * k] for key in keys], atol=1e-5)
        else:
            fine = "error" in row and re.search(case.error, row["error"]) and case.item in row["error"]
        ledger["correct result" if fine and case.error is None else "clean error" if fine else "silent-wrong"] += 1
        if not fine:
            wrong.append((case.name, row))
    assert result.returncode == 1  # some images could not be read: documented exit status
    assert not lost and not wrong, (lost, wrong)


CLI_ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}


def _cli(tiny, command, *args):
    """argv running ``affect-zoo command ... --weights <tiny> --json`` with the tiny entry's recipe directory."""
    script = ("import sys; from affect_zoo import registry; "
              f"registry.set_folders(recipes={str(tiny.root / 'recipes')!r}); "
              "from affect_zoo.cli import main; main(sys.argv[1:])")
    return [sys.executable, "-c", script, command, *args, "--weights", str(tiny.weights), "--json"]


@pytest.mark.slow
def test_the_bytes_signature_refuses_cleanly_or_agrees_with_predict(tiny):
    """Each byte-like case between two good images, one request each: a refusal is INVALID_ARGUMENT naming
    ``images[1]`` (a bomb refused within a second, before decoding), a result equals ``predict``'s; the good images'
    outputs equal those they get alone."""
    ledger = LEDGER["bytes signature of an export (one request per case)"]
    goods = [open(path, "rb").read() for path in tiny.goods]
    alone = {k: v.numpy() for k, v in tiny.signature(images=tf.constant(goods)).items()}
    wrong, lost = [], 0
    for case in tiny.cases:
        if case.data is None:
            continue
        started = time.perf_counter()
        answer, failure = bounded(lambda data: tiny.signature(images=tf.constant([goods[0], data, goods[1]])),
                                  case.data)
        took = time.perf_counter() - started
        if failure == "hang":
            ledger["hang"] += 1
            wrong.append((case.name, "hang"))
            continue
        if case.served_error is not None:
            fine = (isinstance(failure, tf.errors.InvalidArgumentError) and re.search(case.served_error, str(failure))
                    and ("images[1]" in str(failure) or not case.served_names_item))
            if "bomb" in case.name:
                TIMINGS[f"{case.name} refused by the bytes signature"] = took
                fine = fine and took < 2.0
            outcome = "clean error" if fine else "crash" if failure is not None else "silent-wrong"
        elif failure is not None:
            fine, outcome = False, "crash"
        else:
            outputs = {k: v.numpy() for k, v in answer.items()}
            ours = inference.predict(tiny.model, [case.item])
            served = export.decode_outputs({k: v[1:2] for k, v in outputs.items()}, tiny.model.tasks)
            fine = all(np.allclose(served[t.name], ours[t.name], atol=1e-5) for t in tiny.model.tasks
                       if t.name in ours)
            outcome = "correct result" if fine else "silent-wrong"
            if not all(np.allclose(outputs[k][[0, 2]], alone[k], atol=1e-6) for k in alone):
                lost += 1
        ledger[outcome] += 1
        if not fine:
            wrong.append((case.name, took, failure))
    ledger["lost"] += lost
    assert not wrong and not lost, (wrong, lost)


def test_predict_refuses_a_bomb_from_its_header_quickly(tiny):
    bomb = png_bomb()
    started = time.perf_counter()
    out = inference.predict(tiny.model, [bomb, tiny.goods[0]])
    TIMINGS["bomb.png (220 KB, 15000x15000) and a good image through predict"] = time.perf_counter() - started
    assert TIMINGS["bomb.png (220 KB, 15000x15000) and a good image through predict"] < 5.0
    assert re.search(r"15000x15000 = 225000000 pixels, more than the limit of 64000000|more than the limit of "
                     r"64000000 pixels", out["errors"][0])
    assert out["errors"][1] is None


def test_a_fifo_is_refused_without_being_opened(tmp_path, monkeypatch):
    """``imageio.read_file`` stats the path first: a named pipe is never opened (opening one for reading blocks
    until a writer comes)."""
    os.mkfifo(tmp_path / "pipe.jpg")
    opened = []
    real_open = os.open
    monkeypatch.setattr(imageio.os, "open", lambda path, *a, **k: opened.append(path) or real_open(path, *a, **k))
    with pytest.raises(imageio.ImageDecodeError, match=r"pipe\.jpg.*named pipe"):
        imageio.read_file(tmp_path / "pipe.jpg")
    assert opened == []


def test_a_read_error_is_that_items_error(tiny, monkeypatch):
    """An unreadable file (EIO while reading; as root, chmod 000 cannot make one) only sets its own error."""
    real_fdopen = os.fdopen

    class Failing(io.RawIOBase):
        def __init__(self, fd):
            self.fd = fd

        def fileno(self):
            return self.fd

        def read(self, *args):
            raise OSError(5, "Input/output error")

    def fdopen(fd, *args, **kwargs):
        return Failing(fd) if os.readlink(f"/proc/self/fd/{fd}").endswith("photo.png") else real_fdopen(
            fd, *args, **kwargs)

    monkeypatch.setattr(imageio.os, "fdopen", fdopen)
    png = next(c.item for c in tiny.cases if c.name == "photo.png")
    out = inference.predict(tiny.model, [png, tiny.goods[0]])
    assert re.search(r"photo\.png: cannot read file \(Input/output error\)", out["errors"][0])
    assert out["errors"][1] is None


def _orientation_model():
    """A network whose outputs depend on where things are (Flatten → Dense), so a turned image scores differently."""
    images = keras.Input((24, 24, 3), name="images")
    flat = keras.layers.Flatten()(keras.layers.Rescaling(1 / 255.0)(images))
    tasks = [Task("va", "regression", 2, labels=("valence", "arousal"))]
    network = keras.Model(images, {"va": keras.layers.Dense(2, kernel_initializer="he_normal")(flat)},
                          name="where_tiny")
    return MultiTaskModel(network, tasks=tasks, name="where_tiny")


@pytest.mark.slow
def test_exif_rotated_photos_score_the_same_in_predict_and_the_signature(tmp_path):
    """Every EXIF orientation (1–8): ``predict`` and the bytes signature agree to 1e-5, and differ from scoring the
    stored (unturned) pixels, so the test can fail; the graph's pixels equal Pillow's exif_transpose of TF's own
    decoding of the unturned file (an independent reference for the turn)."""
    keras.utils.set_random_seed(1)
    model = _orientation_model()
    signature = tf.saved_model.load(str(export.export_saved_model(model, tmp_path, warmup=False))).signatures[
        "serving_default"]
    photo = _photo(30, 44, 2)
    plain = _encoded(Image.fromarray(photo), "JPEG", quality=95)
    stored = data.decode_image_bytes(tf.constant(plain)).numpy()
    unturned = _va(inference.predict(model, [plain]))
    for orientation in range(1, 9):
        for turned in (rotated_jpeg(photo, orientation), _big_endian_exif(plain, orientation)):
            expected = np.asarray(ImageOps.exif_transpose(_with_exif(Image.fromarray(stored), orientation)))
            np.testing.assert_array_equal(data.decode_image_bytes(tf.constant(turned)).numpy(), expected)
            assert imageio.decode_image(turned).shape == expected.shape  # Pillow reads the same tag
            ours = _va(inference.predict(model, [turned]))
            served = export.decode_outputs({k: v.numpy() for k, v in signature(images=tf.constant([turned])).items()},
                                           model.tasks)["va"][0]
            np.testing.assert_allclose(ours, served, atol=1e-5, err_msg=f"orientation {orientation}")
            if orientation != 1:
                assert np.abs(unturned - served).max() > 1e-2, orientation


def _va(out):
    return np.array([out["valence"][0], out["arousal"][0]])


def _big_endian_exif(jpeg, orientation):
    """``jpeg`` with an APP1 Exif segment written by hand in Motorola (``MM``) byte order, right after SOI."""
    tiff = (b"MM\0*" + struct.pack(">IH", 8, 1) + struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0)
            + struct.pack(">I", 0))
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", 8 + len(tiff)) + b"Exif\0\0" + tiff + jpeg[2:]


def _with_exif(image, orientation):
    """``image`` as Pillow would open it from a file whose EXIF Orientation is ``orientation``."""
    reopened = Image.open(io.BytesIO(_encoded(image, "PNG")))
    reopened.getexif()[0x0112] = orientation
    return reopened


def test_the_pixel_limit_is_an_export_option_recorded_in_its_info(tmp_path):
    tasks = [Task("va", "regression", 2, labels=("valence", "arousal"))]
    images = keras.Input((8, 8, 3), name="images")
    network = keras.Model(images, {"va": keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(images))})
    version = export.export_saved_model(network, tmp_path, tasks=tasks, warmup=False, max_pixels=1000)
    assert export.read_export_info(version)["max_pixels"] == 1000
    signature = tf.saved_model.load(str(version)).signatures["serving_default"]
    small, large = (_encoded(Image.new("RGB", size, (9, 9, 9)), "PNG") for size in ((40, 25), (40, 26)))
    assert signature(images=tf.constant([small]))["valence"].shape == (1,)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"images\[1\] is 40x26 = 1040 pixels, more than the "
                                                             r"limit of 1000 set at export"):
        signature(images=tf.constant([small, large]))
    unlimited = export.export_saved_model(network, tmp_path, version=2, tasks=tasks, warmup=False, max_pixels=None)
    assert export.read_export_info(unlimited)["max_pixels"] is None
    with pytest.raises(ValueError, match="max_pixels must be a positive int or None"):
        export.export_saved_model(network, tmp_path, version=3, tasks=tasks, max_pixels=0)


@pytest.mark.slow
def test_headers_give_the_size_the_decoder_finds():
    """``data.image_size_from_header`` (in the graph) against Pillow's size for every format the graph reads."""
    for fmt, options in [("PNG", {}), ("GIF", {}), ("BMP", {}), ("WEBP", {}), ("WEBP", {"lossless": True}),
                         ("JPEG", {}), ("JPEG", {"progressive": True})]:
        for mode in ("RGB", "RGBA", "L"):
            if mode == "RGBA" and fmt in ("JPEG", "GIF"):
                continue
            for width, height in ((17, 12), (1, 1), (300, 7)):
                encoded = _encoded(Image.new(mode, (width, height)), fmt, **options)
                got = tf.function(data.image_size_from_header)(tf.constant(encoded)).numpy()
                assert tuple(got) == (height, width), (fmt, options, mode)
    assert tuple(data.image_size_from_header(tf.constant(png_bomb(20000))).numpy()) == (20000, 20000)
    assert tuple(data.image_size_from_header(tf.constant(b"hello")).numpy()) == (0, 0)


def test_concurrent_exports_of_one_version_keep_exactly_one(tmp_path):
    """Two exports of the same version racing: one succeeds, the other raises FileExistsError saying so, and the
    version left is complete (before, both reported success and one silently replaced the other)."""
    tasks = [Task("va", "regression", 2, labels=("valence", "arousal"))]
    images = keras.Input((8, 8, 3), name="images")
    network = keras.Model(images, {"va": keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(images))},
                          name="raced")
    ready = threading.Barrier(2)
    real_move = export._move_into_place

    def move(*args):
        ready.wait(timeout=60)  # both exports have passed the early existence check and written their copy
        return real_move(*args)

    results = []

    def one():
        try:
            results.append(export.export_saved_model(network, tmp_path, tasks=tasks, warmup=False))
        except FileExistsError as error:
            results.append(error)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(export, "_move_into_place", move)
        threads = [threading.Thread(target=one) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    ledger = LEDGER["two concurrent `export` of one version"]
    errors = [r for r in results if isinstance(r, FileExistsError)]
    kept = [r for r in results if not isinstance(r, Exception)]
    ok = len(kept) == 1 and len(errors) == 1 and "appeared while this export was being written" in str(errors[0])
    ledger["clean error" if ok else "silent-wrong"] += 1
    assert ok, results
    assert sorted(p.name for p in (tmp_path / "raced").iterdir()) == ["1"]  # no staging copy left behind
    assert tf.saved_model.load(str(kept[0])).signatures["serving_default"] is not None


@pytest.mark.slow
def test_two_cli_exports_of_one_version_one_wins_the_other_says_why(tiny, tmp_path):
    """``affect-zoo export`` twice at once (the issue's case; ~40 s): exit 0 for one, 2 with a one-line error for the
    other, no traceback; ``--max-pixels`` is recorded in the kept export."""
    argv = _cli(tiny, "export", "tiny_entry", str(tmp_path), "--max-pixels", "5000")
    runs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=CLI_ENV)
            for _ in range(2)]
    answers = [run.communicate(timeout=CLI_TIMEOUT) for run in runs]
    codes = [run.returncode for run in runs]
    loser = answers[codes.index(2)][1] if sorted(codes) == [0, 2] else ""
    ok = (sorted(codes) == [0, 2] and "Traceback" not in loser and re.search(
        r"affect-zoo: error: .*(appeared while this export was being written|is already exported)", loser))
    LEDGER["two concurrent `export` of one version"]["clean error" if ok else "silent-wrong"] += 1
    assert ok, (codes, answers)
    assert json.loads(answers[codes.index(0)][0])["path"] == str(tmp_path / "tiny_entry" / "1")
    assert export.read_export_info(tmp_path / "tiny_entry" / "1")["max_pixels"] == 5000
    assert sorted(p.name for p in (tmp_path / "tiny_entry").iterdir()) == ["1"]
