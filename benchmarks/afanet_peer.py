"""Peer benchmark: our AFI two-branch ResNet50 train step against AFANet, the public PyTorch reference of the idea.

AFANet (https://github.com/zhenshen-mla/AFANet) comes from a checkout given with ``--afanet PATH`` and is never
copied into this repository. Its two-branch ResNet50, ``models/net_image_afalayer.py``, is imported from that
checkout and adapted in memory at import time, so the checkout stays untouched. The edits it needs to run on the
CPU without downloads:

- ``from layer_afa import ...``: the checkout's ``models/`` goes on ``sys.path``;
- ``import torchvision.models`` at the top: a stand-in module is in ``sys.modules`` during that import (the net is
  plain torch; torchvision only serves ``make_network``'s ImageNet download), so no torchvision is needed;
- ``make_network()`` calls ``resnet50(pretrained=True)`` (a download): not called. The net is built as
  ``ResNet(Bottleneck, [3, 4, 6, 3], num_classes1=2, num_classes2=7)`` with its own random init, as ours is built
  with ``weights=None``;
- its spatial module is made for 224 px (``AFA_layer_sam_data(h=7, w=7)``: a 49×49 linear map) and its heads pool
  with ``AvgPool2d(7)``: the module is built for the input's layer-4 side (the size halved 5 times, rounding up;
  7 at 224 px, 4 at 112 px) and the pools are ``AdaptiveAvgPool2d(1)``, the same operation at 224 px.
It has no ``.cuda()`` call: everything runs on the CPU.

Every net trains in its own child process (thread pools do not compete, each peak RSS is its own) with
``--threads`` (2) threads: TensorFlow's intra- and inter-op pools; ``torch.set_num_threads`` and
``set_num_interop_threads``, with ``OMP_WAIT_POLICY=PASSIVE`` (PyTorch's default OpenMP busy-waiting made it several
times slower when another process shared the cores; TensorFlow does not use OpenMP).

- Ours, built as ``benchmarks/train_step.py`` builds them (va regression + Emotion6 distribution tasks, SGD with
  momentum 0.9, ``train_on_batch``): ``afi_recalibrated`` (AFI after each of the 4 ResNet stages with gradient
  recalibration, as the shipped ``afi_resnet50_uae`` recipe), ``afi`` (no recalibration) and ``two_single`` (the
  same two branches, no interaction).
- AFANet as published: channel + spatial aggregation (CAM, SAM) after each of the three layer-4 blocks, the first
  branch's input detached into the modules (its gradient simplification); forward, MSE on branch A + KL divergence on
  branch B, backward, SGD (momentum 0.9) step. NCHW, PyTorch's default layout.
Both sides train on the same random batch (images 0–255 for ours, which normalises inside the model; scaled to
[-1, 1] for AFANet).

The children are built and warmed up (traced) one at a time; then, round after round, each runs ``--steps`` steps
in turn, the order rotating every round, so machine noise hits all alike. Reported per size: median step time,
img/s, peak RSS (VmHWM) and the ratios ``ours_over_afanet`` (img/s of afi_recalibrated ÷ AFANet's; ≥ 1 means
ours is faster), ``afi_over_two_single`` and ``recalibration_on_over_off`` (median step-time ratios). A printed table
and JSON (default benchmarks/results/afanet_peer.json).

    python benchmarks/afanet_peer.py --afanet /path/to/AFANet [--torch-python /path/to/venv/bin/python]
                                     [--sizes 112 224] [--batch 8] [--rounds 10] [--steps 3] [--threads 2]

This script needs only the standard library: our side runs in the interpreter running it (which must import
affect_zoo), AFANet's in ``--torch-python`` (default: this interpreter, if it has torch). Without torch or the
checkout it says what is missing and times our side alone.
"""
import argparse
import hashlib
import importlib
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import time
import types

from harness import memory_mb, random_batch, save_json

OURS = ("afi_recalibrated", "afi", "two_single")  # names of benchmarks/train_step.py's VARIANTS
HEADLINE = "afi_recalibrated"
AFANET = "afanet"
AFANET_URL = "https://github.com/zhenshen-mla/AFANet"
AFANET_FILES = ("models/net_image_afalayer.py", "models/layer_afa.py")
TARGETS = {"afi_over_two_single": "<= 1.05", "recalibration_on_over_off": "<= 1.03",
           "ours_over_afanet": ">= 1.0 (aim 1.15)"}


