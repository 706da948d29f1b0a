"""GradNorm (Chen et al., ICML 2018): learn task weights that equalise gradient norms on the last shared layer."""
import keras
import tensorflow as tf

from affect_zoo.balancing.base import Balancer


@keras.saving.register_keras_serializable(package="affect_zoo")
class GradNorm(Balancer):
    """Task weights w_k (init 1) trained on L_grad = Σ_k |G_k − Ḡ·r_k^α| (α = 1.5), where
    G_k = ‖∇_W w_k·L_k‖ on the last shared layer W, Ḡ the mean of the G_k, r_k = L̃_k / mean(L̃),
    L̃_k = L_k(t)/L_k(0). The target Ḡ·r_k^α is a constant, the task losses give w no gradient, and after each
    optimizer step the weights are renormalised to sum to K (the paper's protocol).

    W is the kernel of the last shared convolution, as the network declares it (``affect_zoo.models.shared``;
    for a two-branch network one kernel per branch, G_k their joint norm). L_k(0) is the loss of the first
    training step (kept in a variable, so a resumed run keeps it). Under a distribution strategy each replica
    computes G_k on its own shard; the auxiliary gradients are summed like any other and the renormalised weights
    are identical on every replica (first replica's copy wins).
    """

    needs_task_gradients = True
    shared_role = "last_conv"

    def __init__(self, alpha=1.5, **kwargs):
        super().__init__(**kwargs)
        self.alpha = float(alpha)

    def create_state(self):
        k = self.num_tasks
        self.weights_var = self.add_weight(name="weights", shape=(k,), initializer="ones",
                                           aggregation="only_first_replica")
        self.initial_losses = self.add_weight(name="initial_losses", shape=(k,), initializer="zeros",
                                              trainable=False, aggregation="only_first_replica")

    def task_weights(self):
        return tf.convert_to_tensor(self.weights_var)

    def gradients(self, tape, objective, task_losses, variables, shared=(), regularization=None):
        """∇ objective for the network; ∇ L_grad (``auxiliary_loss``) for the task weights."""
        norms = tf.stack([tf.linalg.global_norm(tape.gradient(loss, shared, unconnected_gradients="zero"))
                          for loss in task_losses])
        own = self.trainable_variables
        with tf.GradientTape() as aux_tape:
            auxiliary = self.auxiliary_loss(tf.stack(task_losses), norms)
        extra = dict(zip((id(v) for v in own), aux_tape.gradient(auxiliary, own, unconnected_gradients="zero")))
        gradients = tape.gradient(objective, variables)
        return [extra.get(id(v), g) if g is None else g for v, g in zip(variables, gradients)]

    def auxiliary_loss(self, losses, grad_norms):
        losses = tf.stop_gradient(losses)
        first = tf.reduce_all(tf.equal(tf.convert_to_tensor(self.initial_losses), 0.0))
        initial = tf.where(first, losses, tf.convert_to_tensor(self.initial_losses))
        self.initial_losses.assign(initial)
        w = tf.convert_to_tensor(self.weights_var)
        g = w * tf.stop_gradient(grad_norms)
        relative = losses / tf.maximum(initial, 1e-12)
        r = relative / tf.reduce_mean(relative)
        target = tf.stop_gradient(tf.reduce_mean(g) * r ** self.alpha)
        return tf.reduce_sum(tf.abs(g - target))

    def after_update(self):
        w = tf.maximum(tf.convert_to_tensor(self.weights_var), 1e-6)
        self.weights_var.assign(self.num_tasks * w / tf.reduce_sum(w))

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha}
