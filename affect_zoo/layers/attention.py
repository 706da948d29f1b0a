"""Label attention, semantic dependencies and the α fusion of Xue et al. (Opto-Electronic Engineering, 2019).

The multi-label network (``affect_zoo.models.semdep``) is, for features X (B, H, W, D) of a backbone:

    Z = conv_att(X)                       1×1×512 → 3×3×512 → 1×1×C, the attention scores of the C labels
    A = LabelAttention(mode="maps")(Z)    A_c = softmax of Z_c over the H·W positions
    ỹ = FC(GAP(SemanticDependency()(A)))  SE → 4 × (1×1 conv → SE)
    y' = FC(GAP(X))
    ŷ = AlphaFusion()([y', ỹ])            α·y' + (1 − α)·ỹ, α trainable, initialised to 0.48

That is the paper's eq. 8, "M = F_cc(A, θ_cc), A ∈ R^{14×14×C}": the attention maps themselves, one channel per
label, are the input of the semantic-dependency convolutions, which mix labels — that is where label co-occurrence
is learnt.

``mode="confidence"`` is a variant of this project's, not the paper's, after Zhu et al.'s Spatial Regularization
Net: a confidence map S_c = 1×1 conv of X (a linear read-out of "label c is here") is weighted by the attention,
U_c = A_c ⊙ σ(S_c) (high where label c's attention falls on a confident location), and the attention gets its own
prediction y_att,c = Σ_p A_c(p)·S_c(p) (the confidence averaged under the attention), which can supervise the
attention alone in the second training stage.
"""
import math
import numbers

import keras
from keras import ops

from affect_zoo.layers.se import SqueezeExcitation

MODES = ("maps", "confidence")
PARAMETRIZATIONS = ("clip", "sigmoid")


def spatial_softmax(logits):
    """Softmax of (B, H, W, C) logits over the H·W positions, separately for each channel."""
    shape = ops.shape(logits)
    flat = ops.reshape(logits, (shape[0], -1, shape[-1]))
    return ops.reshape(ops.softmax(flat, axis=1), shape)


@keras.saving.register_keras_serializable(package="affect_zoo")
class LabelAttention(keras.layers.Layer):
    """Per-label spatial attention: a softmax over positions for each channel of the attention scores.

    Input: ``scores`` Z (B, H, W, C), one channel per label (e.g. from a small conv stack) with ``mode="maps"``
    (the paper's); ``[scores, features]`` with ``mode="confidence"``, the features X (B, H, W, D) Z was computed
    from.

    Output, a dict:
      - ``attention``: A (B, H, W, C), A_c = softmax over the H·W positions of Z_c (each map sums to 1);
      - ``attended``: mode "maps" (default, the paper's eq. 8): U = A; mode "confidence" (this project's SRN-style
        variant): U = A ⊙ σ(S), S = the label confidence maps, a 1×1 convolution of X to C channels (the layer's
        weights);
      - ``scores``: mode "confidence" only: y_att (B, C) = Σ_p A(p)·S(p), the attention's own per-label logits.

    ``rescale=True`` multiplies A by H·W in ``attended`` (a uniform map becomes all ones), which keeps the
    following layers' inputs at unit scale instead of 1/(H·W); the default (False) is the plain softmax of the
    paper.
    """

    def __init__(self, mode="maps", rescale=False, **kwargs):
        super().__init__(**kwargs)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.mode = mode
        self.rescale = bool(rescale)

    def build(self, input_shape):
        score_shape, feature_shape = self._split_shapes(input_shape)
        self.num_labels = score_shape[-1]
        if self.mode == "confidence":
            self.confidence = keras.layers.Conv2D(self.num_labels, 1, name="confidence")
            self.confidence.build(feature_shape)

    def _split_shapes(self, input_shape):
        nested = isinstance(input_shape, (list, tuple)) and input_shape and isinstance(input_shape[0], (list, tuple))
        shapes = [tuple(s) for s in input_shape] if nested else [tuple(input_shape)]
        wanted = 2 if self.mode == "confidence" else 1
        if len(shapes) != wanted:
            what = "[scores, features]" if wanted == 2 else "scores"
            raise ValueError(f"LabelAttention '{self.name}' (mode={self.mode!r}) takes {what}; got shapes {shapes}")
        for shape in shapes:
            if len(shape) != 4 or shape[-1] is None:
                raise ValueError(f"LabelAttention '{self.name}': inputs must be (batch, H, W, channels) with known "
                                 f"channels; got shapes {shapes}")
        if wanted == 2 and shapes[0][1:3] != shapes[1][1:3]:
            raise ValueError(f"LabelAttention '{self.name}': scores and features need the same H, W; got {shapes}")
        return shapes[0], (shapes[1] if wanted == 2 else None)

    def call(self, inputs):
        if self.mode == "confidence":
            scores, features = inputs
        else:
            scores = inputs[0] if isinstance(inputs, (list, tuple)) else inputs
        attention = spatial_softmax(scores)
        weights = attention
        if self.rescale:
            shape = ops.shape(scores)
            weights = attention * ops.cast(shape[1] * shape[2], attention.dtype)
        if self.mode == "maps":
            return {"attention": attention, "attended": weights}
        confidence = self.confidence(features)
        return {"attention": attention, "attended": weights * ops.sigmoid(confidence),
                "scores": ops.sum(attention * confidence, axis=(1, 2))}

    def get_config(self):
        return {**super().get_config(), "mode": self.mode, "rescale": self.rescale}


