"""Dynamic Weight Average (Liu, Johns & Davison, CVPR 2019)."""
import keras
import tensorflow as tf

from affect_zoo.balancing.base import Balancer


@keras.saving.register_keras_serializable(package="affect_zoo")
class DWA(Balancer):
    """w_k(t) = K·softmax_k(r_k(t−1)/T), r_k(t−1) = L_k(t−1)/L_k(t−2), from epoch-mean losses; w = 1 for the
    first two epochs (there is no ratio yet). T = 2 as in the paper.

    The loss history lives in non-trainable variables so a resumed run continues with the same weights.
    """

    def __init__(self, temperature=2.0, **kwargs):
        super().__init__(**kwargs)
        if temperature <= 0:
            raise ValueError(f"DWA: temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)

    def create_state(self):
        k = self.num_tasks
        self.weights_var = self.add_weight(name="weights", shape=(k,), initializer="ones", trainable=False)
        self.previous = self.add_weight(name="loss_t_minus_1", shape=(k,), initializer="zeros", trainable=False)
        self.before_previous = self.add_weight(name="loss_t_minus_2", shape=(k,), initializer="zeros",
                                               trainable=False)
        self.epochs_seen = self.add_weight(name="epochs_seen", shape=(), initializer="zeros", trainable=False)

    def task_weights(self):
        return tf.convert_to_tensor(self.weights_var)

    def end_epoch(self, epoch_losses):
        losses = tf.cast(tf.convert_to_tensor(epoch_losses), tf.float32)
        self.before_previous.assign(self.previous)
        self.previous.assign(losses)
        self.epochs_seen.assign_add(1.0)
        if float(self.epochs_seen.numpy()) >= 2:
            ratio = self.previous / tf.maximum(tf.convert_to_tensor(self.before_previous), 1e-12)
            self.weights_var.assign(self.num_tasks * tf.nn.softmax(ratio / self.temperature))

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature}
