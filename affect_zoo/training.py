"""The multi-task trainer: a GradientTape train_step over any network with dict outputs, plus strategies and
the callbacks a long run needs (TensorBoard, per-epoch checkpoints, resume after a kill, stop on NaN).

Gradient recalibration needs nothing here: AFI layers built with ``recalibrate=True`` rescale their own backward
pass, so the tape below already yields recalibrated gradients.
"""
import json
import os
import pathlib
import re
import warnings

import keras
import numpy as np
import tensorflow as tf

from affect_zoo import balancing, files
from affect_zoo.models import shared as shared_parameters
from affect_zoo.tasks import as_tasks


@keras.saving.register_keras_serializable(package="affect_zoo")
class MultiTaskModel(keras.Model):
    """Wraps a network whose outputs are a dict keyed by task name and trains all tasks at once.

    Each step computes every task's loss (mean over the replica's batch of per-sample values), asks the balancer
    (``affect_zoo.balancing``) for the gradients, divides them by ``num_replicas_in_sync`` once (the optimizer sums
    gradients over replicas, so the update is that of the global-batch mean) and applies them. Targets are a dict
    keyed by task name; a task missing from a batch's targets is skipped (loss 0) so partially labelled data can
    train.

    The shared parameters the gradient balancers need (GradNorm's W, PCGrad/MGDA/CAGrad's shared variables) are
    the network's declaration (``affect_zoo.models.shared``; the zoo's builders make one) when ``shared_layer`` is
    ``"auto"``; a layer name or list of names overrides it (their variables are shared, W is the kernel of the last
    of them). Logs per step: ``loss``, ``<task>_loss``, each task's metrics, ``weight_<task>`` (the balancer's
    weights) and the statistics of layers that report them (AFI: ``<site>_grad_ratio``, ``<site>_w_self``).
    """

    def __init__(self, network, *, tasks, balancer="fixed", shared_layer="auto", shared=None, **kwargs):
        super().__init__(**kwargs)
        self.network = network
        self.tasks = as_tasks(tasks)
        output_names = set(_output_names(network))
        missing = [t.name for t in self.tasks if t.name not in output_names]
        if missing:
            raise ValueError(f"the network has no output for task(s) {missing}; its outputs: {sorted(output_names)}")
        if isinstance(balancer, dict):
            balancer = keras.saving.deserialize_keras_object(balancer)
        self.balancer = balancing.get(balancer)
        self.balancer.configure(self.tasks)
        self.shared_layer = shared_layer
        if shared_layer != "auto":
            self.shared = shared_parameters.from_layer_names(network, shared_layer)
        elif isinstance(shared, dict):
            self.shared = shared_parameters.SharedParameters.from_config(shared)
        else:
            self.shared = shared or shared_parameters.declared(network)
        self.balancer_variables()  # a balancer the network cannot serve fails here, not in the first step
        self._loss_objects = {t.name: t.loss_object() for t in self.tasks}
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.task_loss_trackers = [keras.metrics.Mean(name=f"{t.name}_loss") for t in self.tasks]
        self.task_metrics = [t.metric_objects() for t in self.tasks]
        # The wrapped network is built already; saying so lets BackupAndRestore restore before the first step.
        self.built = network.built

    def call(self, inputs, training=False):
        return self.network(inputs, training=training)

    def compile(self, *args, **kwargs):
        """keras.Model.compile, then the optimizer is built at once.

        Without a distribution strategy Keras builds it inside the first traced train step, where every slot
        variable becomes a lazily initialised ``cond``: on a ResNet-sized model that adds a minute to the first
        step. Building it here (under the strategy scope the model was made in) avoids that.
        """
        super().compile(*args, **kwargs)
        if self.built and self.optimizer is not None and not self.optimizer.built:
            self.optimizer.build(self.trainable_variables)

    @property
    def metrics(self):
        return [self.loss_tracker, *self.task_loss_trackers, *(m for ms in self.task_metrics for m in ms)]

    def shared_variables(self):
        """Every trainable variable the network declares shared (more than one task's gradient reaches it)."""
        return shared_parameters.shared_variables(self.network, self._declaration("shared variables"))

    def last_shared_kernels(self):
        """GradNorm's W: the kernel(s) of the last shared convolution."""
        spec = self._declaration("last shared convolution")
        if not spec.last_conv:
            raise ValueError(f"{type(self.balancer).__name__} needs the last shared convolution of network "
                             f"{self.network.name!r}; it has none ({spec.reason or 'none declared'}). Use a balancer "
                             "that needs none (fixed, uncertainty, dwa) or pass shared_layer=<layer name>")
        return shared_parameters.last_conv_kernels(self.network, spec)

    def balancer_variables(self):
        """The variables the balancer's ``shared_role`` asks for."""
        role = self.balancer.shared_role
        if role is None:
            return []
        variables = self.last_shared_kernels() if role == "last_conv" else self.shared_variables()
        if not variables:
            raise ValueError(f"{type(self.balancer).__name__} needs shared parameters; network "
                             f"{self.network.name!r} shares none ({self.shared.reason or 'none declared'})")
        return variables

    def _declaration(self, what):
        if self.shared is None:
            raise ValueError(f"{type(self.balancer).__name__} needs the {what} of network {self.network.name!r}, "
                             "which declares none: build it with affect_zoo.models (or "
                             "affect_zoo.models.shared.declare) or pass shared_layer=<layer name(s)>")
        return self.shared

    def _task_losses(self, y, predictions, sample_weight):
        if not isinstance(y, dict):
            raise ValueError(f"targets must be a dict keyed by task name ({[t.name for t in self.tasks]}), "
                             f"got {type(y).__name__}")
        unknown = set(y) - {t.name for t in self.tasks}
        if unknown:
            raise ValueError(f"targets have keys {sorted(unknown)} that are no task of this model")
        values = []
        for task in self.tasks:
            if task.name not in y:
                values.append(tf.constant(0.0))
                continue
            task.check_target(y[task.name])
            weight = sample_weight.get(task.name) if isinstance(sample_weight, dict) else sample_weight
            target, prediction = task.loss_inputs(y[task.name], predictions[task.name])
            per_sample = self._loss_objects[task.name](target, prediction, sample_weight=weight)
            values.append(tf.reduce_mean(tf.cast(per_sample, tf.float32)))
        return values

    def _update_metrics(self, y, predictions, sample_weight, task_losses, total):
        self.loss_tracker.update_state(total)
        for i, task in enumerate(self.tasks):
            if task.name not in y:
                continue
            weight = sample_weight.get(task.name) if isinstance(sample_weight, dict) else sample_weight
            self.task_loss_trackers[i].update_state(task_losses[i])
            for metric in self.task_metrics[i]:
                metric.update_state(y[task.name], predictions[task.name], sample_weight=weight)

    def _site_stats(self):
        """Statistics of the layers that report them (AFI sites), from the objective's backward pass (every
        balancer takes its per-task passes before it)."""
        stats = {}
        for layer in shared_parameters.walk_layers(self.network):
            if hasattr(layer, "training_stats"):
                stats.update({f"{layer.name}_{k}": tf.identity(v) for k, v in layer.training_stats().items()})
        return stats

    def _logs(self, site_stats=None):
        logs = {m.name: m.result() for m in self.metrics}
        weights = self.balancer.task_weights()
        for i, task in enumerate(self.tasks):
            logs[f"weight_{task.name}"] = weights[i]
        logs.update(site_stats or {})
        if _in_multi_worker_mode():
            # Keras 3.15 reduces logs across workers with reduce(MEAN, axis=0), which needs a batch axis.
            logs = {k: tf.reshape(v, [1]) for k, v in logs.items()}
        return logs

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape(persistent=self.balancer.needs_task_gradients) as tape:
            predictions = self(x, training=True)
            per_task = self._task_losses(y, predictions, sample_weight)
            task_losses = tf.stack(per_task)
            regularization = tf.add_n(self.losses) if self.losses else None
            total = self.balancer.combine(task_losses)
            if regularization is not None:
                total = total + regularization
        variables = self.trainable_variables
        gradients = self.balancer.gradients(tape, total, per_task, variables, self.balancer_variables(),
                                            regularization)
        del tape
        site_stats = self._site_stats()
        pairs = [(_divided(g, replicas), v) for g, v in zip(gradients, variables) if g is not None]
        self.optimizer.apply([g for g, _ in pairs], [v for _, v in pairs])
        self.balancer.after_update()
        self._update_metrics(y, predictions, sample_weight, task_losses, total)
        return self._logs(site_stats)

    def test_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        predictions = self(x, training=False)
        task_losses = tf.stack(self._task_losses(y, predictions, sample_weight))
        total = self.balancer.combine(task_losses)
        self._update_metrics(y, predictions, sample_weight, task_losses, total)
        return self._logs()

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        """Keras 3.15 builds from a batch it gets with one ``strategy.reduce`` over the whole (x, y) nest, which
        MultiWorkerMirroredStrategy rejects. Shapes are all the build needs, so take the first replica's values
        leaf by leaf instead (same batch consumed as Keras does)."""
        strategy = self._distribute_strategy
        if strategy is None or iterator is None:
            return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)
        for _, _, it in iterator:
            data_batch = tf.nest.map_structure(
                lambda v: strategy.experimental_local_results(v)[0]
                if isinstance(v, tf.distribute.DistributedValues) else v, next(it))
            break
        with strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    def fit(self, *args, callbacks=None, **kwargs):
        """keras.Model.fit, plus the callback that hands each epoch's task losses to the balancer."""
        callbacks = list(callbacks or [])
        if not any(isinstance(c, BalancerEpochCallback) for c in callbacks):
            callbacks.append(BalancerEpochCallback())
        return super().fit(*args, callbacks=callbacks, **kwargs)

    def get_config(self):
        return {
            "name": self.name,
            "network": keras.saving.serialize_keras_object(self.network),
            "tasks": [t.get_config() for t in self.tasks],
            "balancer": keras.saving.serialize_keras_object(self.balancer),
            "shared_layer": self.shared_layer,
            "shared": self.shared.get_config() if self.shared is not None else None,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        network = keras.saving.deserialize_keras_object(config.pop("network"), custom_objects=custom_objects)
        return cls(network, **config)


class BalancerEpochCallback(keras.callbacks.Callback):
    """Gives the balancer each epoch's mean training task losses (DWA's ratios need them)."""

    def on_epoch_end(self, epoch, logs=None):
        model = self.model
        logs = logs or {}
        names = [f"{t.name}_loss" for t in model.tasks]
        if all(n in logs for n in names):
            model.balancer.end_epoch([float(logs[n]) for n in names])


def _in_multi_worker_mode():
    extended = tf.distribute.get_strategy().extended
    return bool(getattr(extended, "_in_multi_worker_mode", lambda: False)())


def _divided(gradient, replicas):
    """gradient / replicas, keeping a sliced (embedding) gradient sliced."""
    if replicas == 1:
        return gradient
    if isinstance(gradient, tf.IndexedSlices):
        return tf.IndexedSlices(gradient.values / replicas, gradient.indices, gradient.dense_shape)
    return gradient / replicas


def _output_names(network):
    if isinstance(network.output, dict):
        return list(network.output)
    return list(getattr(network, "output_names", []) or [])


STRATEGIES = ("auto", "default", "mirrored", "multiworker")


def make_strategy(name="auto", devices=None):
    """A tf.distribute strategy by name.

    auto: MirroredStrategy when more than one GPU is visible, else the default (single-device) strategy;
    mirrored: MirroredStrategy over ``devices`` (all GPUs, or the CPU, when None); multiworker:
    MultiWorkerMirroredStrategy configured from the ``TF_CONFIG`` environment variable.
    """
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    if name == "auto":
        name = "mirrored" if len(tf.config.list_logical_devices("GPU")) > 1 else "default"
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(devices=devices)
    config = os.environ.get("TF_CONFIG")
    if not config:
        raise ValueError("strategy 'multiworker' needs the TF_CONFIG environment variable "
                         '({"cluster": {"worker": [...]}, "task": {"type": "worker", "index": i}})')
    try:
        json.loads(config)
    except json.JSONDecodeError as error:
        raise ValueError(f"TF_CONFIG is not valid JSON: {error}") from None
    return tf.distribute.MultiWorkerMirroredStrategy()


EPOCH_CHECKPOINT = "epoch_{epoch:03d}.weights.h5"
_EPOCH_CHECKPOINT_RE = re.compile(r"epoch_(\d+)\.weights\.h5")


def standard_callbacks(run_dir, tensorboard=True, checkpoints=True, update_freq="epoch"):
    """Callbacks for a long run in ``run_dir``: resume state after a kill (``backup/``, written every epoch),
    one weights file per finished epoch (``checkpoints/``, chief only), TensorBoard scalars (``logs/``) and
    TerminateOnNaN. A restarted ``fit`` with the same ``run_dir`` continues from the last finished epoch, or, when
    that state is torn, from the newest per-epoch checkpoint that opens. Checkpoints are written atomically after
    a free-space check; a full or read-only disk stops the run with a ``files.DiskError`` naming the file.
    """
    files.check_writable(run_dir)
    checkpoint_dir = os.path.join(run_dir, "checkpoints") if checkpoints else None
    callbacks = [keras.callbacks.TerminateOnNaN(),
                 SafeBackupAndRestore(os.path.join(run_dir, "backup"), checkpoint_dir=checkpoint_dir)]
    if checkpoints and is_chief():
        callbacks.append(EpochCheckpoint(checkpoint_dir))
    if tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(os.path.join(run_dir, "logs"), update_freq=update_freq))
    return callbacks


