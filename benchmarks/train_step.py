"""Train-step time, side by side in one run on the same inputs:

- a two-branch AFI net against two single-task nets of the same backbone (the ``single`` architecture: the same
  two branches, no interaction, so the same work as two separate nets);
- AFI with gradient recalibration against AFI without it.

Models are warmed up (traced) first, then timed round-robin, one step each in turn, so machine noise hits all
of them alike. Prints a table and writes JSON with the ratios of median step times ``afi_over_two_single`` and
``recalibration_overhead``.

Memory: first, each variant alone in a child process reports its memory (see harness.py) after the imports,
after building and compiling, after the first (traced) step and after ``--memory-steps`` steps (0: skip; the peak
still creeps up for the first few steps, by ~5 %, then stays): the peak RSS per architecture in the table is that
child's VmHWM. Memory hardly depends on machine load, so ``--steps 0`` (memory only) can run on a busy machine.

    python benchmarks/train_step.py [--backbone resnet50] [--size 112] [--batch 8] [--steps 20]
                                    [--memory-steps 8] [--depth K] [--weights hed] [--alpha 0.35]
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

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from harness import memory_mb, random_batch, save_json  # noqa: E402

from affect_zoo.models import multitask  # noqa: E402
from affect_zoo.tasks import Task  # noqa: E402
from affect_zoo.training import MultiTaskModel  # noqa: E402

TASKS = [Task("va", "regression", 2, branch=0, labels=("valence", "arousal"), target_range=(1, 9)),
         Task("emotion", "distribution", 7, branch=1, circle="emotion6")]
#: name -> (architecture, AFI options)
VARIANTS = {"two_single": ("single", {}), "afi": ("afi", {"recalibrate": False}),
            "afi_recalibrated": ("afi", {"recalibrate": True})}


def make(architecture, backbone, size, **options):
    keras.utils.set_random_seed(0)
    options = {k: v for k, v in options.items() if v is not None}
    network = multitask.build(architecture, backbone, TASKS, (size, size, 3), **options)
    model = MultiTaskModel(network, tasks=TASKS)
    model.compile(optimizer=keras.optimizers.SGD(1e-3, momentum=0.9))
    return model


def batch_tensors(batch, size):
    images, va, emotion = random_batch(batch, size)
    return tf.constant(images), {"va": tf.constant(va), "emotion": tf.constant(emotion)}


def memory_child(args, common):
    """Print the memory of this process, which trains variant ``args.memory_child`` alone, at each phase."""
    phases = {"imported": memory_mb()}
    architecture, options = VARIANTS[args.memory_child]
    model = make(architecture, args.backbone, args.size, **options, **common)
    phases["built"] = memory_mb()
    phases["params"] = int(model.count_params())
    x, y = batch_tensors(args.batch, args.size)
    model.train_on_batch(x, y)
    phases["first_step"] = memory_mb()
    for _ in range(args.memory_steps - 1):
        model.train_on_batch(x, y)
    phases["last_step"] = memory_mb()
    try:
        phases["tf_allocator_peak"] = tf.config.experimental.get_memory_info("CPU:0")["peak"] / 2**20
    except ValueError:  # no allocator statistics (oneDNN off)
        phases["tf_allocator_peak"] = None
    print(json.dumps(phases), flush=True)


def measure_memory(args):
    """{variant: phases} from one child process per variant (see the module docstring)."""
    options = ("backbone", "size", "batch", "memory_steps", "depth", "weights", "alpha")
    forwarded = [f"--{key.replace('_', '-')}={value}" for key, value in vars(args).items()
                 if key in options and value is not None]
    memory = {}
    for name in VARIANTS:
        out = subprocess.run([sys.executable, __file__, "--memory-child", name, *forwarded], stdout=subprocess.PIPE,
                             text=True, check=True)
        memory[name] = json.loads(out.stdout.strip().splitlines()[-1])
    return memory


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per variant; 0: memory only")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--memory-steps", type=int, default=8, help="steps of each memory child; 0: no memory")
    parser.add_argument("--memory-child", choices=list(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--depth", type=int, help="keep the first K backbone stages")
    parser.add_argument("--weights", help="backbone init, e.g. hed (vgg16)")
    parser.add_argument("--alpha", type=float, help="MobileNetV2 width")
    parser.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results" / "train_step.json"))
    args = parser.parse_args()
    common = {"depth": args.depth, "weights": args.weights, "alpha": args.alpha}
    if args.memory_child:
        return memory_child(args, common)

    memory = measure_memory(args) if args.memory_steps > 0 else {}
    result = {"backbone": args.backbone, "size": args.size, "batch": args.batch, "steps": args.steps, **common,
              "memory_steps": args.memory_steps, "memory_mb": memory,
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "tensorflow": tf.__version__,
                          "load_average": os.getloadavg()}}
    if args.steps > 0:
        result.update(time_steps(args, common))
    print_table(result)
    save_json(result, args.out)


def time_steps(args, common):
    """Median step time of each variant, all in this process, round-robin after their warm-up."""
    x, y = batch_tensors(args.batch, args.size)
    variants = {name: make(architecture, args.backbone, args.size, **options, **common)
                for name, (architecture, options) in VARIANTS.items()}
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
    return {"median_step_s": median, "warmup_s": trace_s,
            "params": {name: int(m.count_params()) for name, m in variants.items()},
            "afi_over_two_single": median["afi_recalibrated"] / median["two_single"],
            "afi_without_recalibration_over_two_single": median["afi"] / median["two_single"],
            "recalibration_overhead": median["afi_recalibrated"] / median["afi"]}


def print_table(result):
    timed = "median_step_s" in result
    print(f"{result['backbone']} depth={result['depth']} weights={result['weights']} alpha={result['alpha']} at "
          f"{result['size']} px, batch {result['batch']}, " + (f"{result['steps']} timed steps each (round-robin)"
                                                               if timed else "memory only"))
    print(f"{'variant':20s} {'median step (s)':>16s} {'params':>12s} {'peak RSS (MB)':>14s} "
          f"{'first step':>11s} {'RssAnon':>8s} {'RssFile':>8s}")
    for name in VARIANTS:
        phases = result["memory_mb"].get(name)
        step = f"{result['median_step_s'][name]:16.4f}" if timed else f"{'':16s}"
        params = result["params"][name] if timed else phases["params"]
        figures = (f"{phases['last_step']['peak_rss']:14.0f} {phases['first_step']['peak_rss']:11.0f} "
                   f"{phases['last_step']['rss_anon']:8.0f} {phases['last_step']['rss_file']:8.0f}"
                   if phases else "")
        print(f"{name:20s} {step} {params:12,d} {figures}")
    if timed:
        print(f"afi_over_two_single     {result['afi_over_two_single']:.3f}   (target <= 1.05)")
        print(f"recalibration_overhead  {result['recalibration_overhead']:.3f}   (target <= 1.03)")


if __name__ == "__main__":
    main()
