"""MGDA, multi-task learning as multi-objective optimisation (Sener & Koltun, NeurIPS 2018)."""
import keras
import tensorflow as tf

from affect_zoo.balancing.surgery import GradientSurgery


@keras.saving.register_keras_serializable(package="affect_zoo")
class MGDA(GradientSurgery):
    """The min-norm element of the convex hull of the task gradients on the shared parameters (eq. 3):
    α* = argmin_{α ∈ Δ_K} ‖Σ_k α_k ∇_θsh L_k‖², update Σ_k α*_k ∇_θsh L_k; each head gets its own task's gradient.

    This is MGDA on the shared *parameters'* gradients, not MGDA-UB's upper bound on the shared representation's:
    a two-branch network (AFI, cross-stitch) has no single representation every task reads, and the parameters
    are what the network declares. It costs K backward passes over the shared part where MGDA-UB costs one.
    Two tasks: the closed form of Algorithm 1, γ = clip(((g₂ − g₁)·g₂) / ‖g₁ − g₂‖², 0, 1), α = (γ, 1 − γ).
    More: Frank-Wolfe (Algorithm 2) on the Gram matrix, started, as the authors' solver is, from the best pair,
    for at most ``max_iterations`` steps or until α moves less than ``tolerance``. Losses are not normalised
    (the paper's algorithm; its code offers normalisations). When a task's gradient is zero (no labels in the
    batch) the min-norm element is zero and the shared parameters do not move.
    """

    def __init__(self, max_iterations=250, tolerance=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.max_iterations = int(max_iterations)
        self.tolerance = float(tolerance)

    def combine_gradients(self, grads):
        gram = tf.cast(tf.matmul(grads, grads, transpose_b=True), tf.float64)
        alpha = min_norm_weights(gram, self.max_iterations, self.tolerance)
        return tf.linalg.matvec(grads, tf.cast(alpha, grads.dtype), transpose_a=True)

    def get_config(self):
        return {**super().get_config(), "max_iterations": self.max_iterations, "tolerance": self.tolerance}


def _pair(gram, i, j):
    """γ minimising ‖γ g_i + (1 − γ) g_j‖² and that squared norm, from the Gram matrix."""
    gii, gjj, gij = gram[i, i], gram[j, j], gram[i, j]
    denominator = gii + gjj - 2.0 * gij
    gamma = tf.where(denominator > 0.0, tf.clip_by_value((gjj - gij) / tf.maximum(denominator, 1e-300), 0.0, 1.0),
                     tf.constant(0.5, gram.dtype))
    norm = gamma * gamma * gii + (1.0 - gamma) ** 2 * gjj + 2.0 * gamma * (1.0 - gamma) * gij
    return gamma, norm


def min_norm_weights(gram, max_iterations=250, tolerance=1e-5):
    """α ∈ Δ_K minimising αᵀ G α for the (K, K) Gram matrix G of the task gradients (float64)."""
    k = gram.shape[0]
    eye = tf.eye(k, dtype=gram.dtype)
    if k == 1:
        return tf.ones([1], gram.dtype)
    best_alpha, best_norm = None, None
    for i in range(k):
        for j in range(i + 1, k):
            gamma, norm = _pair(gram, i, j)
            alpha = gamma * eye[i] + (1.0 - gamma) * eye[j]
            if best_alpha is None:
                best_alpha, best_norm = alpha, norm
            else:
                better = norm < best_norm
                best_alpha = tf.where(better, alpha, best_alpha)
                best_norm = tf.where(better, norm, best_norm)
    if k == 2:
        return best_alpha

    def step(iteration, alpha, moved):
        gradient = tf.linalg.matvec(gram, alpha)              # M α: ∂(½ αᵀMα)/∂α
        t = tf.argmin(gradient, output_type=tf.int32)
        v_v = tf.reduce_sum(alpha * gradient)                  # ‖v‖², v = Σ α_k g_k
        v_t = tf.gather(gradient, t)                           # v · g_t
        t_t = gram[t, t]                                       # ‖g_t‖²
        denominator = v_v - 2.0 * v_t + t_t                    # ‖v − g_t‖²
        gamma = tf.where(denominator > 0.0, tf.clip_by_value((v_v - v_t) / tf.maximum(denominator, 1e-300),
                                                             0.0, 1.0), tf.constant(0.0, gram.dtype))
        new = (1.0 - gamma) * alpha + gamma * tf.gather(eye, t)
        return iteration + 1, new, tf.reduce_sum(tf.abs(new - alpha))

    _, alpha, _ = tf.while_loop(
        lambda iteration, alpha, moved: tf.logical_and(iteration < max_iterations, moved >= tolerance),
        step, (tf.constant(0), best_alpha, tf.constant(float("inf"), gram.dtype)))
    return alpha
