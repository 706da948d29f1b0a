"""Binary: a 0/1 target per image, one sigmoid, binary cross-entropy, accuracy at 0.5."""
import numpy as np

from affect_zoo.tasks.base import Output, TaskKind, clean_name, register_kind


@register_kind
class Binary(TaskKind):
    name = "binary"
    losses = ("bce",)
    activation = "sigmoid"

    def validate(self, task):
        if task.size != 1:
            raise ValueError(f"task {task.name!r}: a binary task has size 1, got {task.size}")

    def loss_object(self, task):
        import keras

        return keras.losses.BinaryCrossentropy(reduction=None)

    def metric_objects(self, task):
        import keras

        return [keras.metrics.BinaryAccuracy(name=f"{task.name}_accuracy")]

    def outputs(self, task):
        return [Output(f"{clean_name(task.name)}_prob", "float32", "(batch,)", "probability of the positive class")]

    def output_values(self, task, y, ops, readable=False):
        return {self.outputs(task)[0].name: ops.flat(y)}

    def decode(self, task, values):
        return values[0].reshape(-1, 1)

    def test_metrics(self, task, prediction, target):
        hits = (prediction.reshape(-1) > 0.5) == (target.reshape(-1) > 0.5)
        return {task.name: {"accuracy": float(np.mean(hits))}}