@keras.saving.register_keras_serializable(package="affect_zoo")
class SemanticDependency(keras.layers.Layer):
    """Label co-occurrence block: SE, then 1×1 convolutions (ReLU) each followed by SE.

    Input (B, H, W, C) (the attended label maps), output (B, H, W, filters[-1]). The paper's block is
    ``filters=(256, 256, 512, 1024)``. ``input_se`` puts an SE on the input itself (the paper's SE right after the
    attention); the SE layers use ``se_ratio`` (at least one hidden unit, so a 20-label input works).
    """

    def __init__(self, filters=(256, 256, 512, 1024), se_ratio=16, input_se=True, kernel_size=1, **kwargs):
        super().__init__(**kwargs)
        self.filters = tuple(int(f) for f in filters)
        if not self.filters or any(f < 1 for f in self.filters):
            raise ValueError(f"filters must be a non-empty list of positive ints, got {filters!r}")
        if not isinstance(kernel_size, numbers.Integral) or kernel_size < 1:
            raise ValueError(f"kernel_size must be a positive int, got {kernel_size!r}")
        self.se_ratio = int(se_ratio)
        self.input_se = bool(input_se)
        self.kernel_size = int(kernel_size)
        self.se_in = SqueezeExcitation(self.se_ratio, name="se_in") if self.input_se else None
        self.convs = [keras.layers.Conv2D(f, self.kernel_size, padding="same", activation="relu", name=f"conv_{i}")
                      for i, f in enumerate(self.filters, start=1)]
        self.ses = [SqueezeExcitation(self.se_ratio, name=f"se_{i}") for i in range(1, len(self.filters) + 1)]

    def build(self, input_shape):
        shape = tuple(input_shape)
        if len(shape) != 4 or shape[-1] is None:
            raise ValueError(f"SemanticDependency '{self.name}': input must be (batch, H, W, channels); got {shape}")
        if self.se_in is not None:
            self.se_in.build(shape)
        for conv, se in zip(self.convs, self.ses):
            conv.build(shape)
            shape = (*shape[:-1], conv.filters)
            se.build(shape)

    def call(self, inputs):
        x = self.se_in(inputs) if self.se_in is not None else inputs
        for conv, se in zip(self.convs, self.ses):
            x = se(conv(x))
        return x

    def compute_output_shape(self, input_shape):
        return (*tuple(input_shape)[:-1], self.filters[-1])

    def get_config(self):
        return {**super().get_config(), "filters": list(self.filters), "se_ratio": self.se_ratio,
                "input_se": self.input_se, "kernel_size": self.kernel_size}


class _UnitInterval(keras.constraints.Constraint):
    def __call__(self, w):
        return ops.clip(w, 0.0, 1.0)


@keras.saving.register_keras_serializable(package="affect_zoo")
class AlphaFusion(keras.layers.Layer):
    """ŷ = α·a + (1 − α)·b for inputs ``[a, b]`` of one shape, with one trainable scalar α ∈ [0, 1].

    ``parametrization="clip"`` (default): the variable *is* α, initialised to ``alpha`` (0.48, the paper's), and
    projected back into [0, 1] after every optimizer update by a constraint (projected gradient descent: α can
    reach 0 or 1 exactly and leave them again). ``"sigmoid"``: α = σ(a) with a initialised to logit(alpha), so α
    stays in (0, 1) without a constraint (useful with optimizers that ignore constraints). ``alpha`` (the
    property) reads the current α either way. In the semdep network a and b are the two branches' logits (the
    fusion happens before the sigmoid, as in SRN).
    """

    def __init__(self, alpha=0.48, parametrization="clip", trainable=True, **kwargs):
        super().__init__(trainable=trainable, **kwargs)
        if parametrization not in PARAMETRIZATIONS:
            raise ValueError(f"parametrization must be one of {PARAMETRIZATIONS}, got {parametrization!r}")
        alpha = float(alpha)
        if not 0.0 <= alpha <= 1.0 or (parametrization == "sigmoid" and alpha in (0.0, 1.0)):
            raise ValueError(f"alpha must be in [0, 1] ((0, 1) for the sigmoid parametrization), got {alpha}")
        self.initial_alpha = alpha
        self.parametrization = parametrization

    def build(self, input_shape):
        if self.parametrization == "clip":
            init, constraint = self.initial_alpha, _UnitInterval()
        else:
            init, constraint = math.log(self.initial_alpha / (1.0 - self.initial_alpha)), None
        self.alpha_variable = self.add_weight(shape=(), initializer=keras.initializers.Constant(init),
                                              constraint=constraint, name="alpha")

    @property
    def alpha(self):
        """The current α as a scalar tensor."""
        if self.parametrization == "clip":
            return ops.convert_to_tensor(self.alpha_variable)
        return ops.sigmoid(self.alpha_variable)

    def call(self, inputs):
        a, b = inputs
        alpha = ops.cast(self.alpha, a.dtype)
        return alpha * a + (1.0 - alpha) * b

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])

    def get_config(self):
        return {**super().get_config(), "alpha": self.initial_alpha, "parametrization": self.parametrization}
