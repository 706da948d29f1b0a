"""Trains a tiny two-task model; run as a subprocess by the distribution and resume tests.

usage: train_tiny.py MODE OUT [--epochs N] [--run-dir D] [--kill-at EPOCH] [--balancer NAME] [--network afi]
MODE: single | mirrored-compare | worker. --network afi: two conv branches joined by an AFI site (its hand-written
backward pass, no recalibration) instead of one shared conv. Writes the final weights to OUT (npz) and, with --run-dir, the epochs
it ran to OUT + ".epochs".
"""
import argparse
import os
import signal
import sys

parser = argparse.ArgumentParser()
parser.add_argument("mode")
parser.add_argument("out")
parser.add_argument("--epochs", type=int, default=1)
parser.add_argument("--run-dir")
parser.add_argument("--kill-at", type=int)
parser.add_argument("--balancer", default="uncertainty")
parser.add_argument("--network", choices=["conv", "afi"], default="conv")
args = parser.parse_args()

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

if args.mode == "mirrored-compare":
    tf.config.set_logical_device_configuration(
        tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402

from affect_zoo.layers import AdaptiveFeatureInteraction  # noqa: E402
from affect_zoo.tasks import Task  # noqa: E402
from affect_zoo.training import MultiTaskModel, make_strategy, standard_callbacks  # noqa: E402

TASKS = [Task("emotion", "distribution", 7), Task("va", "regression", 2, target_range=(1, 9))]


def data():
    rng = np.random.default_rng(7)
    x = rng.uniform(0, 1, (64, 8, 8, 3)).astype("float32")
    d = rng.dirichlet(np.ones(7), 64).astype("float32")
    va = rng.uniform(1, 9, (64, 2)).astype("float32")
    return x, {"emotion": d, "va": va}


def build(balancer):
    keras.utils.set_random_seed(1)
    inputs = keras.Input((8, 8, 3))
    if args.network == "afi":
        branches = [keras.layers.Conv2D(4, 3, activation="relu", name=f"conv_{b}")(inputs) for b in "ae"]
        branches = AdaptiveFeatureInteraction(reduction=2, name="afi")(branches)
        pooled = [keras.layers.GlobalAveragePooling2D()(h) for h in branches]
        outputs = {"va": TASKS[1].head(pooled[0]), "emotion": TASKS[0].head(pooled[1])}
        model = MultiTaskModel(keras.Model(inputs, outputs), tasks=TASKS, balancer=balancer)
        model.compile(optimizer=keras.optimizers.SGD(0.1))
        return model
    h = keras.layers.Conv2D(4, 3, activation="relu", name="shared_conv")(inputs)
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = MultiTaskModel(keras.Model(inputs, {t.name: t.head(h) for t in TASKS}), tasks=TASKS,
                           balancer=balancer, shared_layer="shared_conv")
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    return model


def dataset(global_batch):
    x, y = data()
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(global_batch, drop_remainder=True)


def fit(strategy, epochs, callbacks=()):
    with strategy.scope():
        model = build(args.balancer)
    model.fit(dataset(8), epochs=epochs, verbose=0, shuffle=False, callbacks=list(callbacks))
    return model


def weights(model):
    """Weights by position (two models in one process get distinct auto-generated layer names)."""
    return {f"{i:02d}_{v.name}": v.numpy() for i, v in enumerate(model.weights)}


class EpochLog(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        with open(args.out + ".epochs", "a") as f:
            f.write(f"{epoch}\n")
        if args.kill_at is not None and epoch == args.kill_at:
            self.kill = True

    def on_train_batch_end(self, batch, logs=None):
        if getattr(self, "kill", False) and batch == 2:
            os.kill(os.getpid(), signal.SIGKILL)


if args.mode == "single":
    callbacks = [EpochLog(), *standard_callbacks(args.run_dir)] if args.run_dir else []
    model = fit(make_strategy("default"), args.epochs, callbacks)
    np.savez(args.out, **weights(model))
elif args.mode == "mirrored-compare":
    initial = weights(build(args.balancer))
    single = weights(fit(make_strategy("default"), args.epochs))
    cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
    mirrored_strategy = make_strategy("mirrored", devices=cpus)
    assert mirrored_strategy.num_replicas_in_sync == 2, cpus
    mirrored = weights(fit(mirrored_strategy, args.epochs))
    np.savez(args.out, **{"single/" + k: v for k, v in single.items()},
             **{"mirrored/" + k: v for k, v in mirrored.items()}, **{"initial/" + k: v for k, v in initial.items()})
elif args.mode == "worker":
    strategy = make_strategy("multiworker")
    model = fit(strategy, args.epochs)
    np.savez(args.out, **weights(model))
else:
    sys.exit(f"unknown mode {args.mode}")
