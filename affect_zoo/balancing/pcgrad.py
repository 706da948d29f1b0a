"""PCGrad, projecting conflicting gradients (Yu et al., "Gradient Surgery for Multi-Task Learning", NeurIPS 2020)."""
import keras
import tensorflow as tf

from affect_zoo.balancing.surgery import GradientSurgery


@keras.saving.register_keras_serializable(package="affect_zoo")
class PCGrad(GradientSurgery):
    """Algorithm 1: for each task i, g_i^PC = g_i, then for each other task j in random order, if
    g_i^PC · g_j < 0: g_i^PC ← g_i^PC − (g_i^PC · g_j / ‖g_j‖²) g_j; the update is Σ_i g_i^PC.

    The random order is a function of (``seed``, step number) (``task_orders``), so runs repeat exactly; the step
    counter is a variable saved with the model. A task with a zero gradient (no labels in the batch) projects
    nothing.
    """

    def __init__(self, seed=0, **kwargs):
        super().__init__(**kwargs)
        self.seed = int(seed)

    def create_state(self):
        self.step = self.add_weight(name="step", shape=(), dtype="int64", initializer="zeros", trainable=False,
                                    aggregation="only_first_replica")

    def task_orders(self, step):
        """(K, K) int32: row i is the order in which task i visits the tasks (its own index is skipped)."""
        step = tf.cast(step, tf.int64)
        return tf.stack([tf.random.experimental.stateless_shuffle(
            tf.range(self.num_tasks), seed=tf.stack([tf.constant(self.seed, tf.int64), step * self.num_tasks + i]))
            for i in range(self.num_tasks)])

    def combine_gradients(self, grads):
        orders = self.task_orders(tf.convert_to_tensor(self.step))
        self.step.assign_add(1)
        squared_norms = tf.reduce_sum(grads * grads, axis=1)
        projected = []
        for i in range(self.num_tasks):
            g = grads[i]
            for position in range(self.num_tasks):
                j = orders[i, position]
                other = tf.gather(grads, j)
                dot = tf.reduce_sum(g * other)
                conflict = tf.logical_and(tf.not_equal(j, i), dot < 0.0)
                conflict = tf.logical_and(conflict, tf.gather(squared_norms, j) > 0.0)
                scale = tf.where(conflict, dot / tf.maximum(tf.gather(squared_norms, j), 1e-30), 0.0)
                g = g - scale * other
            projected.append(g)
        return tf.add_n(projected)

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}
