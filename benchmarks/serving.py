"""Throughput of the exported bytes signature against ``model.predict`` on already decoded images, and load time.

One MobileNetV2 ``MultiTaskModel`` (weights=None; the Emotion6 tasks on one branch) is exported with
``export_saved_model``; then, for the same images (``--images`` Emotion6 JPEGs, or generated ~256 px JPEGs when
the data are absent):
- ``bytes``: images/s of the loaded SavedModel's ``serving_default`` on encoded JPEGs (decode + resize + network,
  all in the graph), in batches of ``--batch``;
- ``predict``: images/s of ``model.predict`` on the same images decoded and resized beforehand (the decode is not
  timed), same batch size;
- ``tensor``: images/s of the ``predict_tensor`` signature on those decoded arrays (the network alone in the
  exported graph; tells decode cost from Keras' predict overhead).
The three are measured in turn, repeat after repeat, so machine load hits all alike. Rates are reported for the
fastest repeat (the one other processes disturbed least, as ``timeit`` advises) and for the median one;
``bytes_over_predict`` (target ≥ 0.9) is the ratio of the fastest rates, ``…_median`` that of the median ones;
every repeat's seconds are kept in the JSON. ``load_s`` is ``tf.saved_model.load`` in a fresh process (TF already
imported), the cold start a server replica pays. Prints a table and writes JSON.

    python benchmarks/serving.py [--size 112] [--images 64] [--batch 32] [--repeats 7] [--out FILE]
"""
import argparse
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import time

from harness import save_json

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from affect_zoo import export, imageio  # noqa: E402
from affect_zoo.data import resize_for_model  # noqa: E402
from affect_zoo.models import multitask  # noqa: E402
from affect_zoo.tasks import Task  # noqa: E402
from affect_zoo.training import MultiTaskModel  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
EMOTION6 = REPO.parent / "shared" / "data" / "emotion6" / "images"
TASKS = [Task("emotion", "distribution", 7, circle="emotion6"),
         Task("va", "regression", 2, labels=("valence", "arousal"), target_range=(1, 9))]
LOAD_SCRIPT = """
import sys, time
import tensorflow as tf
start = time.perf_counter()
tf.saved_model.load(sys.argv[1])
print(time.perf_counter() - start)
"""


def jpegs(count):
    """(source, encoded JPEGs): the first ``count`` Emotion6 images, else generated 256-px-class photos."""
    files = sorted(EMOTION6.glob("*/*.jpg"), key=lambda p: (p.parent.name, int(p.stem)))[:count]
    if len(files) == count:
        return f"Emotion6 ({EMOTION6})", [p.read_bytes() for p in files]
    rng = np.random.default_rng(0)
    shapes = [(256, 256), (192, 256), (256, 192), (240, 320)]
    images = []
    for i in range(count):
        h, w = shapes[i % len(shapes)]
        smooth = np.cumsum(rng.normal(0, 6, (h, w, 3)), axis=1) + rng.uniform(60, 190, (1, 1, 3))
        images.append(imageio.encode_jpeg(np.clip(smooth, 0, 255).astype(np.uint8)))
    return "generated JPEGs (Emotion6 not found)", images


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--alpha", type=float, default=1.0, help="MobileNetV2 width")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "serving.json"))
    args = parser.parse_args(argv)

    source, encoded = jpegs(args.images)
    size = (args.size, args.size)
    keras.utils.set_random_seed(0)
    network = multitask.build("single", "mobilenetv2", TASKS, (*size, 3), alpha=args.alpha)
    model = MultiTaskModel(network, tasks=TASKS, name="serving_benchmark")
    with tempfile.TemporaryDirectory() as base:
        export_s = timed(lambda: export.export_saved_model(model, base))
        version_dir = pathlib.Path(base) / model.name / "1"
        load_s = float(subprocess.run([sys.executable, "-c", LOAD_SCRIPT, str(version_dir)], check=True,
                                      capture_output=True, text=True).stdout.split()[-1])
        loaded = tf.saved_model.load(str(version_dir))
        by_bytes, by_tensor = loaded.signatures["serving_default"], loaded.signatures["predict_tensor"]
        decoded = np.stack([resize_for_model(tf.io.decode_image(data, channels=3, expand_animations=False), size)
                            .numpy() for data in encoded])
        byte_batches = [tf.constant(encoded[i:i + args.batch]) for i in range(0, len(encoded), args.batch)]
        array_batches = [tf.constant(decoded[i:i + args.batch]) for i in range(0, len(decoded), args.batch)]
        runs = {
            "bytes": lambda: [by_bytes(images=b)["emotion_probs"].numpy() for b in byte_batches],
            "predict": lambda: model.predict(decoded, batch_size=args.batch, verbose=0),
            "tensor": lambda: [by_tensor(images=b)["emotion_probs"].numpy() for b in array_batches],
        }
        for run in runs.values():  # first calls trace and allocate
            run()
        seconds = {name: [] for name in runs}
        for _ in range(args.repeats):
            for name, run in runs.items():
                seconds[name].append(timed(run))
    best = {name: len(encoded) / min(values) for name, values in seconds.items()}
    median = {name: len(encoded) / statistics.median(values) for name, values in seconds.items()}
    result = {
        "benchmark": "serving", "model": f"single mobilenetv2 alpha={args.alpha} (weights=None)",
        "input_size": args.size, "images": len(encoded), "source": source, "batch": args.batch,
        "repeats": args.repeats, "images_per_s": {k: round(v, 1) for k, v in best.items()},
        "images_per_s_median": {k: round(v, 1) for k, v in median.items()},
        "bytes_over_predict": round(best["bytes"] / best["predict"], 3),
        "bytes_over_predict_median": round(median["bytes"] / median["predict"], 3),
        "target_bytes_over_predict": 0.9, "seconds": {k: [round(x, 4) for x in v] for k, v in seconds.items()},
        "export_s": round(export_s, 2), "load_s": round(load_s, 2),
        "tensorflow": tf.__version__, "keras": keras.__version__, "cpus": os.cpu_count(),
        "machine": platform.platform(),
    }
    print(f"{'path':<10}{'images/s (best)':>17}{'(median)':>10}")
    for name in runs:
        print(f"{name:<10}{best[name]:>17.1f}{median[name]:>10.1f}")
    print(f"bytes / predict = {result['bytes_over_predict']:.3f} best, {result['bytes_over_predict_median']:.3f} "
          f"median (target >= 0.9); export {export_s:.1f} s; load in a fresh process {load_s:.2f} s; "
          f"{len(encoded)} {source} at {args.size} px, batch {args.batch}")
    save_json(result, args.out)
    return result


if __name__ == "__main__":
    main()
