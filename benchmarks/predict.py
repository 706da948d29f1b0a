"""``affect_zoo.predict`` and the exported bytes signature against a hand-written ``tf.data`` pipeline, one network.

On ``--count`` real JPEGs (the Emotion6 release under ``--images``, /work/shared/data/emotion6/images by default;
its six folders are searched), one zoo entry (``--entry``, the shipped ``afi_efficientnet_lite0_emotion6`` at
160 px; ``--untrained`` builds it with weights=None, the same network and speed) is timed three ways, from the
file paths to the model's outputs:
- ``handwritten``: ``tf.data`` from the paths, ``tf.io.read_file`` + ``tf.io.decode_jpeg`` + ``tf.image.resize``
  (bilinear, antialiased) in a parallel map, batch 32, prefetch, then ``model.predict`` on the dataset;
- ``predict``: ``affect_zoo.predict(model, paths, batch_size=32)`` (reads, checks, decodes, resizes, scores, names
  errors);
- ``signature``: the entry exported with ``export.export_saved_model`` and loaded; the files read in Python, then its
  ``serving_default`` (bytes) signature called on batches of 32.
The three run in turn, round after round, in a rotated order, so machine load hits all alike; the table gives the
median images/s and the ratios ``predict / handwritten`` (target ≥ 0.95) and ``signature / handwritten``
(target ≥ 0.9) of the median rates; every round's seconds are kept in the JSON.

    python benchmarks/predict.py [--images DIR] [--count 256] [--rounds 5] [--entry NAME] [--untrained] [--out FILE]
"""
import argparse
import os
import pathlib
import platform
import statistics
import sys
import tempfile
import time

from harness import save_json

REPO = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_IMAGES = "/work/shared/data/emotion6/images"
PATHS = ("handwritten", "predict", "signature")
TARGETS = {"predict": 0.95, "signature": 0.9}


def jpeg_paths(folder, count):
    """The first ``count`` JPEGs under ``folder`` (sorted, recursively), or a ValueError saying how many there are."""
    found = sorted(str(p) for p in pathlib.Path(folder).rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))
    if len(found) < count:
        raise ValueError(f"{folder}: {len(found)} JPEGs, the benchmark needs --count {count}")
    return found[:count]


def summary(seconds, images):
    """Median images/s per path and the ratios over the hand-written pipeline, from each round's seconds."""
    rates = {name: images / statistics.median(values) for name, values in seconds.items()}
    ratios = {f"{name}_over_handwritten": rates[name] / rates["handwritten"] for name in TARGETS if name in rates}
    return rates, ratios


def table(rates, ratios):
    lines = [f"{'path':<12}{'images/s (median)':>19}{'ratio':>8}{'target':>8}"]
    for name in PATHS:
        ratio = ratios.get(f"{name}_over_handwritten")
        lines.append(f"{name:<12}{rates[name]:>19.1f}{'' if ratio is None else f'{ratio:.3f}':>8}"
                     f"{'' if name not in TARGETS else f'>= {TARGETS[name]}':>8}")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", default=DEFAULT_IMAGES, help="folder of JPEGs (searched recursively)")
    parser.add_argument("--count", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--entry", default="afi_efficientnet_lite0_emotion6")
    parser.add_argument("--untrained", action="store_true", help="build the entry with weights=None")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "predict.json"))
    args = parser.parse_args(argv)
    paths = jpeg_paths(args.images, args.count)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path.insert(0, str(REPO))
    import keras
    import tensorflow as tf

    import affect_zoo
    from affect_zoo import export

    model = affect_zoo.load(args.entry, weights=None if args.untrained else "default")
    size = tuple(model.network.input_shape[1:3])

    def handwritten():
        def prepare(path):
            image = tf.io.decode_jpeg(tf.io.read_file(path), channels=3)
            return tf.image.resize(tf.cast(image, tf.float32), size, method="bilinear", antialias=True)

        dataset = (tf.data.Dataset.from_tensor_slices(paths).map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
                   .batch(args.batch).prefetch(tf.data.AUTOTUNE))
        return model.predict(dataset, verbose=0)["emotion"]

    with tempfile.TemporaryDirectory() as base:
        started = time.perf_counter()
        version_dir = export.export_saved_model(model, base, warmup=False)
        export_s = time.perf_counter() - started
        signature = tf.saved_model.load(str(version_dir)).signatures[export.BYTES_SIGNATURE]

        def served():
            outputs = []
            for i in range(0, len(paths), args.batch):
                encoded = [pathlib.Path(p).read_bytes() for p in paths[i:i + args.batch]]
                outputs.append(signature(images=tf.constant(encoded))["emotion_probs"].numpy())
            return outputs

        runs = {"handwritten": handwritten,
                "predict": lambda: affect_zoo.predict(model, paths, batch_size=args.batch)["emotion"],
                "signature": served}
        for run in runs.values():  # first calls trace and allocate
            run()
        seconds = {name: [] for name in PATHS}
        for r in range(args.rounds):
            order = PATHS[r % 3:] + PATHS[:r % 3]
            for name in order:
                started = time.perf_counter()
                runs[name]()
                seconds[name].append(time.perf_counter() - started)
    rates, ratios = summary(seconds, len(paths))
    result = {
        "benchmark": "predict", "entry": args.entry, "weights": None if args.untrained else "default",
        "input_size": list(size), "images": len(paths), "source": args.images, "batch": args.batch,
        "rounds": args.rounds, "images_per_s_median": {k: round(v, 1) for k, v in rates.items()},
        **{k: round(v, 3) for k, v in ratios.items()},
        "targets": {f"{k}_over_handwritten": v for k, v in TARGETS.items()},
        "seconds": {k: [round(x, 3) for x in v] for k, v in seconds.items()}, "export_s": round(export_s, 1),
        "load_avg_1min": round(os.getloadavg()[0], 2), "tensorflow": tf.__version__, "keras": keras.__version__,
        "cpus": os.cpu_count(), "machine": platform.platform(),
    }
    print(table(rates, ratios))
    print(f"{len(paths)} JPEGs from {args.images}, {args.entry} at {size[0]}x{size[1]}, batch {args.batch}, "
          f"{args.rounds} interleaved rounds (medians); load average {result['load_avg_1min']}")
    save_json(result, args.out)
    return result


if __name__ == "__main__":
    main()
