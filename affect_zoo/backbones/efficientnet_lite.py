"""EfficientNet-Lite0/1/2 (Tan & Le 2019; the TF-Lite variants of 2020) as a Keras functional model.

Lite differs from EfficientNet: no squeeze-excitation, ReLU6 everywhere, and the stem (32 channels), the head
(1280 channels) and the repeats of the first and last block groups are not scaled. Padding is TensorFlow's
"same" (the published weights were trained with it). Stochastic depth is left out: it only acts in training and
changes no weight. Input: RGB normalised as (x − 127) / 128.

Layer names (``stem_conv``, ``block{k}_expand_conv`` … ``block{k}_add``, ``top_conv``, ``predictions``) use the
flat block index k of the published state dict (``_blocks.{k}``), so conversion is by name.
"""
import math

import keras

# (kernel, repeats, filters out, expand ratio, stride) of EfficientNet-B0's seven block groups.
_GROUPS = ((3, 1, 16, 1, 1), (3, 2, 24, 6, 2), (5, 2, 40, 6, 2), (3, 3, 80, 6, 2),
           (5, 3, 112, 6, 1), (5, 4, 192, 6, 2), (3, 1, 320, 6, 1))
# variant → (width, depth, native resolution)
VARIANTS = {"efficientnet_lite0": (1.0, 1.0, 224), "efficientnet_lite1": (1.0, 1.1, 240),
            "efficientnet_lite2": (1.1, 1.2, 260)}
_BN = {"epsilon": 1e-3, "momentum": 0.99}


def _round_filters(filters, width, divisor=8):
    scaled = filters * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return int(rounded + divisor) if rounded < 0.9 * scaled else int(rounded)


def blocks(variant):
    """[(kernel, filters_in, filters_out, expand, stride, group)] for every block, in state-dict order."""
    width, depth, _ = VARIANTS[variant]
    out, filters_in = [], 32
    for group, (kernel, repeats, filters, expand, stride) in enumerate(_GROUPS):
        filters = _round_filters(filters, width)
        if 0 < group < len(_GROUPS) - 1:
            repeats = int(math.ceil(depth * repeats))
        for index in range(repeats):
            out.append((kernel, filters_in, filters, expand, stride if index == 0 else 1, group))
            filters_in = filters
    return out


def stage_ends(variant):
    """Layer names at strides 4, 8, 16 and 32 (the ends of block groups 2, 3 and 5, then the head)."""
    last_of = {}
    for k, (*_, group) in enumerate(blocks(variant)):
        last_of[group] = k
    return tuple(f"block{last_of[g]}_add" for g in (1, 2, 4)) + ("top_activation",)


def _relu6(name):
    return keras.layers.ReLU(6.0, name=name)


def build(variant, input_shape=None, include_top=False, classes=1000):
    """The network with random weights; ``include_top`` adds global pooling and the 1000-way softmax."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown EfficientNet-Lite variant {variant!r}; available: {', '.join(VARIANTS)}")
    inputs = keras.Input(shape=tuple(input_shape or (None, None, 3)), name="input_layer")
    x = keras.layers.Conv2D(32, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = keras.layers.BatchNormalization(name="stem_bn", **_BN)(x)
    x = _relu6("stem_activation")(x)
    for k, (kernel, filters_in, filters_out, expand, stride, _group) in enumerate(blocks(variant)):
        shortcut = x
        name = f"block{k}_"
        if expand != 1:
            x = keras.layers.Conv2D(filters_in * expand, 1, use_bias=False, name=name + "expand_conv")(x)
            x = keras.layers.BatchNormalization(name=name + "expand_bn", **_BN)(x)
            x = _relu6(name + "expand_activation")(x)
        x = keras.layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False,
                                         name=name + "dwconv")(x)
        x = keras.layers.BatchNormalization(name=name + "dw_bn", **_BN)(x)
        x = _relu6(name + "dw_activation")(x)
        x = keras.layers.Conv2D(filters_out, 1, use_bias=False, name=name + "project_conv")(x)
        x = keras.layers.BatchNormalization(name=name + "project_bn", **_BN)(x)
        if stride == 1 and filters_in == filters_out:
            x = keras.layers.Add(name=name + "add")([x, shortcut])
    x = keras.layers.Conv2D(1280, 1, use_bias=False, name="top_conv")(x)
    x = keras.layers.BatchNormalization(name="top_bn", **_BN)(x)
    x = _relu6("top_activation")(x)
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = keras.layers.Dense(classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, x, name=variant)


def _bn(state, prefix):
    return [state[f"{prefix}.weight"], state[f"{prefix}.bias"], state[f"{prefix}.running_mean"],
            state[f"{prefix}.running_var"]]


def _conv(kernel):
    return kernel.transpose(2, 3, 1, 0)  # torch (out, in, kh, kw) → keras (kh, kw, in, out)


def keras_weights(variant, state):
    """{keras layer name: [arrays]} from the published PyTorch state dict (the lukemelas/ml-illustrated naming)."""
    out = {"stem_conv": [_conv(state["_conv_stem.weight"])], "stem_bn": _bn(state, "_bn0")}
    for k, (_kernel, _fin, _fout, expand, _stride, _group) in enumerate(blocks(variant)):
        src, name = f"_blocks.{k}.", f"block{k}_"
        if expand != 1:
            out[name + "expand_conv"] = [_conv(state[src + "_expand_conv.weight"])]
            out[name + "expand_bn"] = _bn(state, src + "_bn0")
        out[name + "dwconv"] = [state[src + "_depthwise_conv.weight"].transpose(2, 3, 0, 1)]  # (C,1,kh,kw)→(kh,kw,C,1)
        out[name + "dw_bn"] = _bn(state, src + "_bn1")
        out[name + "project_conv"] = [_conv(state[src + "_project_conv.weight"])]
        out[name + "project_bn"] = _bn(state, src + "_bn2")
    out["top_conv"] = [_conv(state["_conv_head.weight"])]
    out["top_bn"] = _bn(state, "_bn1")
    out["predictions"] = [state["_fc.weight"].T, state["_fc.bias"]]
    return out
