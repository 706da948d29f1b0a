"""Grad-CAM explanations (Selvaraju et al., ICCV 2017) of a zoo network's outputs, one heat map per task.

For a target feature map A (h × w × C) and a scalar output y, Grad-CAM weighs each channel by its mean gradient,
α_c = mean_{i,j} ∂y/∂A_ijc, and keeps the positive evidence: L = ReLU(Σ_c α_c A_c), bilinearly resized to the input
and divided by its maximum (a map with no positive evidence stays all zeros).

Where A is taken (as the AFI paper's visualisation does): for an ``afi`` network, the output of the last AFI
module on the task's branch; for the other architectures, the last conv feature map of the task's branch (the
input of its global pooling, ``a_pool`` / ``e_pool`` / ``shared_pool``). ``layer=`` names another layer (its
4-D output; for a two-branch layer, the task's branch).

Which scalar y: classification / distribution / multilabel — the probability of one class (by default the
predicted one, per image); regression — one label's value (by default the first, e.g. valence); binary — the
probability. Its sign matters: for regression, the map shows what raises the value.
"""
import keras
import numpy as np
import tensorflow as tf

from affect_zoo import zoo
from affect_zoo.data import resize_for_model
from affect_zoo.tasks import as_tasks

_POOLS = {0: ("a_pool", "shared_pool"), 1: ("e_pool", "shared_pool")}


def target_tensor(network, task, layer=None):
    """(symbolic tensor, description) of the feature map Grad-CAM differentiates for ``task``."""
    if layer is not None:
        output = network.get_layer(layer).output
        if isinstance(output, (list, tuple)):
            output = output[task.branch]
        if len(output.shape) != 4:
            raise ValueError(f"layer {layer!r} outputs shape {tuple(output.shape)}; Grad-CAM needs a 4-D feature map")
        return output, layer
    names = {l.name for l in network.layers}
    sites = sorted((l for l in network.layers if l.name.startswith("interaction_")),
                   key=lambda l: int(l.name.rsplit("_", 1)[1]))
    if sites and type(sites[-1]).__name__ == "AdaptiveFeatureInteraction":
        return sites[-1].output[task.branch], f"{sites[-1].name}[{task.branch}]"
    for pool in _POOLS[task.branch]:
        if pool in names:
            return network.get_layer(pool).input, f"{pool} input"
    raise ValueError(f"{network.name}: no AFI module or branch pooling layer ({', '.join(_POOLS[task.branch])}) "
                     f"to explain task {task.name!r} at; pass layer=<name of a 4-D feature map>")


def _select(task, prediction, output):
    """Index into the task's output vector per image, and its name."""
    labels = list(task.labels or [])
    if isinstance(output, str):
        if output not in labels:
            raise ValueError(f"task {task.name!r} has no output {output!r}; its labels: {labels or 'none'}")
        index = np.full(len(prediction), labels.index(output))
    elif output is not None:
        if not 0 <= int(output) < task.size:
            raise ValueError(f"task {task.name!r}: output index {output} out of range 0..{task.size - 1}")
        index = np.full(len(prediction), int(output))
    elif task.handler.label_probabilities:
        index = np.argmax(np.asarray(prediction).reshape(len(prediction), -1), axis=-1)
    else:
        index = np.zeros(len(prediction), int)
    names = [labels[i] if i < len(labels) else str(i) for i in index]
    return index.astype(np.int32), names


def gradcam(network, images, task, output=None, layer=None):
    """Grad-CAM of one task for a batch of images already at the network's input size (RGB, 0–255).

    Returns {"heatmaps": (N, H, W) float32 in [0, 1], "output": the explained output per image,
    "score": its value per image, "layer": where A was taken}.
    """
    task = as_tasks([task])[0] if not hasattr(task, "kind") else task
    tensor, where = target_tensor(network, task, layer)
    probe = keras.Model(network.inputs, [tensor, network.output[task.name]])
    x = tf.convert_to_tensor(np.asarray(images, np.float32))
    with tf.GradientTape() as tape:
        features, prediction = probe(x, training=False)
        flat = tf.reshape(prediction, [tf.shape(prediction)[0], -1])
        index, names = _select(task, flat.numpy(), output)
        score = tf.gather(flat, index, axis=1, batch_dims=1)
    grads = tape.gradient(score, features)
    alpha = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(alpha * features, axis=-1, keepdims=True))
    cam = tf.image.resize(cam, tf.shape(x)[1:3], method="bilinear")[..., 0]
    peak = tf.reduce_max(cam, axis=(1, 2), keepdims=True)
    cam = tf.math.divide_no_nan(cam, peak)
    return {"heatmaps": cam.numpy().astype(np.float32), "output": names, "score": score.numpy(), "layer": where}


