"""Linear feature-mixing units between two task branches: cross-stitch and NDDR.

Also holds the pair checks every two-branch layer uses, so that a bad input is a ValueError that names
the shapes instead of a TensorFlow trace from deep inside ``call``.
"""
import numbers

import keras
from keras import ops


def pair_channels(layer, input_shape, min_rank):
    """Channel count of a two-branch input after checking it is a pair of equal shapes of rank >= min_rank.

    Dimensions unknown in either shape (None) are not compared; the channel axis must be known.
    """
    prefix = f"{type(layer).__name__} '{layer.name}'"
    if (not isinstance(input_shape, (list, tuple)) or len(input_shape) != 2
            or not all(isinstance(shape, (list, tuple)) for shape in input_shape)):
        raise ValueError(f"{prefix}: `inputs` must be a pair [x_a, x_e] of tensors; got input shape {input_shape}")
    shape_a, shape_e = (tuple(shape) for shape in input_shape)
    mismatch = len(shape_a) != len(shape_e) or any(
        a is not None and e is not None and a != e for a, e in zip(shape_a, shape_e))
    if mismatch or len(shape_a) < min_rank:
        raise ValueError(f"{prefix}: x_a and x_e in `inputs` must have the same shape, of rank >= {min_rank} "
                         f"(channels last); got x_a {shape_a} and x_e {shape_e}")
    channels = shape_a[-1] if shape_a[-1] is not None else shape_e[-1]
    if channels is None:
        raise ValueError(f"{prefix}: the channel axis of `inputs` must be known; got x_a {shape_a} and x_e {shape_e}")
    return channels


def split_pair(layer, inputs, min_rank):
    """(x_a, x_e) from ``inputs`` after the checks of ``pair_channels`` on their static shapes.

    Run in ``call`` as well as ``build``: a layer built once may be called again on other spatial sizes,
    and a lone tensor would otherwise be unpacked silently along its batch axis.
    """
    if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
        described = (tuple(inputs.shape) if hasattr(inputs, "shape")
                     else [tuple(x.shape) if hasattr(x, "shape") else x for x in inputs])
        raise ValueError(f"{type(layer).__name__} '{layer.name}': `inputs` must be a pair [x_a, x_e] of "
                         f"tensors; got {type(inputs).__name__} with shape {described}")
    pair_channels(layer, [tuple(x.shape) for x in inputs], min_rank)
    return inputs[0], inputs[1]


def _check_number(name, value):
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise ValueError(f"`{name}` must be a number; got {value!r}")
    return float(value)


@keras.saving.register_keras_serializable(package="affect_zoo")
class CrossStitch(keras.layers.Layer):
    """Cross-stitch unit (Misra et al., CVPR 2016): a learned per-channel 2×2 mix of two task branches.

    ``x_a' = α_aa·x_a + α_ae·x_e`` and ``x_e' = α_ea·x_a + α_ee·x_e``, each α a vector over the C channels
    (the paper's channel-wise variant), broadcast over all other axes, so the unit fits after a conv stage
    (B×H×W×C) or a dense layer (B×C) alike.

    Choices:
      - initialised to ``self_weight`` on the diagonal and ``other_weight`` off it (0.9 / 0.1 by default):
        each branch starts as mostly itself, so single-task weights stay meaningful;
      - the α are unconstrained (no softmax, no sum-to-one), as in the paper;
      - the paper trains the units with a larger learning rate than the branches; that is the optimizer's
        business, not this layer's.

    Call: ``layer([x_a, x_e]) -> [x_a', x_e']``.
    """

    def __init__(self, self_weight=0.9, other_weight=0.1, **kwargs):
        super().__init__(**kwargs)
        self.self_weight = _check_number("self_weight", self_weight)
        self.other_weight = _check_number("other_weight", other_weight)

    def build(self, input_shape):
        channels = pair_channels(self, input_shape, min_rank=2)

        def alpha(name, value):
            return self.add_weight(name=name, shape=(channels,), initializer=keras.initializers.Constant(value))

        self.alpha_aa = alpha("alpha_aa", self.self_weight)
        self.alpha_ae = alpha("alpha_ae", self.other_weight)
        self.alpha_ea = alpha("alpha_ea", self.other_weight)
        self.alpha_ee = alpha("alpha_ee", self.self_weight)

    def call(self, inputs):
        x_a, x_e = split_pair(self, inputs, min_rank=2)
        return [self.alpha_aa * x_a + self.alpha_ae * x_e, self.alpha_ea * x_a + self.alpha_ee * x_e]

    def get_config(self):
        return {**super().get_config(), "self_weight": self.self_weight, "other_weight": self.other_weight}


