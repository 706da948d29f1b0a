"""Start-up cost: ``import tensorflow`` against ``import affect_zoo``, the zoo's load/predict path and the CLI.

Each case is a fresh interpreter, timed from spawn to exit (wall clock), so it includes Python's own start-up:
- ``import tensorflow``: the floor any TensorFlow program pays;
- ``import affect_zoo``: the package (lazy: submodules load on first use);
- ``import affect_zoo.zoo``: what ``affect_zoo.load``/``predict`` import (TensorFlow, Keras, our layers, models,
  trainer), the figure to hold against ``import tensorflow``;
- ``affect-zoo --help`` and ``affect-zoo list``: the command (the console script beside this Python, else
  ``python -m affect_zoo.cli``), which answers these from the registry without TensorFlow.
Rounds are interleaved (every case once per round, in turn) so machine load hits all alike; the table gives each
case's median over the rounds, and the ratios are of medians. Targets (issue 16): ``import affect_zoo`` ÷
``import tensorflow`` ≤ 1.05 and ``affect-zoo list`` ≤ 1 s. Prints a table and writes JSON.

    python benchmarks/startup.py [--rounds 5] [--out FILE]
"""
import argparse
import os
import pathlib
import platform
import shutil
import statistics
import subprocess
import sys
import time

from harness import save_json

REPO = pathlib.Path(__file__).resolve().parents[1]
TARGETS = {"affect_zoo_over_tensorflow": 1.05, "list_s": 1.0}


def command_line():
    """argv prefix of the ``affect-zoo`` command: this environment's console script, else ``python -m``."""
    script = shutil.which("affect-zoo", path=os.path.dirname(sys.executable))
    return [script] if script else [sys.executable, "-m", "affect_zoo.cli"]


def cases():
    cli = command_line()
    return {
        "import tensorflow": [sys.executable, "-c", "import tensorflow"],
        "import affect_zoo": [sys.executable, "-c", "import affect_zoo"],
        "import affect_zoo.zoo": [sys.executable, "-c", "import affect_zoo.zoo"],
        "affect-zoo --help": cli + ["--help"],
        "affect-zoo list": cli + ["list"],
    }


def measure(commands, rounds, env=None):
    """{case: [seconds per round]}: every command once per round, in turn; a failing command is an error."""
    seconds = {name: [] for name in commands}
    for _ in range(rounds):
        for name, argv in commands.items():
            start = time.perf_counter()
            subprocess.run(argv, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            seconds[name].append(time.perf_counter() - start)
    return seconds


def summarise(seconds):
    """Medians per case and the two ratios/targets the issue measures."""
    median = {name: statistics.median(values) for name, values in seconds.items()}
    summary = {"median_s": median}
    if "import tensorflow" in median:
        base = median["import tensorflow"]
        summary["affect_zoo_over_tensorflow"] = median.get("import affect_zoo", float("nan")) / base
        summary["zoo_over_tensorflow"] = median.get("import affect_zoo.zoo", float("nan")) / base
    summary["list_s"] = median.get("affect-zoo list", float("nan"))
    return summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "startup.json"))
    args = parser.parse_args(argv)

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    commands = cases()
    load_before = os.getloadavg()
    seconds = measure(commands, args.rounds, env=env)
    summary = summarise(seconds)
    result = {
        "benchmark": "startup", "rounds": args.rounds, "commands": {k: " ".join(v) for k, v in commands.items()},
        "median_s": {k: round(v, 3) for k, v in summary["median_s"].items()},
        "affect_zoo_over_tensorflow": round(summary["affect_zoo_over_tensorflow"], 3),
        "zoo_over_tensorflow": round(summary["zoo_over_tensorflow"], 3),
        "list_s": round(summary["list_s"], 3), "targets": TARGETS,
        "seconds": {k: [round(x, 3) for x in v] for k, v in seconds.items()},
        "load_average_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "python": platform.python_version(), "cpus": os.cpu_count(), "machine": platform.platform(),
    }
    base = summary["median_s"]["import tensorflow"]
    print(f"{'case':<24}{'median s':>10}{'÷ import tensorflow':>22}")
    for name, value in summary["median_s"].items():
        print(f"{name:<24}{value:>10.3f}{value / base:>22.3f}")
    print(f"import affect_zoo / import tensorflow = {result['affect_zoo_over_tensorflow']:.3f} (target <= 1.05); "
          f"affect-zoo list {result['list_s']:.3f} s (target <= 1 s); median of {args.rounds} interleaved rounds; "
          f"load average {result['load_average_before_after'][0]} -> {result['load_average_before_after'][1]}")
    save_json(result, args.out)
    return result


if __name__ == "__main__":
    main()
