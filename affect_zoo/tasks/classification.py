"""Classification: an integer label per image, softmax over ``size`` classes, cross-entropy, accuracy."""
import numpy as np

from affect_zoo.tasks.base import CategoricalKind, register_kind


@register_kind
class Classification(CategoricalKind):
    name = "classification"
    losses = ("crossentropy",)

    def validate(self, task):
        if task.size < 2:
            raise ValueError(f"task {task.name!r}: a classification task needs size >= 2, got {task.size}")

    def loss_object(self, task):
        import keras

        return keras.losses.SparseCategoricalCrossentropy(reduction=None)

    def loss_inputs(self, task, target, prediction):
        import tensorflow as tf

        return tf.cast(target, tf.int32), prediction

    def metric_objects(self, task):
        import keras

        return [keras.metrics.SparseCategoricalAccuracy(name=f"{task.name}_accuracy")]

    def example_shape(self, task):
        return ()

    def expected_batch(self, task):
        return "(batch,) integer labels"

    def fits_batch(self, task, shape):
        return len(shape) == 1 or (len(shape) == 2 and shape[-1] in (1, None))

    def encode_target(self, task, values):
        import tensorflow as tf

        return tf.cast(values[0] if len(values) == 1 else tf.stack(values), tf.int32)

    def test_metrics(self, task, prediction, target):
        hits = np.argmax(prediction, -1) == target.reshape(-1)
        return {task.name: {"accuracy": float(hits.mean()) if len(hits) else float("nan"),
                            "samples": int(len(hits))}}

    def constant_prediction(self, task, train_targets):
        counts = np.bincount(np.asarray(train_targets).reshape(-1).astype(int), minlength=task.size)
        return counts / max(counts.sum(), 1)