def ours(variant, size, batch, threads):
    """(one train step, parameter count, versions) of our two-branch net ``variant``."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    import train_step

    architecture, options = train_step.VARIANTS[variant]
    model = train_step.make(architecture, "resnet50", size, **options)
    images, va, emotion = random_batch(batch, size)
    x, y = tf.constant(images), {"va": tf.constant(va), "emotion": tf.constant(emotion)}
    return (lambda: model.train_on_batch(x, y)), int(model.count_params()), {"tensorflow": tf.__version__}


def import_afanet(checkout):
    """The checkout's ``net_image_afalayer`` module, imported with a stand-in torchvision (see the docstring)."""
    sys.path.insert(0, str(pathlib.Path(checkout) / "models"))
    stand_in = types.ModuleType("torchvision")
    stand_in.models = types.ModuleType("torchvision.models")

    def resnet50(*args, **kwargs):
        raise RuntimeError("afanet_peer builds AFANet without torchvision's pretrained ResNet50")

    stand_in.models.resnet50 = resnet50
    saved = {name: sys.modules.get(name) for name in ("torchvision", "torchvision.models")}
    sys.modules.update({"torchvision": stand_in, "torchvision.models": stand_in.models})
    try:
        return importlib.import_module("net_image_afalayer")
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def layer4_side(size):
    """Side of ResNet50's layer-4 map: the stem conv, the max pool and layers 2–4 each halve it, rounding up."""
    for _ in range(5):
        size = (size - 1) // 2 + 1
    return size


def build_afanet(net, size):
    """AFANet's two-branch ResNet50 for ``size`` px inputs, 2 + 7 outputs, random init (see the docstring)."""
    import torch

    side = layer4_side(size)
    sam = net.AFA_layer_sam_data
    net.AFA_layer_sam_data = lambda h, w: sam(h=side, w=side)
    try:
        model = net.ResNet(net.Bottleneck, [3, 4, 6, 3], num_classes1=2, num_classes2=7)
    finally:
        net.AFA_layer_sam_data = sam
    model.A_avgpool = torch.nn.AdaptiveAvgPool2d(1)
    model.B_avgpool = torch.nn.AdaptiveAvgPool2d(1)
    return model


def afanet(checkout, size, batch, threads):
    """(one train step, parameter count, versions) of AFANet's two-branch net."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read when torch loads OpenMP, i.e. at the import below
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    torch.set_num_interop_threads(threads)
    torch.manual_seed(0)
    model = build_afanet(import_afanet(checkout), size)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    images, va, emotion = (torch.from_numpy(a) for a in random_batch(batch, size))
    x = images.permute(0, 3, 1, 2).contiguous() / 127.5 - 1

    def step():
        optimizer.zero_grad(set_to_none=True)
        out_a, out_b = model(x)
        loss = (F.mse_loss(out_a / 4, va / 4)  # in units of half the 1–9 range, as our regression loss
                + F.kl_div(F.log_softmax(out_b, dim=1), emotion, reduction="batchmean"))
        loss.backward()
        optimizer.step()

    return step, sum(p.numel() for p in model.parameters()), {"torch": torch.__version__}


def worker(args):
    """Build, warm up, say ready, then answer each line on stdin (a step count) with the seconds of each step.

    Replies go to a private copy of stdout; stdout itself is pointed at stderr so that nothing a library prints
    can corrupt them.
    """
    channel = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    if args.worker == AFANET:
        step, params, versions = afanet(args.afanet, args.size, args.batch, args.threads)
    else:
        step, params, versions = ours(args.worker, args.size, args.batch, args.threads)
    start = time.perf_counter()
    for _ in range(args.warmup):
        step()
    channel.write(json.dumps({"params": int(params), "warmup_s": time.perf_counter() - start,
                              "warmup_memory_mb": memory_mb(), **versions}) + "\n")
    for line in sys.stdin:
        times = []
        for _ in range(int(line)):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        channel.write(json.dumps({"times": times}) + "\n")


class Child:
    """One net in its own process, driven over a pipe."""

    def __init__(self, name, python, args, size, env):
        command = [python, os.path.abspath(__file__), "--worker", name, "--size", str(size),
                   "--batch", str(args.batch), "--threads", str(args.threads), "--warmup", str(args.warmup)]
        if name == AFANET:
            command += ["--afanet", str(args.afanet)]
        self.name = name
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.info = self._reply()

    def _reply(self):
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the {self.name} child exited with code {self.proc.wait()} (its error is above)")
        return json.loads(line)

    def steps(self, count):
        self.proc.stdin.write(f"{count}\n")
        self.proc.stdin.flush()
        return self._reply()["times"]

    def close(self):
        """Its memory (MB, see harness.memory_mb), read before it exits."""
        memory = memory_mb(self.proc.pid)
        self.proc.stdin.close()
        self.proc.wait()
        return memory


def find_torch(torch_python):
    """(interpreter with torch, its torch version) or (None, what is missing)."""
    python = torch_python or sys.executable
    try:
        found = subprocess.run([python, "-c", "import torch; print(torch.__version__)"], capture_output=True,
                               text=True, timeout=600)
    except OSError as error:
        return None, f"--torch-python {python} cannot be run: {error.strerror}"
    if found.returncode:
        last = (found.stderr.strip().splitlines() or ["(no message)"])[-1]
        hint = "" if torch_python else "; pass --torch-python PYTHON of an environment that has torch"
        return None, f"torch is not importable by {python}: {last}{hint}"
    return python, found.stdout.strip()


def check_checkout(path):
    """What is missing from the AFANet checkout at ``path`` (None if nothing)."""
    if path is None:
        return f"no AFANet checkout given: clone {AFANET_URL} and pass --afanet PATH"
    missing = [name for name in AFANET_FILES if not (pathlib.Path(path) / name).is_file()]
    if missing:
        return f"--afanet {path} is not an AFANet checkout: it has no {', '.join(missing)}"
    return None


def sha256(path):
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def run_size(size, args, torch_python):
    """Warm up every child, run the interleaved rounds, and return the size's rows and ratios."""
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    children = []
    try:
        for name in args.ours:
            children.append(Child(name, sys.executable, args, size, env))
        if torch_python:
            children.append(Child(AFANET, torch_python, args, size, env))
        times = {child.name: [] for child in children}
        for round_ in range(args.rounds):
            shift = round_ % len(children)
            for child in children[shift:] + children[:shift]:
                times[child.name] += child.steps(args.steps)
        memory = {child.name: child.close() for child in children}
    finally:
        for child in children:
            if child.proc.poll() is None:
                child.proc.kill()
    rows = {}
    for child in children:
        median = statistics.median(times[child.name])
        rows[child.name] = {"median_step_s": median, "img_per_s": args.batch / median,
                            "memory_mb": memory[child.name], **child.info, "steps": times[child.name]}
    return {"nets": rows, "ratios": ratios(rows)}