def weights_bytes(model):
    """Bytes of the variables a weights file of ``model`` holds: its weights and, once built, its optimizer's."""
    variables = list(model.weights)
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and getattr(optimizer, "built", False):
        variables += list(optimizer.variables)
    return sum(int(np.prod(v.shape)) * np.dtype(keras.backend.standardize_dtype(v.dtype)).itemsize
               for v in variables)


def save_weights_atomically(model, path):
    """``model.save_weights(path)`` through ``files.atomic_write``: free space checked first, no torn file."""
    return files.atomic_write(path, lambda temporary: model.save_weights(str(temporary)), weights_bytes(model))


def epoch_checkpoints(directory):
    """``[(epochs finished, path), ...]`` of the per-epoch weights files in ``directory``, oldest first."""
    found = []
    for path in pathlib.Path(directory).glob("epoch_*.weights.h5") if directory else ():
        match = _EPOCH_CHECKPOINT_RE.fullmatch(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


class EpochCheckpoint(keras.callbacks.Callback):
    """The model's weights after every epoch in ``directory/epoch_<N>.weights.h5`` (N counts from 1), written
    atomically (Keras' ModelCheckpoint writes in place, so a kill or a full disk leaves a torn file)."""

    def __init__(self, directory):
        super().__init__()
        self.directory = pathlib.Path(directory)

    def on_epoch_end(self, epoch, logs=None):
        save_weights_atomically(self.model, self.directory / EPOCH_CHECKPOINT.format(epoch=epoch + 1))


class SafeBackupAndRestore(keras.callbacks.BackupAndRestore):
    """Keras' BackupAndRestore (state every epoch, kept after training) with two changes.

    - Its weights and then its metadata are written atomically after a free-space check, the weights first: a
      kill between the two resumes one epoch early, never one epoch late.
    - At the start of ``fit`` it checks the run directory has room for one epoch's backup and checkpoint, and
      a state that does not open (torn ``latest.weights.h5`` or metadata) is reported
      with a warning naming it, and training resumes from the newest file in ``checkpoint_dir`` that opens
      (``epoch_<N>.weights.h5``: N epochs done), skipping torn ones with a warning each. When none opens it
      raises rather than train from partly loaded weights.
    """

    def __init__(self, backup_dir, checkpoint_dir=None):
        super().__init__(backup_dir, save_freq="epoch", delete_checkpoint=False)
        self.checkpoint_dir = checkpoint_dir

    def _save_model(self):
        save_weights_atomically(self.model, self._weights_path)
        files.atomic_write_text(self._training_metadata_path,
                                json.dumps({"epoch": self._current_epoch, "batch": self._last_batch_seen}))

    def on_train_begin(self, logs=None):
        self._restore()
        # Room for one epoch's backup and checkpoint, so a full disk stops the run now rather than after an epoch.
        files.check_free_space(os.path.dirname(os.path.abspath(self.backup_dir)), 2 * weights_bytes(self.model))

    def _restore(self):
        try:
            self._load_model()
            return
        except Exception as error:  # h5py: OSError for a torn file; Keras: ValueError for missing variables
            torn = self._training_metadata_path if isinstance(error, (json.JSONDecodeError, KeyError)) else \
                self._weights_path
            warnings.warn(f"{torn}: the resume state cannot be read ({_first_line(error)}); falling back to the "
                          f"newest per-epoch checkpoint that opens", stacklevel=2)
        optimizer = self.model.optimizer
        if optimizer is not None and not optimizer.built:
            optimizer.build(self.model.trainable_variables)
        for epoch, path in reversed(epoch_checkpoints(self.checkpoint_dir)):
            try:
                self.model.load_weights(str(path))
            except Exception as error:
                warnings.warn(f"{path}: cannot be read ({_first_line(error)}); skipped", stacklevel=2)
                continue
            warnings.warn(f"resuming from {path} ({epoch} epochs done)", stacklevel=2)
            self.model._initial_epoch = epoch
            return
        raise RuntimeError(f"{self.backup_dir}: the resume state is unreadable and no per-epoch checkpoint in "
                           f"{self.checkpoint_dir} opens; start over with another run directory")


def _first_line(error):
    return (str(error).splitlines() or [type(error).__name__])[0][:200]


def is_chief():
    """The process that writes checkpoints: the "chief" task if the cluster has one, else worker 0."""
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    task = config.get("task", {})
    if "chief" in config.get("cluster", {}):
        return task.get("type") == "chief"
    return task.get("index", 0) == 0
