"""MultiTaskModel: losses and updates against independent computations, save/load, distribution and resume."""
import json
import os
import pathlib
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from affect_zoo.tasks import Task
from affect_zoo.training import MultiTaskModel, make_strategy

SCRIPT = pathlib.Path(__file__).parent / "scripts" / "train_tiny.py"
TASKS = [Task("emotion", "distribution", 7), Task("va", "regression", 2, target_range=(1, 9))]


def tiny(balancer="fixed", tasks=TASKS):
    keras.utils.set_random_seed(3)
    inputs = keras.Input((5,))
    h = keras.layers.Dense(6, activation="tanh", name="shared_dense")(inputs)
    model = MultiTaskModel(keras.Model(inputs, {t.name: t.head(h) for t in tasks}), tasks=tasks, balancer=balancer,
                           shared_layer="shared_dense")
    model.compile(optimizer=keras.optimizers.SGD(0.5))
    return model


def batch(n=6, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, 5)).astype("float32"),
            {"emotion": rng.dirichlet(np.ones(7), n).astype("float32"),
             "va": rng.uniform(1, 9, (n, 2)).astype("float32")})


def numpy_task_losses(model, x, y):
    out = model.predict(x, verbose=0)
    d, p = y["emotion"], np.clip(out["emotion"], 1e-7, 1)
    kl = np.mean(np.sum(np.where(d > 0, d * np.log(np.maximum(d, 1e-7) / p), 0), axis=1))
    mse = np.mean(((y["va"] - out["va"]) / 4.0) ** 2)  # half the range 1–9
    return np.array([kl, mse])


def test_evaluate_reports_each_task_loss_as_the_formula_gives_it():
    model = tiny()
    x, y = batch()
    logs = model.evaluate(x, y, return_dict=True, verbose=0)
    expected = numpy_task_losses(model, x, y)
    assert logs["emotion_loss"] == pytest.approx(expected[0], rel=1e-4)
    assert logs["va_loss"] == pytest.approx(expected[1], rel=1e-4)
    assert logs["loss"] == pytest.approx(expected.sum(), rel=1e-4)
    assert {"emotion_kl", "emotion_cosine", "emotion_top1", "va_mae", "weight_va"} <= set(logs)


def test_train_step_applies_the_gradient_of_the_balanced_loss():
    model = tiny(balancer=keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(__import__("affect_zoo").balancing.FixedWeights([0.3, 2.0]))))
    x, y = batch()
    before = [v.numpy() for v in model.network.trainable_variables]
    with tf.GradientTape() as tape:
        out = model.network(x, training=True)
        d = tf.constant(y["emotion"])
        kl = tf.reduce_mean(tf.reduce_sum(d * tf.math.log(d / tf.clip_by_value(out["emotion"], 1e-7, 1)), 1))
        mse = tf.reduce_mean(((y["va"] - out["va"]) / 4.0) ** 2)
        loss = 0.3 * kl + 2.0 * mse
    grads = tape.gradient(loss, model.network.trainable_variables)
    model.train_on_batch(x, y)
    for b, g, v in zip(before, grads, model.network.trainable_variables):
        np.testing.assert_allclose(v.numpy(), b - 0.5 * g.numpy(), atol=1e-5)


def tape_task_losses(model, x, y):
    """The two task losses of ``numpy_task_losses``, written in TensorFlow so they can be differentiated."""
    out = model.network(x, training=True)
    d = tf.constant(y["emotion"])
    kl = tf.reduce_mean(tf.reduce_sum(d * tf.math.log(d / tf.clip_by_value(out["emotion"], 1e-7, 1)), 1))
    return kl, tf.reduce_mean(((y["va"] - out["va"]) / 4.0) ** 2)


def test_train_step_applies_the_mgda_direction_on_the_shared_layer_only():
    """Sener & Koltun 2018: the shared layer moves along γ g1 + (1 − γ) g2 with
    γ = clip(((g2 − g1)·g2) / ‖g1 − g2‖², 0, 1) (g_k: task k's gradient on it); each head along its own task's."""
    model = tiny(balancer="mgda")
    x, y = batch()
    shared = model.network.get_layer("shared_dense").trainable_variables
    variables = model.network.trainable_variables
    is_shared = [any(v is s for s in shared) for v in variables]
    before = [v.numpy() for v in variables]
    with tf.GradientTape(persistent=True) as tape:
        losses = tape_task_losses(model, x, y)
        total = losses[0] + losses[1]
    g1, g2 = (np.concatenate([g.numpy().ravel() for g in tape.gradient(loss, shared)]) for loss in losses)
    gamma = np.clip((g2 - g1) @ g2 / np.sum((g1 - g2) ** 2), 0, 1)
    assert 0 < gamma < 1
    direction = gamma * g1 + (1 - gamma) * g2
    own = tape.gradient(total, variables)
    model.train_on_batch(x, y)
    moved = np.concatenate([(b - v.numpy()).ravel() for b, v, s in zip(before, variables, is_shared) if s])
    np.testing.assert_allclose(moved, 0.5 * direction, atol=1e-5)
    for b, g, v, s in zip(before, own, variables, is_shared):
        if not s:
            np.testing.assert_allclose(v.numpy(), b - 0.5 * g.numpy(), atol=1e-5)


