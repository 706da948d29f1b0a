"""Multilabel: a multi-hot vector per image (e.g. VOC2007's 20 objects), independent sigmoids, BCE (or BCE that
skips entries marked -1, "ignored"), mAP (exact and VOC2007's 11-point)."""
import numpy as np

from affect_zoo.tasks.base import Output, TaskKind, clean_name, register_kind


@register_kind
class Multilabel(TaskKind):
    name = "multilabel"
    losses = ("bce", "masked_bce")
    activation = "sigmoid"
    label_probabilities = True
    ignorable = True

    def loss_object(self, task):
        import keras

        from affect_zoo import metrics_multilabel

        if task.loss == "masked_bce":
            return metrics_multilabel.MaskedBinaryCrossentropy(reduction=None)
        return keras.losses.BinaryCrossentropy(reduction=None)

    def metric_objects(self, task):
        import keras

        from affect_zoo import metrics_multilabel

        mean_ap = metrics_multilabel.MeanAveragePrecision(task.size, name=f"{task.name}_map")
        if task.loss == "masked_bce":  # AUC would count the -1 (ignored) targets as negatives
            return [mean_ap]
        return [mean_ap, keras.metrics.AUC(multi_label=True, num_labels=task.size, name=f"{task.name}_auc")]

    def encode_target(self, task, values):
        import tensorflow as tf

        if len(values) == 1 and values[0].shape.rank == 0 and values[0].dtype.is_integer and task.size > 1:
            return tf.one_hot(values[0], task.size, dtype=tf.float32)
        return super().encode_target(task, values)

    def outputs(self, task):
        names = ", ".join(task.labels) if task.labels else ""
        return [Output(f"{clean_name(task.name)}_probs", "float32", f"(batch, {task.size})",
                       "independent probabilities" + (f" over {names}" if names else ""))]

    def output_values(self, task, y, ops, readable=False):
        return {self.outputs(task)[0].name: y}

    def test_metrics(self, task, prediction, target):
        from affect_zoo import metrics_multilabel

        return {task.name: {
            "map": float(metrics_multilabel.mean_average_precision(target, prediction)),
            "map_11point": float(metrics_multilabel.mean_average_precision(target, prediction, method="11point"))}}

    def constant_prediction(self, task, train_targets):
        from affect_zoo.metrics_multilabel import IGNORE

        seen = train_targets != IGNORE
        return (train_targets == 1).sum(axis=0) / np.maximum(seen.sum(axis=0), 1)
