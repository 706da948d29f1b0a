"""Input pipeline throughput against what a ResNet50 train step consumes, on Emotion6, both measured in one run.

For each size × batch: images/s of ``data.make_pipeline(training=True)`` on the train split (read from the
TFRecords, decode only the random crop, resize, flip, batch; no cache; warm-up batches excluded) and images/s of
a ResNet50 (weights=None) ``MultiTaskModel`` train step on the Emotion6 tasks, fed one real batch (the first,
tracing, step excluded). Their ratio ``pipeline_over_train_step`` must be ≥ 3 for the pipeline never to starve
training. Pipeline and train step are measured alternately, config by config, so machine load hits both alike.

Emotion6 is built from ``--manual-dir`` (the published release, 1,980 images) into ``--data-dir`` (a temporary
directory when not given; an already built ``<data-dir>/emotion6/1.0.0`` is reused). Prints a table and writes JSON.

    python benchmarks/input_pipeline.py [--data-dir DIR] [--configs 112x8 112x32 224x8] [--randaugment]
"""
import argparse
import os
import pathlib
import platform
import sys
import tempfile
import time

from harness import save_json

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402

from affect_zoo import data  # noqa: E402
from affect_zoo.models import multitask  # noqa: E402
from affect_zoo.tasks import Task  # noqa: E402
from affect_zoo.training import MultiTaskModel  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
# Both tasks on one branch: "single" is then one ResNet50 with two heads.
TASKS = [Task("emotion", "distribution", 7, branch=1, circle="emotion6"),
         Task("va", "regression", 2, branch=1, labels=("valence", "arousal"), target_range=(1, 9))]


def built_emotion6(data_dir, manual_dir):
    """The directory of Emotion6 built under data_dir, building it first when it is not there."""
    version_dir = pathlib.Path(data_dir) / "emotion6" / "1.0.0"
    if not (version_dir / "dataset_info.json").is_file():
        sys.path.insert(0, str(REPO / "tfds_builders"))
        from emotion6 import emotion6_dataset_builder

        builder = emotion6_dataset_builder.Builder(data_dir=str(data_dir))
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
    return str(version_dir)


def pipeline_rate(dataset_dir, size, batch, augment, warmup, images):
    """Images/s the training pipeline delivers, after `warmup` batches (the shuffle buffer fills then)."""
    source = data.load_split(dataset_dir, "train").repeat()
    pipeline = data.make_pipeline(source, TASKS, (size, size), batch, training=True, targets="emotion6",
                                  augment=augment, seed=0)
    iterator = iter(pipeline)
    for _ in range(warmup):
        first = next(iterator)
    steps = max(2, -(-images // batch))
    start = time.perf_counter()
    for _ in range(steps):
        next(iterator)
    return steps * batch / (time.perf_counter() - start), first


def train_rate(model, batch_data, steps):
    """Images/s one train step consumes; the first call (tracing) is timed separately and excluded."""
    x, y = batch_data
    start = time.perf_counter()
    model.train_on_batch(x, y)
    trace_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    return steps * int(x.shape[0]) / (time.perf_counter() - start), trace_s


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", help="where Emotion6 is (or gets) built; default: a temporary directory")
    parser.add_argument("--manual-dir", default=str(REPO.parent / "shared" / "data" / "emotion6"))
    parser.add_argument("--configs", nargs="+", default=["112x8", "112x32", "224x8"],
                        help="SIZExBATCH pairs (224x32 adds ~3 min of ResNet50 tracing and steps on 2 cores)")
    parser.add_argument("--pipeline-images", type=int, default=512, help="timed images per pipeline config")
    parser.add_argument("--warmup-batches", type=int, default=3)
    parser.add_argument("--train-steps", type=int, default=2, help="timed train steps per config")
    parser.add_argument("--randaugment", action="store_true",
                        help="also time the pipeline with Keras RandAugment (slow: it runs all 11 ops per image)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "input_pipeline.json"))
    args = parser.parse_args()
    configs = [tuple(int(v) for v in c.lower().split("x")) for c in args.configs]

    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        dataset_dir = built_emotion6(args.data_dir or tmp, args.manual_dir)
        build_s = time.perf_counter() - started
        rows, models = [], {}
        for size, batch in configs:
            rate, first = pipeline_rate(dataset_dir, size, batch, None, args.warmup_batches, args.pipeline_images)
            if size not in models:
                keras.utils.set_random_seed(0)
                models[size] = MultiTaskModel(multitask.build("single", "resnet50", TASKS, (size, size, 3)),
                                              tasks=TASKS)
                models[size].compile(optimizer=keras.optimizers.SGD(1e-3, momentum=0.9))
            step_rate, trace_s = train_rate(models[size], first, args.train_steps)
            row = {"size": size, "batch": batch, "pipeline_images_per_s": rate,
                   "train_step_images_per_s": step_rate, "pipeline_over_train_step": rate / step_rate,
                   "first_step_s": trace_s}
            if args.randaugment:
                row["pipeline_randaugment_images_per_s"] = pipeline_rate(
                    dataset_dir, size, batch, {"randaugment": True}, args.warmup_batches,
                    min(args.pipeline_images, 64))[0]
                row["randaugment_over_train_step"] = row["pipeline_randaugment_images_per_s"] / step_rate
            rows.append(row)
            print(f"{size}x{batch}: pipeline {rate:.1f} img/s, train step {step_rate:.2f} img/s", flush=True)

    result = {
        "dataset": "emotion6 train split", "dataset_build_s": build_s, "model": "single resnet50, weights=None",
        "pipeline": "make_pipeline(training=True): crop + flip, no cache, seed 0",
        "pipeline_images": args.pipeline_images, "train_steps": args.train_steps, "rows": rows,
        "pipeline_over_train_step": min(r["pipeline_over_train_step"] for r in rows),
        "machine": {"cpus": os.cpu_count(), "load_average": os.getloadavg(), "platform": platform.platform(),
                    "tensorflow": tf.__version__, "keras": keras.__version__},
    }
    print(f"\nEmotion6 train split, ResNet50 (weights=None) train step; {args.pipeline_images} pipeline images and "
          f"{args.train_steps} train steps timed per config")
    header = f"{'size':>5s} {'batch':>5s} {'pipeline img/s':>15s} {'train img/s':>12s} {'ratio':>8s}"
    print(header + ("  randaugment img/s  ratio" if args.randaugment else ""))
    for r in rows:
        line = (f"{r['size']:5d} {r['batch']:5d} {r['pipeline_images_per_s']:15.1f} "
                f"{r['train_step_images_per_s']:12.2f} {r['pipeline_over_train_step']:8.1f}")
        if args.randaugment:
            line += f"  {r['pipeline_randaugment_images_per_s']:17.1f}  {r['randaugment_over_train_step']:5.1f}"
        print(line)
    print(f"pipeline_over_train_step (worst config) {result['pipeline_over_train_step']:.1f}   (target >= 3)")
    save_json(result, args.out)


if __name__ == "__main__":
    main()