def test_gradient_surgery_balancers_fit_and_round_trip(tmp_path):
    x, y = batch(32)
    for balancer in ("pcgrad", "mgda", "cagrad"):
        model = tiny(balancer=balancer)
        history = model.fit(x, y, epochs=2, batch_size=8, verbose=0)
        assert np.isfinite(history.history["loss"]).all(), balancer
        assert history.history["loss"][-1] < history.history["loss"][0], balancer
        if balancer == "pcgrad":
            assert int(model.balancer.step.numpy()) == 8  # 2 epochs of 4 steps: one task order per step
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert type(loaded.balancer).__name__ == "CAGrad" and loaded.balancer.c == 0.5
    assert [v.path for v in loaded.shared_variables()] == ["shared_dense/kernel", "shared_dense/bias"]


def test_missing_task_in_targets_contributes_no_loss():
    model = tiny()
    x, y = batch()
    logs = model.evaluate(x, {"va": y["va"]}, return_dict=True, verbose=0)
    assert logs["loss"] == pytest.approx(numpy_task_losses(model, x, y)[1], rel=1e-4)


def test_fit_predict_save_load_round_trip(tmp_path):
    model = tiny(balancer="uncertainty")
    x, y = batch(32)
    history = model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    for name, value in model.predict(x, verbose=0).items():
        np.testing.assert_allclose(loaded.predict(x, verbose=0)[name], value, atol=1e-6)
    np.testing.assert_allclose(loaded.balancer.log_variance.numpy(), model.balancer.log_variance.numpy())
    assert [t.name for t in loaded.tasks] == ["emotion", "va"]


def test_gradnorm_and_dwa_train(tmp_path):
    for balancer in ("gradnorm", "dwa"):
        model = tiny(balancer=balancer)
        x, y = batch(32)
        history = model.fit(x, y, epochs=3, batch_size=8, verbose=0)
        weights = np.array([history.history["weight_emotion"][-1], history.history["weight_va"][-1]])
        assert np.isfinite(history.history["loss"]).all()
        assert weights.sum() == pytest.approx(2.0, rel=1e-4)
        assert not np.allclose(weights, 1.0)


def test_bad_targets_and_networks_give_one_line_errors():
    model = tiny()
    x, y = batch()
    with pytest.raises(ValueError, match=r"targets\['va'\] has shape \(6, 3\)"):
        model.train_on_batch(x, {**y, "va": np.ones((6, 3), "float32")})
    with pytest.raises(ValueError, match="no task of this model"):
        model.train_on_batch(x, {**y, "valence": y["va"]})
    inputs = keras.Input((5,))
    with pytest.raises(ValueError, match=r"no output for task\(s\) \['va'\]"):
        MultiTaskModel(keras.Model(inputs, {"emotion": keras.layers.Dense(7)(inputs)}), tasks=TASKS)
    with pytest.raises(ValueError, match="unknown kind 'ordinal'"):
        Task("x", "ordinal", 3)
    with pytest.raises(ValueError, match="unknown strategy 'tpu'"):
        make_strategy("tpu")


def test_gradient_balancers_need_a_declared_or_named_shared_part():
    inputs = keras.Input((5,))
    h = keras.layers.Dense(6, name="trunk")(inputs)
    network = keras.Model(inputs, {t.name: t.head(h) for t in TASKS})
    with pytest.raises(ValueError, match="GradNorm needs the last shared convolution of network .* declares none"):
        MultiTaskModel(network, tasks=TASKS, balancer="gradnorm")
    with pytest.raises(ValueError, match=r"shared layer\(s\) \['trunc'\] are not layers"):
        MultiTaskModel(network, tasks=TASKS, balancer="cagrad", shared_layer="trunc")
    model = MultiTaskModel(network, tasks=TASKS, balancer="gradnorm", shared_layer="trunk")
    assert [v.path for v in model.balancer_variables()] == ["trunk/kernel"]


def run_script(*args, env=None, check=True, timeout=600):
    result = subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True,
                            env={**os.environ, **(env or {})}, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{args} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result


@pytest.mark.slow
def test_mirrored_on_two_cpus_matches_single_device(tmp_path):
    out = tmp_path / "w.npz"
    run_script("mirrored-compare", out, "--epochs", 1)
    weights = np.load(out)
    names = sorted(k[len("single/"):] for k in weights.files if k.startswith("single/"))
    assert names and all("mirrored/" + n in weights.files for n in names)
    for n in names:
        np.testing.assert_allclose(weights["mirrored/" + n], weights["single/" + n], atol=1e-5, err_msg=n)
    assert any(not np.allclose(weights["single/" + n], 0) for n in names)


