"""Classification head that reads a predicted distribution on the emotion circle (Yang et al., CVPR 2021)."""
import keras

from affect_zoo.emotion import emotion_vector, get_circle, serialize_circle


@keras.saving.register_keras_serializable(package="affect_zoo")
class CircularEmotionHead(keras.layers.Layer):
    """Dense(K) logits → softmax distribution, plus that distribution's emotion vector.

    Input: features (B, F). Output: a dict usable directly as model outputs (e.g. `head(x)["distribution"]`):
    "distribution" (B, K), and "polarity" (B,) ±1, "angle" (B,) in (-π, π], "intensity" (B,) from
    `emotion_vector`. Train on "distribution" (e.g. with `CircularEmotionLoss`); the other three are read-outs.
    The softmax and the read-outs are computed in float32 even under a mixed-precision policy, because the loss
    takes logs of the distribution and the angle needs the precision.

    circle: "mikels8", "emotion6", or an `EmotionCircle` (stored in the config by name if built in, else by its
    fields). kernel_initializer: of the logits layer.
    """

    def __init__(self, circle="mikels8", kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.circle = get_circle(circle)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.logits = keras.layers.Dense(self.circle.size, kernel_initializer=self.kernel_initializer, name="logits")

    def build(self, input_shape):
        if len(input_shape) != 2:
            raise ValueError(
                f"{self.name}: inputs must be features of shape (B, F) (pool feature maps first); got shape "
                f"{tuple(input_shape)}"
            )
        self.logits.build(input_shape)

    def call(self, inputs):
        distribution = keras.ops.softmax(keras.ops.cast(self.logits(inputs), "float32"), axis=-1)
        polarity, angle, intensity = emotion_vector(distribution, self.circle)
        return {"distribution": distribution, "polarity": polarity, "angle": angle, "intensity": intensity}

    def get_config(self):
        return {**super().get_config(), "circle": serialize_circle(self.circle),
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer)}