def explain(model_or_name, images, task=None, output=None, layer=None):
    """Grad-CAM heat maps of a zoo model (or entry name) for every task, or one ``task``.

    images: RGB arrays (N, H, W, 3) or one (H, W, 3), 0–255, any size (resized to the model's input as
    ``predict`` does). Returns {task name: gradcam(...) result}.
    """
    model = zoo.load(model_or_name) if isinstance(model_or_name, str) else model_or_name
    network = getattr(model, "network", model)
    tasks = list(getattr(model, "tasks", None) or [])
    if not tasks:
        raise ValueError("explain needs a zoo model (affect_zoo.load) or a MultiTaskModel: it reads the tasks")
    if task is not None:
        tasks = [t for t in tasks if t.name == task]
        if not tasks:
            raise ValueError(f"no task {task!r}; the model's tasks: {', '.join(t.name for t in model.tasks)}")
    batch = np.asarray(images, np.float32)
    batch = batch[None] if batch.ndim == 3 else batch
    size = tuple(network.input_shape[1:3])
    batch = np.asarray(resize_for_model(batch, size), np.float32)
    return {t.name: gradcam(network, batch, t, output if task is not None else None, layer) for t in tasks}


def overlay(image, heatmap, alpha=0.45, colormap="jet"):
    """An RGB uint8 picture of ``heatmap`` (H, W in [0, 1]) coloured by a matplotlib colormap over ``image``
    (H, W, 3, 0–255): what ``affect-zoo gradcam`` writes and TensorBoard shows."""
    from matplotlib import colormaps  # only pictures need matplotlib

    colours = colormaps[colormap](np.clip(np.asarray(heatmap, np.float32), 0, 1))[..., :3] * 255.0
    mixed = (1 - alpha) * np.asarray(image, np.float32) + alpha * colours
    return np.clip(np.round(mixed), 0, 255).astype(np.uint8)


def overlays(model_or_name, images, task=None, output=None):
    """Grad-CAM overlays of images of any sizes (a list of RGB arrays, 0–255), each resized to the network's
    input as ``predict`` does: {task name: explain(...)'s result plus "overlays", (N, h, w, 3) uint8 at that
    size}. What ``affect-zoo gradcam`` writes and the rank report shows."""
    model = zoo.load(model_or_name) if isinstance(model_or_name, str) else model_or_name
    size = tuple(getattr(model, "network", model).input_shape[1:3])
    batch = np.stack([np.asarray(resize_for_model(np.asarray(image, np.float32), size)) for image in images])
    results = explain(model, batch, task=task, output=output)
    for result in results.values():
        result["overlays"] = np.stack([overlay(image, heat) for image, heat in zip(batch, result["heatmaps"])])
    return results


class GradCamLogger(keras.callbacks.Callback):
    """Logs Grad-CAM overlays of a fixed set of images (e.g. a few validation images) to TensorBoard after
    every ``every`` epochs, one image summary per task (``gradcam/<task>``), so a run shows where each task
    looks as it trains."""

    def __init__(self, images, log_dir, every=1, max_images=4):
        super().__init__()
        self.images = np.asarray(images, np.float32)[:max_images]
        self.log_dir, self.every = str(log_dir), int(every)
        self._writer = None

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every:
            return
        network = getattr(self.model, "network", self.model)
        batch = np.asarray(resize_for_model(self.images, tuple(network.input_shape[1:3])), np.float32)
        self._writer = self._writer or tf.summary.create_file_writer(self.log_dir)
        with self._writer.as_default():
            for task in self.model.tasks:
                maps = gradcam(network, batch, task)["heatmaps"]
                pictures = np.stack([overlay(image, heat) for image, heat in zip(batch, maps)])
                tf.summary.image(f"gradcam/{task.name}", pictures, step=epoch + 1, max_outputs=len(pictures))
        self._writer.flush()