def ratios(rows):
    step = {name: row["median_step_s"] for name, row in rows.items()}
    pairs = {"ours_over_afanet": (AFANET, HEADLINE), "afi_without_recalibration_over_afanet": (AFANET, "afi"),
             "afi_over_two_single": (HEADLINE, "two_single"), "recalibration_on_over_off": (HEADLINE, "afi")}
    # Step-time ratios; the two over AFANet are AFANet's step time over ours, i.e. our img/s over AFANet's.
    return {name: step[a] / step[b] for name, (a, b) in pairs.items() if a in step and b in step}


def print_table(result):
    print(f"Train step, batch {result['batch']}, {result['threads']} threads each, {result['rounds']} rounds x "
          f"{result['steps']} steps (interleaved)")
    if result["afanet"].get("skipped"):
        print(f"AFANet side skipped: {result['afanet']['skipped']}")
    print(f"{'size':>4s}  {'net':18s} {'params':>11s} {'step (s)':>9s} {'img/s':>7s} {'peak RSS (MB)':>14s}")
    for size, entry in result["sizes"].items():
        for name, row in entry["nets"].items():
            print(f"{size:>4s}  {name:18s} {row['params']:11,d} {row['median_step_s']:9.3f} {row['img_per_s']:7.2f} "
                  f"{row['memory_mb']['peak_rss']:14.0f}")
        for name, value in entry["ratios"].items():
            target = TARGETS.get(name, "")
            print(f"{size:>4s}  {name:40s} {value:6.3f}  {'(target ' + target + ')' if target else ''}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--afanet", help="path of a checkout of " + AFANET_URL)
    parser.add_argument("--torch-python", help="python of an environment with torch (default: this one)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[112, 224])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per net per round")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (the first one traces)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ours", nargs="+", choices=OURS, default=list(OURS), help="our variants to time")
    parser.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results" / "afanet_peer.json"))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    if min(args.rounds, args.steps, args.batch, args.threads) < 1 or args.warmup < 1:
        parser.error("--rounds, --steps, --batch, --threads and --warmup must be at least 1")

    missing = [reason for reason in [check_checkout(args.afanet)] if reason]
    torch_python, torch_version = find_torch(args.torch_python)
    if torch_python is None:
        missing.append(torch_version)
    if missing:
        print("AFANet side skipped, timing ours alone: " + "; ".join(missing), file=sys.stderr)
        afanet_info = {"skipped": "; ".join(missing)}
        torch_python = None
    else:
        afanet_info = {"checkout": os.path.abspath(args.afanet), "python": torch_python, "torch": torch_version,
                       "files_sha256": {name: sha256(pathlib.Path(args.afanet) / name) for name in AFANET_FILES}}
    load_before = os.getloadavg()
    sizes = {str(size): run_size(size, args, torch_python) for size in args.sizes}
    result = {"batch": args.batch, "threads": args.threads, "rounds": args.rounds, "steps": args.steps,
              "warmup": args.warmup, "omp_wait_policy": "PASSIVE", "afanet": afanet_info, "sizes": sizes,
              "targets": TARGETS,
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                          "load_average_before": load_before, "load_average_after": os.getloadavg()}}
    print_table(result)
    save_json(result, args.out)


if __name__ == "__main__":
    main()
