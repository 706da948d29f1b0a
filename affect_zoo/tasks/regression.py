"""Regression: real values per image, one per ``labels`` entry (e.g. valence and arousal). With ``target_range``
the head predicts in label units around the range's middle and the loss is measured in half-ranges, so targets on
different scales weigh alike."""
from affect_zoo.tasks.base import Output, TaskKind, clean_name, register_kind


@register_kind
class Regression(TaskKind):
    name = "regression"
    losses = ("mse", "huber")
    label_outputs = True

    def head(self, task, features, name, initializer):
        if task.target_range is None:
            return super().head(task, features, name, initializer)
        import keras

        z = keras.layers.Dense(task.size, kernel_initializer=initializer, name=f"{name}_linear")(features)
        low, high = task.target_range
        return keras.layers.Rescaling(scale=task.scale, offset=(low + high) / 2.0, name=name)(z)

    def loss_object(self, task):
        import keras

        return {"mse": keras.losses.MeanSquaredError, "huber": keras.losses.Huber}[task.loss](reduction=None)

    def loss_inputs(self, task, target, prediction):
        target, prediction = super().loss_inputs(task, target, prediction)
        if task.scale != 1.0:
            return target / task.scale, prediction / task.scale
        return target, prediction

    def metric_objects(self, task):
        import keras

        return [keras.metrics.MeanAbsoluteError(name=f"{task.name}_mae")]

    def outputs(self, task):
        if not task.labels:
            return [Output(clean_name(task.name), "float32", f"(batch, {task.size})", "predicted values")]
        span = f" on {task.target_range[0]:g}-{task.target_range[1]:g}" if task.target_range else ""
        return [Output(clean_name(label), "float32", "(batch,)", f"predicted {label}{span}") for label in task.labels]

    def output_values(self, task, y, ops, readable=False):
        names = [o.name for o in self.outputs(task)]
        if not task.labels:
            return {names[0]: y}
        return {name: y[:, i] for i, name in enumerate(names)}

    def decode(self, task, values):
        import numpy as np

        return np.stack(values, axis=-1) if task.labels else values[0]

    def decoded_outputs(self, task, outputs):
        return outputs if task.labels else outputs[:1]

    def test_metrics(self, task, prediction, target):
        from affect_zoo import metrics

        p, t = prediction.reshape(len(prediction), -1), target.reshape(len(target), -1)
        return {label: {"mae": float(metrics.mae(t[:, i], p[:, i])),
                        "pearson_r": float(metrics.pearson_r(t[:, i], p[:, i]))}
                for i, label in enumerate(task.labels or [task.name])}
