"""Adaptive Feature Interaction (Shen et al., J. Software 2022) and its gradient recalibration (eqs 7–8)."""
import numbers

import keras
import tensorflow as tf
from keras import ops

from affect_zoo.layers.mixing import pair_channels, split_pair

#: Floor on ‖g_SC‖ in the logged ratio ‖g_AFI‖/‖g_SC‖ only (``training_stats``); the recalibration itself takes
#: the limit ‖g_SC‖ → 0 exactly (see ``recalibrate_gradient``).
NORM_EPSILON = 1e-12

POOLINGS = ("both", "max", "avg")


def _norm(g):
    """‖g‖₂ over the whole tensor in float32, as one sum-of-squares kernel (``l2_loss`` = Σg²/2)."""
    return tf.sqrt(2.0 * tf.nn.l2_loss(tf.cast(g, tf.float32)))


def recalibrate_gradient(g_afi, g_sc, temperature, norms=None):
    """Eq. 8: ``g_SC + f``, f = T / (ln(‖g_AFI‖/‖g_SC‖) + 1) · g_AFI if ‖g_AFI‖ > ‖g_SC‖, else g_AFI.

    Norms are L2 over the whole tensor, taken in float32 so float16 gradients cannot overflow the sum of
    squares. ‖g_SC‖ = 0 < ‖g_AFI‖ (the branch's own task has no label in the batch, so its shortcut gets no gradient)
    is the formula's limit: ln(‖g_AFI‖/‖g_SC‖) → ∞, so the factor is exactly 0 and the result is g_SC = 0 — not a
    floored ratio (a floor of 1e-12 gives about T/29 at ‖g_AFI‖ ≈ 1). Both norms zero is the "else" case and leaves
    g_AFI (zero) as is. The logarithm only ever sees positive norms, so no inf or NaN is formed. ``norms``:
    (‖g_AFI‖, ‖g_SC‖) when the caller has them already (the fork logs them too).
    """
    norm_afi, norm_sc = norms if norms is not None else (_norm(g_afi), _norm(g_sc))
    larger = norm_afi > norm_sc
    finite = larger & (norm_sc > 0.0)  # both norms positive: the ratio is finite and > 1
    log_ratio = tf.math.log(tf.where(finite, norm_afi, 1.0)) - tf.math.log(tf.where(finite, norm_sc, 1.0))
    scale = tf.where(finite, temperature / (log_ratio + 1.0), tf.where(larger, 0.0, 1.0))
    return g_sc + tf.cast(scale, g_afi.dtype) * g_afi


def _forking(recalibrate, temperature, grad_ratio):
    """Identity (x_a, x_e) → (shortcut_a, shortcut_e, module_a, module_e) whose backward pass records
    ‖g_AFI‖/‖g_SC‖ of each input in ``grad_ratio`` and, if ``recalibrate``, applies eq. 8 to it (else returns
    g_SC + g_AFI unchanged). The temperature only parameterises the backward pass."""

    @tf.custom_gradient
    def fork(x_a, x_e):
        def grad(g_sc_a, g_sc_e, g_afi_a, g_afi_e):
            norms_a, norms_e = (_norm(g_afi_a), _norm(g_sc_a)), (_norm(g_afi_e), _norm(g_sc_e))
            grad_ratio.assign(tf.stack([n_afi / tf.maximum(n_sc, NORM_EPSILON) for n_afi, n_sc in (norms_a, norms_e)]))
            if not recalibrate:
                return g_sc_a + g_afi_a, g_sc_e + g_afi_e
            return (recalibrate_gradient(g_afi_a, g_sc_a, temperature, norms_a),
                    recalibrate_gradient(g_afi_e, g_sc_e, temperature, norms_e))

        return (x_a, x_e, x_a, x_e), grad

    return fork


def _spread(v, rank):
    """A (batch, channels) tensor shaped to broadcast over the spatial axes of a rank-``rank`` input."""
    return tf.reshape(v, tf.concat([tf.shape(v)[:1], tf.ones([rank - 2], tf.int32), tf.shape(v)[1:]], 0))


