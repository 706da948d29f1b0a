"""Distribution losses for emotion on a circle (Yang et al., CVPR 2021).

All losses take y_true = the true distribution and y_pred = the predicted distribution, both (B, K) probabilities
(e.g. `CircularEmotionHead(...)["distribution"]`), and return one value per sample that Keras then reduces
(by default the mean over the batch).
"""
import keras

from affect_zoo.emotion import emotion_vector, get_circle, serialize_circle, soft_polarity
from affect_zoo.metrics import EPSILON, _kl_divergence  # one KL formula for the loss and the metric


def _check_pair(y_true, y_pred, k, where):
    """ValueError naming the argument if y_true / y_pred are not (B, K) with this K (static shapes)."""
    for arg, value in (("y_true", y_true), ("y_pred", y_pred)):
        shape = tuple(value.shape)
        if len(shape) != 2 or shape[-1] not in (None, k):
            raise ValueError(
                f"{where}: {arg} must have shape (B, {k}); got y_true shape {tuple(y_true.shape)}, "
                f"y_pred shape {tuple(y_pred.shape)}"
            )


@keras.saving.register_keras_serializable(package="affect_zoo")
class KLDivergenceLoss(keras.losses.Loss):
    """KL(d‖d̂) per sample: entries with d_j = 0 contribute 0, d̂ is clipped to [epsilon, 1] before the log.

    The clip keeps the loss finite when the softmax underflows; it is the same formula as the KL metric.
    """

    def __init__(self, epsilon=EPSILON, name="kl_divergence", **kwargs):
        super().__init__(name=name, **kwargs)
        self.epsilon = epsilon

    def call(self, y_true, y_pred):
        _check_pair(y_true, y_pred, y_pred.shape[-1], self.name)
        return _kl_divergence(keras.ops, y_true, y_pred, epsilon=self.epsilon)

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="affect_zoo")
class ProgressiveCircularLoss(keras.losses.Loss):
    """L_PC = r·((p − p̂)² + Δθ²) per sample: coarse to fine on the emotion circle.

    From the TRUE distribution: polarity p (hard ±1), type θ and intensity r (`emotion_vector`). From the
    predicted one: p̂ = P̂(positive) − P̂(negative) ∈ [-1, 1] (`soft_polarity`: differentiable, where a hard sign
    would give no gradient) and θ̂. The polarity term is the coarse level, the type term the fine level, and the
    true intensity weighs both: an ambiguous image (short true vector) says little about polarity or type.
    Δθ = atan2(sin(θ − θ̂), cos(θ − θ̂)) ∈ (-π, π] is the wrapped difference, so 3.0 vs −3.0 is 2π − 6, not 6.
    θ̂ is undefined when the predicted vector is ≈ 0 (e.g. a uniform prediction): `emotion_vector` then reports
    θ̂ = 0 through a guarded atan2, so the gradient stays finite and only the polarity term trains; likewise a true
    vector ≈ 0 has r = 0 and contributes nothing.
    """

    def __init__(self, circle="mikels8", name="progressive_circular", **kwargs):
        super().__init__(name=name, **kwargs)
        self.circle = get_circle(circle)

    def call(self, y_true, y_pred):
        _check_pair(y_true, y_pred, self.circle.size, self.name)
        polarity, angle, intensity = emotion_vector(y_true, self.circle)
        _, angle_pred, _ = emotion_vector(y_pred, self.circle)
        polarity_pred = soft_polarity(y_pred, self.circle)
        delta = angle - angle_pred
        delta = keras.ops.arctan2(keras.ops.sin(delta), keras.ops.cos(delta))
        return intensity * ((polarity - polarity_pred) ** 2 + delta**2)

    def get_config(self):
        return {**super().get_config(), "circle": serialize_circle(self.circle)}


@keras.saving.register_keras_serializable(package="affect_zoo")
class CircularEmotionLoss(keras.losses.Loss):
    """(1 − mu)·KL(d‖d̂) + mu·L_PC, the paper's loss with mu = 0.7 by default.

    KL fits the whole distribution; L_PC (`ProgressiveCircularLoss`) adds the circle's structure. mu = 0 is plain
    KL, mu = 1 plain L_PC.
    """

    def __init__(self, mu=0.7, circle="mikels8", epsilon=EPSILON, name="circular_emotion", **kwargs):
        super().__init__(name=name, **kwargs)
        if not 0.0 <= mu <= 1.0:
            raise ValueError(f"mu must be in [0, 1]; got {mu}")
        self.mu = mu
        self.kl = KLDivergenceLoss(epsilon=epsilon)
        self.progressive = ProgressiveCircularLoss(circle=circle)

    def call(self, y_true, y_pred):
        _check_pair(y_true, y_pred, self.progressive.circle.size, self.name)
        return (1.0 - self.mu) * self.kl.call(y_true, y_pred) + self.mu * self.progressive.call(y_true, y_pred)

    def get_config(self):
        return {
            **super().get_config(),
            "mu": self.mu,
            "circle": serialize_circle(self.progressive.circle),
            "epsilon": self.kl.epsilon,
        }
