"""CAGrad, conflict-averse gradient descent (Liu, Liu, Jin, Stone & Liu, NeurIPS 2021)."""
import keras
import tensorflow as tf

from affect_zoo.balancing.surgery import GradientSurgery


@keras.saving.register_keras_serializable(package="affect_zoo")
class CAGrad(GradientSurgery):
    """The update d maximises the worst task's improvement near the average gradient g₀ = (1/K) Σ_k g_k (eq. 2):
    max_d min_k g_k·d s.t. ‖d − g₀‖ ≤ c‖g₀‖, solved through its dual (Algorithm 1): w* = argmin_{w ∈ Δ_K}
    g_wᵀg₀ + √φ ‖g_w‖ with g_w = Σ_k w_k g_k, φ = c²‖g₀‖², then d = g₀ + (√φ / ‖g_w‖) g_w. c = 0.5 by default;
    c = 0 is plain gradient descent on the mean loss. The paper's convergence result is for c ∈ [0, 1); with
    c ≥ 1 and 0 in the gradients' convex hull the problem is degenerate (d = 0 is optimal) and the dual solver's
    answer is not meaningful.

    d is on the scale of the *mean* task gradient, as in the paper (the other balancers differentiate the sum, K
    times larger), and is not rescaled by 1/(1 + c²) as the authors' code optionally does. The K-dimensional dual
    is solved on the Gram matrix by projected gradient descent on the simplex (``iterations`` steps of size
    ‖g_w‖/(√φ·λ_max), the inverse curvature bound of its norm term); the authors use SciPy's SLSQP, which has no
    TensorFlow graph form.
    """

    def __init__(self, c=0.5, iterations=100, **kwargs):
        super().__init__(**kwargs)
        if c < 0:
            raise ValueError(f"CAGrad: c must be >= 0, got {c}")
        self.c = float(c)
        self.iterations = int(iterations)

    def combine_gradients(self, grads):
        k = self.num_tasks
        gram = tf.cast(tf.matmul(grads, grads, transpose_b=True), tf.float64)
        mean = tf.fill([k], tf.constant(1.0 / k, tf.float64))
        radius = self.c * tf.sqrt(tf.maximum(tf.reduce_sum(mean * tf.linalg.matvec(gram, mean)), 0.0))   # √φ
        largest = tf.reduce_max(tf.linalg.eigvalsh(gram))
        linear = tf.linalg.matvec(gram, mean)                                                     # ∂(g_wᵀg₀)/∂w

        def step(i, w):
            m_w = tf.linalg.matvec(gram, w)
            norm = tf.sqrt(tf.maximum(tf.reduce_sum(w * m_w), 1e-30))                              # ‖g_w‖
            size = norm / tf.maximum(radius * largest, 1e-30)
            return i + 1, project_to_simplex(w - size * (linear + radius * m_w / norm))

        w = mean
        if self.c > 0:
            _, w = tf.while_loop(lambda i, w: i < self.iterations, step, (tf.constant(0), mean))
        norm = tf.sqrt(tf.maximum(tf.reduce_sum(w * tf.linalg.matvec(gram, w)), 0.0))
        scale = tf.where(norm > 0.0, radius / tf.maximum(norm, 1e-30), tf.constant(0.0, tf.float64))
        combination = tf.cast(mean + scale * w, grads.dtype)                  # d = Σ_k (1/K + λ w_k) g_k
        return tf.linalg.matvec(grads, combination, transpose_a=True)

    def get_config(self):
        return {**super().get_config(), "c": self.c, "iterations": self.iterations}


def project_to_simplex(v):
    """Euclidean projection of v onto {w ≥ 0, Σ w = 1} (the sort-based algorithm of Held, Wolfe & Crowder)."""
    k = v.shape[0]
    u = tf.sort(v, direction="DESCENDING")
    cumulative = tf.cumsum(u)
    index = tf.range(1, k + 1, dtype=v.dtype)
    positive = u - (cumulative - 1.0) / index > 0.0
    rho = tf.reduce_max(tf.where(positive, tf.range(1, k + 1), 0))
    theta = (tf.gather(cumulative, rho - 1) - 1.0) / tf.cast(rho, v.dtype)
    return tf.maximum(v - theta, 0.0)
