"""The one base every loss balancer derives from.

A balancer turns the per-task losses of a step into the scalar the trainer differentiates. It is a Keras layer so
that its state (learnt log-variances, GradNorm weights, DWA's loss history) is tracked, checkpointed and saved with
the model. Subclasses only say how the weights come about; the trainer calls the hooks below in this order:
``combine`` inside the gradient tape, ``auxiliary_loss`` (only when ``needs_task_gradient_norms``), ``after_update``
after the optimizer step, ``end_epoch`` from a callback with the epoch's mean task losses.
"""
import keras
import tensorflow as tf

KINDS_WITH_GAUSSIAN_LIKELIHOOD = ("regression",)


class Balancer(keras.layers.Layer):
    """Base class: fixed unit weights; subclasses override the hooks they need."""

    #: True when the balancer needs ‖∇_W L_k‖ on the last shared layer W (GradNorm).
    needs_task_gradient_norms = False

    def __init__(self, num_tasks=None, task_kinds=None, **kwargs):
        super().__init__(**kwargs)
        self.num_tasks = num_tasks
        self.task_kinds = tuple(task_kinds) if task_kinds is not None else None

    def configure(self, tasks):
        """Bind to the model's tasks (their count and kinds) and create the state."""
        kinds = tuple(t.kind for t in tasks)
        if self.num_tasks is not None and self.num_tasks != len(kinds):
            raise ValueError(f"{type(self).__name__} was configured for {self.num_tasks} tasks, got {len(kinds)}")
        self.num_tasks, self.task_kinds = len(kinds), kinds
        if not self.built:
            self.build(None)

    def build(self, input_shape=None):
        if self.num_tasks is None:
            raise ValueError(f"{type(self).__name__}: call configure(tasks) before use (num_tasks is unknown)")
        self.create_state()
        self.built = True

    def create_state(self):
        """Create the variables the balancer needs; none by default."""

    def task_weights(self):
        """Current weight of each task, shape (K,): what the balancer logs."""
        return tf.ones([self.num_tasks])

    def combine(self, losses):
        """Scalar objective from the (K,) vector of task losses; differentiated by the trainer."""
        return tf.reduce_sum(tf.stop_gradient(self.task_weights()) * losses)

    def auxiliary_loss(self, losses, grad_norms):
        """Objective for the balancer's own variables, from ‖∇_W L_k‖ (only if needs_task_gradient_norms)."""
        raise NotImplementedError(f"{type(self).__name__} does not use task gradient norms")

    def after_update(self):
        """Runs after the optimizer step (e.g. renormalising weights)."""

    def end_epoch(self, epoch_losses):
        """Runs after each epoch with the epoch's mean task losses, shape (K,)."""

    def get_config(self):
        config = super().get_config()
        config.update(num_tasks=self.num_tasks, task_kinds=list(self.task_kinds) if self.task_kinds else None)
        return config