@keras.saving.register_keras_serializable(package="affect_zoo")
class AdaptiveFeatureInteraction(keras.layers.Layer):
    """Adaptive Feature Interaction between an aesthetics branch x_A and an emotion branch x_E (eqs 1–6).

    For each pooling p: ``l^p = ReLU(W^p·[d_A^p, d_E^p] + b^p)`` from the global pooled inputs (a 1×1 conv on a
    pooled vector is a dense layer), with ``max(1, 2C // reduction)`` units; then per channel k
    ``w_self^p(k), w_other^p(k) = softmax(U^p(k,·)·l^p, V^p(k,·)·l^p)``. The mix is
    ``x̂_A = w_self·x_A + w_other·x_E``, ``x̂_E = w_self·x_E + w_other·x_A``, and the outputs are the residuals
    ``x'_A = x̂_A + x_A``, ``x'_E = x̂_E + x_E``. Inputs are channels last, of rank >= 3 (B×H×W×C in the paper);
    pooling runs over every axis between batch and channels.

    Choices:
      - ``pooling``: "both" (the paper), "max" or "avg" (its Table 3 ablation). With both, w_self is the
        **average** of the max and avg weights. This equals "sum then renormalise": each pooling's pair
        already sums to 1, so the sum is 2 and renormalising halves it. w_self + w_other = 1 either way.
      - ``shared_directions=True``: one (U, V) pair per pooling serves both mixes, as the equations read, so
        x̂_A and x̂_E use the same w_self. With False, each direction has its own (U, V) pair and its own
        w_self. Either way W^p is common to both directions, and each pooling has its own W^p and (U, V).
      - W^p, U^p, V^p start Glorot-uniform, the bias of l^p at zero (Keras defaults; the paper gives none).
      - The 2-way softmax is computed as ``sigmoid(l·(U − V))``, its exact closed form. U and V stay separate
        weights (only U − V matters) so that the weights map one to one onto the paper's symbols.
      - The mix is computed as ``x̂_A = x_E + w_self·(x_A − x_E)``, which is algebraically the paper's form
        because w_other = 1 − w_self. With this form, identical inputs give each output **exactly** 2·x:
        x_A − x_E is exactly 0, so rounding in w_self cannot leak in. When both branches carry the same
        features (e.g. both backbones initialised from the same weights) a site is then exactly a doubling,
        with no rounding asymmetry between the branches, and the module can be tested exactly.
      - Gradient recalibration (eqs 7–8, ``recalibrate=True``): the gradient reaching x_A is g_SC (through the
        residual shortcut, i.e. the gradient of x'_A) plus g_AFI (through x̂_A, x̂_E and the weight branch);
        g_AFI is replaced by ``T / (ln(‖g_AFI‖/‖g_SC‖) + 1) · g_AFI`` when ‖g_AFI‖ > ‖g_SC‖. Same for x_E. It
        is an identity "fork" with a custom gradient that gives the shortcut and the module separate copies of
        each input; see ``recalibrate_gradient`` for the zero-norm handling. Norms are over the whole
        per-replica batch tensor (under a distribution strategy each replica recalibrates its own gradients).
        The fork is applied only when ``training=True`` (``fit`` and train steps pass it), with or without
        recalibration, because it also records ‖g_AFI‖/‖g_SC‖ for logging (``training_stats``; two norms per
        branch per backward pass); with ``training=False`` the layer holds no custom-gradient op, so an exported
        inference graph is plain. The forward values are the same
        with recalibration on or off.
      - The temperature T is the non-trainable variable ``temperature`` (initial value ``temperature``). It
        appears only in the backward pass, so the task loss gives it no gradient: it stays fixed unless a user
        assigns it (``layer.temperature.assign(0.5)``). The paper learns T; that would need a meta-gradient or a
        validation-driven rule, not implemented (a deviation stated in the README's AFI section). It exists even with ``recalibrate=False`` so that
        checkpoints are interchangeable between the two settings.

    Call: ``layer([x_a, x_e], training=...) -> [x'_a, x'_e]``. For logging, ``interaction_weights`` returns
    the w_self of each direction.
    """

    def __init__(self, reduction=16, pooling="both", shared_directions=True, recalibrate=False, temperature=1.0,
                 **kwargs):
        super().__init__(**kwargs)
        if not isinstance(reduction, numbers.Integral) or isinstance(reduction, bool) or reduction < 1:
            raise ValueError(f"`reduction` must be a positive integer; got {reduction!r}")
        if pooling not in POOLINGS:
            raise ValueError(f"`pooling` must be one of {POOLINGS}; got {pooling!r}")
        if not isinstance(temperature, numbers.Real) or isinstance(temperature, bool) or not temperature > 0:
            raise ValueError(f"`temperature` must be a positive number; got {temperature!r}")
        self.reduction = int(reduction)
        self.pooling = pooling
        self.shared_directions = bool(shared_directions)
        self.recalibrate = bool(recalibrate)
        self.initial_temperature = float(temperature)

    def build(self, input_shape):
        channels = pair_channels(self, input_shape, min_rank=3)
        units = max(1, 2 * channels // self.reduction)
        directions = ("",) if self.shared_directions else ("_a", "_e")
        self._branches = []
        for pooling in ("max", "avg") if self.pooling == "both" else (self.pooling,):
            kernel = self.add_weight(name=f"{pooling}_kernel", shape=(2 * channels, units))
            bias = self.add_weight(name=f"{pooling}_bias", shape=(units,), initializer="zeros")
            heads = [(self.add_weight(name=f"{pooling}_u{d}", shape=(units, channels)),
                      self.add_weight(name=f"{pooling}_v{d}", shape=(units, channels))) for d in directions]
            self._branches.append((pooling, kernel, bias, heads))
        self.temperature = self.add_weight(name="temperature", shape=(), trainable=False, autocast=False,
                                           initializer=keras.initializers.Constant(self.initial_temperature))
        # Training statistics for logging: replica-local (on-read) so that writing them from the backward pass
        # needs no cross-replica sync; reading them outside a replica averages over replicas.
        self.grad_ratio = keras.Variable(tf.zeros([2]), trainable=False, name="grad_ratio",
                                         synchronization="on_read", aggregation="mean")
        self.w_self_mean = keras.Variable(tf.zeros([2]), trainable=False, name="w_self_mean",
                                          synchronization="on_read", aggregation="mean")

    def _params(self, dtype):
        """Per pooling: (kernel, bias, [U − V per direction]) as tensors of ``dtype`` (only U − V enters eq. 4's
        closed form)."""
        return [(ops.cast(kernel, dtype), ops.cast(bias, dtype), [ops.cast(u - v, dtype) for u, v in heads])
                for _, kernel, bias, heads in self._branches]

    def _pooled(self, x_a, x_e):
        """Per pooling: (d_A, d_E), the global max or average over every axis between batch and channels."""
        axes = tuple(range(1, len(x_a.shape) - 1))
        pools = [ops.max if pooling == "max" else ops.mean for pooling, *_ in self._branches]
        return [(pool(x_a, axis=axes), pool(x_e, axis=axes)) for pool in pools]

    def _weights_from(self, pooled, params):
        """w_self of each direction, (batch, channels), from the pooled vectors: eqs 3–5, averaged over the
        poolings."""
        per_pooling = []
        for (d_a, d_e), (kernel, bias, deltas) in zip(pooled, params):
            hidden = ops.relu(ops.matmul(ops.concatenate([d_a, d_e], axis=-1), kernel) + bias)
            per_pooling.append([ops.sigmoid(ops.matmul(hidden, delta)) for delta in deltas])
        weights = [sum(ws) / len(ws) for ws in zip(*per_pooling)]
        return (weights[0], weights[0]) if self.shared_directions else tuple(weights)

    def _self_weights(self, x_a, x_e):
        """w_self of each direction from the inputs. Weights are cast to the inputs' dtype so that this also runs
        outside ``__call__``'s autocast (``interaction_weights`` under a mixed-precision policy)."""
        return self._weights_from(self._pooled(x_a, x_e), self._params(x_a.dtype))

    def call(self, inputs, training=None):
        x_a, x_e = split_pair(self, inputs, min_rank=3)
        if not training:
            spatial = tuple(range(1, len(x_a.shape) - 1))
            w_a, w_e = (ops.expand_dims(w, spatial) for w in self._self_weights(x_a, x_e))
            return [x_e + w_a * (x_a - x_e) + x_a, x_a + w_e * (x_e - x_a) + x_e]
        fork = _forking(self.recalibrate, ops.convert_to_tensor(self.temperature), self.grad_ratio)
        shortcut_a, shortcut_e, x_a, x_e = fork(x_a, x_e)
        mixed_a, mixed_e, w_a, w_e = self._module(x_a, x_e)
        self.w_self_mean.assign(tf.stack([tf.reduce_mean(tf.cast(w, tf.float32)) for w in (w_a, w_e)]))
        return [mixed_a + shortcut_a, mixed_e + shortcut_e]

    def _module(self, x_a, x_e):
        """(x̂_A, x̂_E, w_self_A, w_self_E) with a hand-written backward pass, for training.

        The forward values are the inference path's bit for bit when run op by op (x_a − w·d equals
        x_a + w·(x_e − x_a) exactly); in a ``tf.function`` Grappler may reassociate the adds of either, a rounding
        difference.
        TensorFlow's automatic backward pass of the same ops makes more passes over the feature
        maps: each op's gradient is its own kernel, ``reduce_max``'s spreads ties with four more, and the
        contributions are summed in separate adds. Here the maps are read a fixed few times: the mix gives
        g_x_A = g_E + P and g_x_E = g_A − P with P = w_A·g_A − w_E·g_E, and Σ_spatial g·d for the weights; the small
        weight branch (pooled vectors → w) is differentiated by a tape over its recomputed forward; each pooled
        vector's gradient is spread back (avg: uniformly; max: split evenly between tied maxima, as
        ``reduce_max``'s own gradient). ``tests/test_afi.py`` checks it against the automatic gradient."""
        params = self._params(x_a.dtype)
        layout = [len(deltas) for _, _, deltas in params]
        flat = [t for kernel, bias, deltas in params for t in (kernel, bias, *deltas)]
        poolings = [pooling for pooling, *_ in self._branches]
        rank = len(x_a.shape)
        axes = list(range(1, rank - 1))

        def regroup(tensors):
            grouped, k = [], 0
            for count in layout:
                grouped.append((tensors[k], tensors[k + 1], list(tensors[k + 2:k + 2 + count])))
                k += 2 + count
            return grouped

        @tf.custom_gradient
        def module(x_a, x_e, *flat):
            pooled = self._pooled(x_a, x_e)
            w_a, w_e = self._weights_from(pooled, regroup(flat))
            d = x_a - x_e
            wd_a = _spread(w_a, rank) * d
            wd_e = wd_a if self.shared_directions else _spread(w_e, rank) * d

            def grad(g_a, g_e, *_):
                if self.shared_directions:
                    g_diff = g_a - g_e
                    g_w = [tf.reduce_sum(g_diff * d, axes)]
                    p = _spread(w_a, rank) * g_diff
                else:
                    g_w = [tf.reduce_sum(g_a * d, axes), -tf.reduce_sum(g_e * d, axes)]
                    p = _spread(w_a, rank) * g_a - _spread(w_e, rank) * g_e
                g_x = [g_e + p, g_a - p]
                vectors = [v for pair in pooled for v in pair]
                with tf.GradientTape() as tape:
                    tape.watch(vectors + list(flat))
                    again = self._weights_from(list(zip(vectors[::2], vectors[1::2])), regroup(flat))
                grads = tape.gradient(list(again[:len(g_w)]), vectors + list(flat), output_gradients=g_w,
                                      unconnected_gradients=tf.UnconnectedGradients.ZERO)
                size = tf.cast(tf.reduce_prod(tf.shape(x_a)[1:-1]), x_a.dtype)
                for k, pooling in enumerate(poolings):
                    for side, x in enumerate((x_a, x_e)):
                        g_pooled = grads[2 * k + side]
                        if pooling == "max":
                            hit = tf.cast(tf.equal(x, _spread(pooled[k][side], rank)), x.dtype)
                            g_x[side] += hit * _spread(g_pooled / tf.reduce_sum(hit, axes), rank)
                        else:
                            g_x[side] += _spread(g_pooled / size, rank)
                return (*g_x, *grads[len(vectors):])

            return (x_e + wd_a, x_a - wd_e, w_a, w_e), grad

        return module(x_a, x_e, *flat)

    def training_stats(self):
        """What the trainer logs for this site: ‖g_AFI‖/‖g_SC‖ of each branch at the last backward pass through
        the layer (before recalibration) and the batch-mean w_self of each direction at the last training call."""
        return {"grad_ratio_a": self.grad_ratio[0], "grad_ratio_e": self.grad_ratio[1],
                "w_self_a": self.w_self_mean[0], "w_self_e": self.w_self_mean[1]}

    def interaction_weights(self, inputs):
        """(w_self of x̂_A, w_self of x̂_E), each (batch, channels), for logging; equal when directions are shared.

        w_other is 1 − w_self. Builds the layer if needed; no state is kept between calls.
        """
        x_a, x_e = split_pair(self, inputs, min_rank=3)
        if not self.built:
            self.build([tuple(x_a.shape), tuple(x_e.shape)])
        return self._self_weights(ops.convert_to_tensor(x_a, self.compute_dtype),
                                  ops.convert_to_tensor(x_e, self.compute_dtype))

    def get_config(self):
        return {**super().get_config(), "reduction": self.reduction, "pooling": self.pooling,
                "shared_directions": self.shared_directions, "recalibrate": self.recalibrate,
                "temperature": self.initial_temperature}
