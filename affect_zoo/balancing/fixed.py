"""Fixed task weights: the plain weighted sum every multi-task paper starts from."""
import keras
import tensorflow as tf

from affect_zoo.balancing.base import Balancer


@keras.saving.register_keras_serializable(package="affect_zoo")
class FixedWeights(Balancer):
    """L = Σ_k w_k·L_k with constant w_k (default 1 each)."""

    def __init__(self, weights=None, **kwargs):
        super().__init__(**kwargs)
        self.weights_value = None if weights is None else [float(w) for w in weights]
        if self.weights_value is not None and any(w < 0 for w in self.weights_value):
            raise ValueError(f"FixedWeights: weights must be >= 0, got {self.weights_value}")

    def create_state(self):
        if self.weights_value is not None and len(self.weights_value) != self.num_tasks:
            raise ValueError(f"FixedWeights: {len(self.weights_value)} weights given for {self.num_tasks} tasks")

    def task_weights(self):
        if self.weights_value is None:
            return tf.ones([self.num_tasks])
        return tf.constant(self.weights_value, tf.float32)

    def get_config(self):
        return {**super().get_config(), "weights": self.weights_value}