@pytest.mark.slow
def test_afi_backward_pass_under_mirrored_matches_single_device(tmp_path):
    """The AFI site's hand-written backward pass (a tape inside a custom gradient) under two replicas: the summed
    replica gradients give the single-device weights. ``grad_ratio`` is left out: a logged statistic, each
    replica's ‖g_AFI‖/‖g_SC‖ of its half batch, averaged (norms do not add over replicas)."""
    out = tmp_path / "w.npz"
    run_script("mirrored-compare", out, "--epochs", 1, "--network", "afi")
    weights = np.load(out)
    names = sorted(k[len("single/"):] for k in weights.files if k.startswith("single/") and "grad_ratio" not in k)
    afi = [n for n in names if n.endswith(("_kernel", "_u", "_v")) and ("max_" in n or "avg_" in n)]
    assert len(afi) == 6 and all("mirrored/" + n in weights.files for n in names)
    for n in afi:  # the site's own weights trained, so the comparison below means something
        assert np.abs(weights["single/" + n] - weights["initial/" + n]).max() > 1e-5, n
    for n in names:
        np.testing.assert_allclose(weights["mirrored/" + n], weights["single/" + n], atol=1e-5, err_msg=n)


@pytest.mark.slow
@pytest.mark.parametrize("balancer", ["gradnorm", "pcgrad"])
def test_gradient_balancers_run_mirrored_close_to_single_device(tmp_path, balancer):
    """Graph-safe under replicas: GradNorm's weights and PCGrad's step counter are first-replica variables. The
    per-replica G_k / surgery is not that of the global batch, so the network's weights agree only approximately;
    GradNorm's own are only checked to sum to K (L_grad's gradient is a sign, flipped by tiny differences, and
    L_k(0) is the first replica's shard loss)."""
    out = tmp_path / "w.npz"
    run_script("mirrored-compare", out, "--epochs", 1, "--balancer", balancer)
    weights = np.load(out)
    own = ("weights", "initial_losses", "step")
    names = sorted(k[len("single/"):] for k in weights.files if k.startswith("single/"))
    network = [n for n in names if not n.endswith(own)]
    assert len(network) == 6, names  # conv kernel and bias, two heads' kernel and bias
    for n in network:
        np.testing.assert_allclose(weights["mirrored/" + n], weights["single/" + n], atol=1e-3, err_msg=n)
    for n in names:
        if n.endswith("_weights"):
            assert weights["mirrored/" + n].sum() == pytest.approx(2.0, rel=1e-5)
        if n.endswith("_step"):
            assert weights["mirrored/" + n] == weights["single/" + n] == 8  # one task order per step


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
def test_two_worker_multiworker_fit_on_loopback_agrees(tmp_path):
    workers = [f"127.0.0.1:{p}" for p in free_ports(2)]
    procs = []
    for i in range(2):
        config = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}})
        procs.append(subprocess.Popen([sys.executable, str(SCRIPT), "worker", str(tmp_path / f"w{i}.npz")],
                                      env={**os.environ, "TF_CONFIG": config}, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    try:
        errors = [p.communicate(timeout=300)[1] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, err in zip(procs, errors):
        assert p.returncode == 0, err[-3000:]
    a, b = np.load(tmp_path / "w0.npz"), np.load(tmp_path / "w1.npz")
    assert a.files == b.files
    for k in a.files:
        np.testing.assert_allclose(a[k], b[k], atol=1e-6, err_msg=k)


@pytest.mark.slow
def test_sigkill_mid_epoch_resumes_from_last_finished_epoch(tmp_path):
    out, run_dir = tmp_path / "w.npz", tmp_path / "run"
    killed = run_script("single", out, "--epochs", 4, "--run-dir", run_dir, "--kill-at", 2, check=False)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert not out.exists()
    run_script("single", out, "--epochs", 4, "--run-dir", run_dir)
    epochs = [int(e) for e in (tmp_path / "w.npz.epochs").read_text().split()]
    assert epochs == [0, 1, 2, 2, 3]  # killed during epoch 2, restarted at epoch 2, not 0
    assert sorted(os.listdir(run_dir / "checkpoints"))[-1] == "epoch_004.weights.h5"
    assert any(f.startswith("events") for _, _, fs in os.walk(run_dir / "logs") for f in fs)


def test_tensorboard_gets_task_losses_metrics_and_balancer_weights(tmp_path):
    from affect_zoo.training import standard_callbacks

    model = tiny(balancer="dwa")
    x, y = batch(16)
    model.fit(x, y, epochs=3, batch_size=8, verbose=0, callbacks=standard_callbacks(str(tmp_path)))
    values = {}
    for path in (tmp_path / "logs" / "train").glob("events*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                values.setdefault(value.tag, []).append(float(tf.make_ndarray(value.tensor)))
    for tag in ("epoch_loss", "epoch_emotion_loss", "epoch_va_loss", "epoch_emotion_kl", "epoch_va_mae",
                "epoch_weight_emotion", "epoch_weight_va"):
        assert len(values.get(tag, [])) == 3, (tag, sorted(values))
    assert values["epoch_weight_va"][:2] == [1.0, 1.0] and values["epoch_weight_va"][2] != 1.0  # DWA's 3rd epoch
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "epoch_001.weights.h5", "epoch_002.weights.h5", "epoch_003.weights.h5"]
