"""Distribution: a probability vector per image (label distribution learning), KL or the circular emotion loss;
with an emotion circle the head is ``CircularEmotionHead`` and the outputs add the emotion vector's polarity,
angle and intensity."""
from affect_zoo.emotion import emotion_vector, get_circle
from affect_zoo.tasks.base import CategoricalKind, Output, clean_name, register_kind


@register_kind
class Distribution(CategoricalKind):
    name = "distribution"
    losses = ("kl", "circular")

    def validate(self, task):
        if task.loss == "circular" and task.circle is None:
            raise ValueError(f"task {task.name!r}: loss 'circular' needs a circle (e.g. circle='mikels8')")

    def head(self, task, features, name, initializer):
        if task.circle is None:
            return super().head(task, features, name, initializer)
        import keras

        from affect_zoo.layers.circle_head import CircularEmotionHead

        out = CircularEmotionHead(task.circle, kernel_initializer=initializer,
                                  name=f"{name}_circle_head")(features)["distribution"]
        return keras.layers.Identity(name=name)(out)

    def loss_object(self, task):
        from affect_zoo import losses

        if task.loss == "circular":
            return losses.CircularEmotionLoss(mu=task.mu, circle=task.circle, reduction=None)
        return losses.KLDivergenceLoss(reduction=None)

    def metric_objects(self, task):
        from affect_zoo import metrics

        p = f"{task.name}_"
        return [metrics.KLDivergence(name=p + "kl"), metrics.Cosine(name=p + "cosine"),
                metrics.Intersection(name=p + "intersection"), metrics.Top1Accuracy(name=p + "top1")]

    def encode_target(self, task, values):
        import tensorflow as tf

        if len(values) == 1 and values[0].shape.rank == 0 and values[0].dtype.is_integer and task.size > 1:
            return tf.one_hot(values[0], task.size, dtype=tf.float32)  # a single label as a one-hot distribution
        return super().encode_target(task, values)

    def outputs(self, task):
        items = super().outputs(task)
        if task.circle is not None:
            base = clean_name(task.name)
            items += [Output(f"{base}_polarity", "float32", "(batch,)", "+1 positive / -1 negative emotion"),
                      Output(f"{base}_angle", "float32", "(batch,)", "emotion type θ in radians, (-π, π]"),
                      Output(f"{base}_intensity", "float32", "(batch,)", "emotion intensity r in [0, 1]")]
        return items

    def output_values(self, task, y, ops, readable=False):
        out = super().output_values(task, y, ops, readable)
        if task.circle is not None:
            names = [o.name for o in self.outputs(task)[2:]]
            out.update(zip(names, emotion_vector(y, get_circle(task.circle))))
        return out

    def test_metrics(self, task, prediction, target):
        from affect_zoo import metrics

        return {task.name: metrics.distribution_metrics(target, prediction)}
