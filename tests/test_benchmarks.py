"""The benchmarks' own helpers: memory read from /proc, the shared batch, and the AFANet peer benchmark's plumbing
(without torch: its checkout is faked here)."""
import importlib.util
import math
import pathlib
import resource
import sys

import numpy as np
import pytest

BENCHMARKS = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import afanet_peer  # noqa: E402
import harness  # noqa: E402
import predict as predict_benchmark  # noqa: E402

linux_only = pytest.mark.skipif(not pathlib.Path("/proc/self/status").exists(), reason="needs /proc")


@linux_only
def test_memory_counts_a_touched_array_as_private_memory():
    before = harness.memory_mb()
    block = np.ones(200 * 2**20 // 8)  # 200 MB, every page written
    after = harness.memory_mb()
    assert after["rss_anon"] - before["rss_anon"] > 190
    assert after["peak_rss"] >= after["rss"] >= after["rss_anon"]
    # VmHWM is the same peak getrusage reports (ru_maxrss, KB on Linux); both read at once here.
    assert after["peak_rss"] == pytest.approx(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, rel=0.02)
    del block


def test_memory_of_a_missing_process_is_nan():
    assert all(math.isnan(v) for v in harness.memory_mb(pid=2**31).values())


def test_random_batch_is_reproducible_and_in_range():
    images, va, emotion = harness.random_batch(4, 16)
    assert images.shape == (4, 16, 16, 3) and va.shape == (4, 2) and emotion.shape == (4, 7)
    assert {a.dtype for a in (images, va, emotion)} == {np.dtype("float32")}
    assert 0 <= images.min() and images.max() <= 255 and 1 <= va.min() and va.max() <= 9
    np.testing.assert_allclose(emotion.sum(axis=1), 1, rtol=1e-6)
    np.testing.assert_array_equal(images, harness.random_batch(4, 16)[0])


@pytest.mark.parametrize("size, side", [(224, 7), (112, 4), (64, 2), (100, 4)])
def test_layer4_side(size, side):
    # By hand: 224 → 112 → 56 → 28 → 14 → 7; 112 → 56 → 28 → 14 → 7 → 4; 100 → 50 → 25 → 13 → 7 → 4.
    assert afanet_peer.layer4_side(size) == side


def test_checkout_check_names_what_is_missing(tmp_path):
    assert afanet_peer.AFANET_URL in afanet_peer.check_checkout(None)
    message = afanet_peer.check_checkout(tmp_path)
    assert "models/net_image_afalayer.py" in message and "models/layer_afa.py" in message
    for name in afanet_peer.AFANET_FILES:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("")
    assert afanet_peer.check_checkout(tmp_path) is None


def test_find_torch_says_what_is_missing():
    python, message = afanet_peer.find_torch("/nonexistent/bin/python")
    assert python is None and "/nonexistent/bin/python cannot be run" in message
    if importlib.util.find_spec("torch") is None:
        python, message = afanet_peer.find_torch(None)
        assert python is None
        assert "torch is not importable by" in message and "--torch-python" in message


def test_afanet_is_imported_with_a_stand_in_torchvision(tmp_path, monkeypatch):
    """A fake checkout with AFANet's import lines: the module loads without torchvision, which stays unloaded."""
    models = tmp_path / "models"
    models.mkdir()
    (models / "layer_afa.py").write_text("VALUE = 3\n")
    (models / "net_image_afalayer.py").write_text("import torchvision.models as m\nfrom layer_afa import VALUE\n")
    monkeypatch.setattr(sys, "path", list(sys.path))
    had_torchvision = "torchvision" in sys.modules
    try:
        module = afanet_peer.import_afanet(tmp_path)
        assert module.VALUE == 3
        with pytest.raises(RuntimeError, match="pretrained"):
            module.m.resnet50(pretrained=True)
        assert ("torchvision" in sys.modules) == had_torchvision
    finally:
        for name in ("net_image_afalayer", "layer_afa"):
            sys.modules.pop(name, None)


def test_ratios():
    rows = {"afi_recalibrated": {"median_step_s": 2.0}, "afi": {"median_step_s": 1.6},
            "two_single": {"median_step_s": 1.25}, "afanet": {"median_step_s": 2.5}}
    assert afanet_peer.ratios(rows) == pytest.approx({
        "ours_over_afanet": 1.25, "afi_without_recalibration_over_afanet": 2.5 / 1.6,
        "afi_over_two_single": 1.6, "recalibration_on_over_off": 1.25})
    del rows["afanet"]
    assert set(afanet_peer.ratios(rows)) == {"afi_over_two_single", "recalibration_on_over_off"}


@linux_only
@pytest.mark.slow
def test_train_step_benchmark_reports_memory_per_variant(tmp_path):
    """benchmarks/train_step.py on a tiny net: one memory child per variant, the table's figures in the JSON."""
    import json
    import os
    import subprocess

    out = tmp_path / "train_step.json"
    subprocess.run([sys.executable, str(BENCHMARKS / "train_step.py"), "--backbone", "mobilenetv2", "--alpha", "0.35",
                    "--size", "32", "--batch", "2", "--steps", "1", "--warmup", "1", "--memory-steps", "2",
                    "--out", str(out)], check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
                   stdout=subprocess.DEVNULL)
    result = json.loads(out.read_text())
    assert set(result["memory_mb"]) == set(result["median_step_s"]) == {"two_single", "afi", "afi_recalibrated"}
    for name, phases in result["memory_mb"].items():
        assert phases["params"] == result["params"][name]
        peaks = [phases[p]["peak_rss"] for p in ("imported", "built", "first_step", "last_step")]
        assert peaks == sorted(peaks) and peaks[0] > 100  # VmHWM never falls; TensorFlow alone is far above 100 MB
        assert phases["last_step"]["rss_anon"] + phases["last_step"]["rss_file"] <= peaks[-1] + 1


def test_startup_benchmark_interleaves_its_rounds_and_takes_medians(tmp_path):
    import startup

    log = tmp_path / "order.txt"
    commands = {name: [sys.executable, "-c", f"open({str(log)!r}, 'a').write({name!r})"] for name in ("a", "b", "c")}
    seconds = startup.measure(commands, rounds=3)
    assert log.read_text() == "abc" * 3 and all(len(v) == 3 for v in seconds.values())
    summary = startup.summarise({"import tensorflow": [4.0, 2.0, 3.0], "import affect_zoo": [0.1, 0.3, 0.2],
                                 "import affect_zoo.zoo": [3.5, 3.0, 9.0], "affect-zoo list": [0.9, 0.7, 0.8]})
    assert summary["median_s"]["import tensorflow"] == 3.0
    assert summary["affect_zoo_over_tensorflow"] == pytest.approx(0.2 / 3.0)
    assert summary["zoo_over_tensorflow"] == pytest.approx(3.5 / 3.0) and summary["list_s"] == 0.8
    assert set(startup.cases()) == {"import tensorflow", "import affect_zoo", "import affect_zoo.zoo",
                                    "affect-zoo --help", "affect-zoo list"}


def test_predict_benchmark_medians_and_ratios_over_the_handwritten_pipeline():
    seconds = {"handwritten": [2.0, 1.0, 4.0], "predict": [2.0, 3.0, 2.5], "signature": [1.0, 8.0, 2.0]}
    rates, ratios = predict_benchmark.summary(seconds, 100)
    assert rates == pytest.approx({"handwritten": 50.0, "predict": 40.0, "signature": 50.0})
    assert ratios == pytest.approx({"predict_over_handwritten": 0.8, "signature_over_handwritten": 1.0})
    lines = predict_benchmark.table(rates, ratios).splitlines()
    assert lines[2].split() == ["predict", "40.0", "0.800", ">=", "0.95"]


def test_predict_benchmark_finds_jpegs_recursively_and_says_when_too_few(tmp_path):
    (tmp_path / "joy").mkdir()
    for name in ("joy/2.jpg", "joy/1.JPEG", "a.jpg", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert predict_benchmark.jpeg_paths(tmp_path, 2) == [str(tmp_path / "a.jpg"), str(tmp_path / "joy/1.JPEG")]
    with pytest.raises(ValueError, match=r"3 JPEGs, the benchmark needs --count 200"):
        predict_benchmark.jpeg_paths(tmp_path, 200)
