"""Train-step time, side by side in one run on the same inputs:

- a two-branch AFI net against two single-task nets of the same backbone (the ``single`` architecture: the same
  two branches, no interaction, so the same work as two separate nets);
- AFI with gradient recalibration against AFI without it.

Models are warmed up (traced) first, then timed round-robin, one step each in turn, so machine noise hits all
of them alike. Prints a table and writes JSON with the ratios of median step times ``afi_over_two_single`` and
``recalibration_overhead``.

    python benchmarks/train_step.py [--backbone resnet50] [--size 112] [--batch 8] [--steps 20]
                                    [--depth K] [--weights hed] [--alpha 0.35]
"""
import argparse
import json
import os
import pathlib
import platform
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from affect_zoo.models import multitask  # noqa: E402
from affect_zoo.tasks import Task  # noqa: E402
from affect_zoo.training import MultiTaskModel  # noqa: E402

TASKS = [Task("va", "regression", 2, branch=0, labels=("valence", "arousal"), target_range=(1, 9)),
         Task("emotion", "distribution", 7, branch=1, circle="emotion6")]


def make(architecture, backbone, size, **options):
    keras.utils.set_random_seed(0)
    options = {k: v for k, v in options.items() if v is not None}
    network = multitask.build(architecture, backbone, TASKS, (size, size, 3), **options)
    model = MultiTaskModel(network, tasks=TASKS)
    model.compile(optimizer=keras.optimizers.SGD(1e-3, momentum=0.9))
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--depth", type=int, help="keep the first K backbone stages")
    parser.add_argument("--weights", help="backbone init, e.g. hed (vgg16)")
    parser.add_argument("--alpha", type=float, help="MobileNetV2 width")
    parser.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results" / "train_step.json"))
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    x = tf.constant(rng.uniform(0, 255, (args.batch, args.size, args.size, 3)).astype("float32"))
    y = {"va": tf.constant(rng.uniform(1, 9, (args.batch, 2)).astype("float32")),
         "emotion": tf.constant(rng.dirichlet(np.ones(7), args.batch).astype("float32"))}
    common = {"depth": args.depth, "weights": args.weights, "alpha": args.alpha}
    variants = {
        "two_single": make("single", args.backbone, args.size, **common),
        "afi": make("afi", args.backbone, args.size, recalibrate=False, **common),
        "afi_recalibrated": make("afi", args.backbone, args.size, recalibrate=True, **common),
    }
    trace_s = {}
    for name, model in variants.items():
        start = time.perf_counter()
        for _ in range(args.warmup):
            model.train_on_batch(x, y)
        trace_s[name] = time.perf_counter() - start
    times = {name: [] for name in variants}
    for _ in range(args.steps):
        for name, model in variants.items():
            start = time.perf_counter()
            model.train_on_batch(x, y)
            times[name].append(time.perf_counter() - start)
    median = {name: statistics.median(t) for name, t in times.items()}
    result = {
        "backbone": args.backbone, "size": args.size, "batch": args.batch, "steps": args.steps, **common,
        "median_step_s": median, "warmup_s": trace_s,
        "params": {name: int(m.count_params()) for name, m in variants.items()},
        "afi_over_two_single": median["afi_recalibrated"] / median["two_single"],
        "afi_without_recalibration_over_two_single": median["afi"] / median["two_single"],
        "recalibration_overhead": median["afi_recalibrated"] / median["afi"],
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "tensorflow": tf.__version__},
    }
    print(f"{args.backbone} {common} at {args.size} px, batch {args.batch}, {args.steps} timed steps each "
          "(round-robin)")
    print(f"{'variant':20s} {'median step (s)':>16s} {'params':>12s}")
    for name in variants:
        print(f"{name:20s} {median[name]:16.4f} {result['params'][name]:12,d}")
    print(f"afi_over_two_single     {result['afi_over_two_single']:.3f}   (target <= 1.08)")
    print(f"recalibration_overhead  {result['recalibration_overhead']:.3f}   (target <= 1.05)")
    pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
