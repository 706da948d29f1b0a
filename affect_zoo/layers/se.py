"""Squeeze-and-excitation channel reweighting (Hu et al., CVPR 2018)."""
import numbers

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="affect_zoo")
class SqueezeExcitation(keras.layers.Layer):
    """Squeeze-and-excitation: reweight each channel by a gate computed from the whole feature map.

    ``s = sigmoid(W2·ReLU(W1·GAP(x) + b1) + b2)``, output ``x·s`` with s broadcast over the spatial axes.
    W1 has ``max(1, C // ratio)`` units (the paper's reduction ratio r = 16; at least one unit so that
    narrow inputs still work).

    Choices:
      - the two FC layers carry biases, as common implementations do (the paper's formula omits them);
      - pooling is over every axis between batch and channels, so any channels-last input of rank >= 3 works.
    """

    def __init__(self, ratio=16, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(ratio, numbers.Integral) or isinstance(ratio, bool) or ratio < 1:
            raise ValueError(f"`ratio` must be a positive integer; got {ratio!r}")
        self.ratio = int(ratio)

    def build(self, input_shape):
        shape = _single_shape(self, input_shape)
        channels = shape[-1]
        self.squeeze = keras.layers.Dense(max(1, channels // self.ratio), activation="relu", name="squeeze")
        self.excite = keras.layers.Dense(channels, activation="sigmoid", name="excite")
        self.squeeze.build((None, channels))
        self.excite.build((None, self.squeeze.units))

    def call(self, inputs):
        shape = _single_shape(self, inputs.shape if hasattr(inputs, "shape") else [tuple(x.shape) for x in inputs])
        spatial = tuple(range(1, len(shape) - 1))
        gate = self.excite(self.squeeze(ops.mean(inputs, axis=spatial)))
        return inputs * ops.expand_dims(gate, spatial)

    def get_config(self):
        return {**super().get_config(), "ratio": self.ratio}


def _single_shape(layer, shape):
    """``shape`` as a tuple after checking it is one channels-last tensor shape of rank >= 3, channels known."""
    dims = tuple(shape)
    if not all(d is None or isinstance(d, numbers.Integral) for d in dims):
        raise ValueError(f"{type(layer).__name__} '{layer.name}': `inputs` must be one tensor of shape "
                         f"(batch, ..., channels); got input shape {shape}")
    if len(dims) < 3 or dims[-1] is None:
        raise ValueError(f"{type(layer).__name__} '{layer.name}': `inputs` must have rank >= 3 and a known "
                         f"channel axis (batch, ..., channels); got shape {dims}")
    return dims
