"""What the benchmarks share: the random training batch, a process's memory and writing the JSON result. Standard library and NumPy only
(the AFANet peer benchmark imports this in a PyTorch environment too).

Memory is read from /proc/<pid>/status (Linux): VmHWM is the peak resident set since the process started; RssAnon
(private memory: tensors, heaps) and RssFile (pages of mapped files: mostly the frameworks' shared libraries,
shared between processes) split the current one. TensorFlow's ``tf.config.experimental.get_memory_info("CPU:0")``
answers on the CPU only with oneDNN on (TensorFlow's default on x86; with ``TF_ENABLE_ONEDNN_OPTS=0`` it raises
"Allocator stats not available") and counts only what TensorFlow's allocator holds (tensors, variables), not the
libraries, traced graphs or heaps, so the benchmarks report RSS.
"""
import json
import pathlib

FIELDS = {"peak_rss": "VmHWM", "rss": "VmRSS", "rss_anon": "RssAnon", "rss_file": "RssFile"}


def memory_mb(pid="self"):
    """{peak_rss, rss, rss_anon, rss_file} of /proc/<pid>/status in MB (2**20 bytes); NaN where there is no /proc."""
    try:
        lines = pathlib.Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        lines = []
    values = dict(line.split(":", 1) for line in lines if ":" in line)
    return {name: int(values[field].split()[0]) / 1024 if field in values else float("nan")
            for name, field in FIELDS.items()}


def peak_rss_mb(pid="self"):
    return memory_mb(pid)["peak_rss"]


def random_batch(batch, size, seed=0):
    """(images NHWC in 0–255, va targets on 1–9, Emotion6 distributions), float32 NumPy arrays."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return (rng.uniform(0, 255, (batch, size, size, 3)).astype("float32"),
            rng.uniform(1, 9, (batch, 2)).astype("float32"),
            rng.dirichlet(np.ones(7), batch).astype("float32"))


def save_json(result, path):
    """The benchmark's result as indented JSON at ``path`` (its folder made if needed)."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
