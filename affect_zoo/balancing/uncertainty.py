"""Homoscedastic uncertainty weighting (Kendall, Gal & Cipolla, CVPR 2018)."""
import keras
import tensorflow as tf

from affect_zoo.balancing.base import KINDS_WITH_GAUSSIAN_LIKELIHOOD, Balancer


@keras.saving.register_keras_serializable(package="affect_zoo")
class Uncertainty(Balancer):
    """L = Σ_k c_k·exp(−s_k)·L_k + s_k/2 with learnt s_k = log σ_k², initialised at 0.

    c_k = 1/2 for regression tasks (Gaussian likelihood: L/(2σ²) + log σ) and 1 for the others (softmax
    likelihood: L/σ² + log σ), as in the paper's derivations. Learning s rather than σ keeps it unconstrained.
    """

    def create_state(self):
        self.log_variance = self.add_weight(name="log_variance", shape=(self.num_tasks,), initializer="zeros")
        kinds = self.task_kinds or ("classification",) * self.num_tasks
        self.likelihood_factor = tf.constant(
            [0.5 if kind in KINDS_WITH_GAUSSIAN_LIKELIHOOD else 1.0 for kind in kinds], tf.float32)

    def task_weights(self):
        return self.likelihood_factor * tf.exp(-tf.convert_to_tensor(self.log_variance))

    def combine(self, losses):
        s = tf.convert_to_tensor(self.log_variance)
        return tf.reduce_sum(self.likelihood_factor * tf.exp(-s) * losses + 0.5 * s)