def _diagonal_blocks(top, bottom):
    """Initializer of a (2C, C) kernel: ``top·I`` stacked on ``bottom·I``."""

    def initializer(shape, dtype=None):
        eye = ops.eye(shape[1], dtype=dtype)
        return ops.concatenate([top * eye, bottom * eye], axis=0)

    return initializer


@keras.saving.register_keras_serializable(package="affect_zoo")
class NDDR(keras.layers.Layer):
    """Neural discriminative dimensionality reduction (Gao et al., CVPR 2019) between two task branches.

    For each branch: a 1×1 convolution over ``concat([x_a, x_e])`` (2C → C channels), then
    BatchNormalization, then ReLU. The 1×1 conv acts on the channel axis only, so any rank >= 2 works.

    Choices:
      - the paper's "diagonal" init: branch a's kernel is ``self_weight·I`` on the x_a block and
        ``other_weight·I`` on the x_e block (0.9 / 0.1 by default), branch e's mirrored, so each branch starts
        as mostly itself;
      - no conv bias: the BatchNormalization right after it has its own offset;
      - one BatchNormalization per branch (the branches' feature statistics differ). ``synchronized_bn``
        goes to BatchNormalization's ``synchronized``: under a distribution strategy unsynchronised BN keeps
        per-replica statistics, so mirrored training only matches single-device training with it on.
      - ``batch_norm=False, activation="linear"``: the 1×1 conv alone, a departure from the paper for backbones
        whose stage ends are linear bottlenecks (EfficientNet-Lite, MobileNetV2: a residual sum, signed, with no
        ReLU after it). There the paper's BN + ReLU re-standardises the features and drops their negative half
        at every site, so the pretrained stages after it no longer see what they were trained on; the linear
        layer starts as 0.9·x_a + 0.1·x_e, which is x_a itself when both branches start from the same weights.

    Call: ``layer([x_a, x_e], training=...) -> [x_a', x_e']``.
    """

    ACTIVATIONS = ("relu", "linear")

    def __init__(self, self_weight=0.9, other_weight=0.1, bn_momentum=0.99, bn_epsilon=1e-3,
                 synchronized_bn=False, batch_norm=True, activation="relu", **kwargs):
        super().__init__(**kwargs)
        if activation not in self.ACTIVATIONS:
            raise ValueError(f"NDDR activation must be one of {self.ACTIVATIONS}, got {activation!r}")
        self.batch_norm, self.activation = bool(batch_norm), activation
        self.self_weight = _check_number("self_weight", self_weight)
        self.other_weight = _check_number("other_weight", other_weight)
        self.bn_momentum = _check_number("bn_momentum", bn_momentum)
        self.bn_epsilon = _check_number("bn_epsilon", bn_epsilon)
        self.synchronized_bn = bool(synchronized_bn)
        self.bn_a, self.bn_e = (
            keras.layers.BatchNormalization(momentum=self.bn_momentum, epsilon=self.bn_epsilon,
                                            synchronized=self.synchronized_bn, name=name)
            if self.batch_norm else None for name in ("bn_a", "bn_e"))

    def build(self, input_shape):
        channels = pair_channels(self, input_shape, min_rank=2)
        self.kernel_a = self.add_weight(name="kernel_a", shape=(2 * channels, channels),
                                        initializer=_diagonal_blocks(self.self_weight, self.other_weight))
        self.kernel_e = self.add_weight(name="kernel_e", shape=(2 * channels, channels),
                                        initializer=_diagonal_blocks(self.other_weight, self.self_weight))
        for bn, shape in zip((self.bn_a, self.bn_e), input_shape):
            if bn is not None:
                bn.build(tuple(shape[:-1]) + (channels,))

    def call(self, inputs, training=None):
        x_a, x_e = split_pair(self, inputs, min_rank=2)
        both = ops.concatenate([x_a, x_e], axis=-1)
        outputs = []
        for kernel, bn in ((self.kernel_a, self.bn_a), (self.kernel_e, self.bn_e)):
            z = ops.matmul(both, kernel)
            z = bn(z, training=training) if bn is not None else z
            outputs.append(ops.relu(z) if self.activation == "relu" else z)
        return outputs

    def get_config(self):
        return {**super().get_config(), "self_weight": self.self_weight, "other_weight": self.other_weight,
                "bn_momentum": self.bn_momentum, "bn_epsilon": self.bn_epsilon,
                "synchronized_bn": self.synchronized_bn, "batch_norm": self.batch_norm, "activation": self.activation}
