"""The one base every balancer derives from: it owns the backward pass of a multi-task step.

A balancer turns the per-task losses of a step into the gradients the optimizer applies (LibMTL's weighting
habit). It is a Keras layer so that its state (learnt log-variances, GradNorm weights, DWA's loss history) is
tracked, checkpointed and saved with the model. The trainer calls, in this order: ``combine`` inside the gradient
tape (the scalar it logs as ``loss``), ``gradients`` after it (one gradient per trainable variable), then applies
them, then ``after_update``; ``end_epoch`` comes from a callback with the epoch's mean task losses.

Loss-weighting methods (fixed, Uncertainty, DWA) only override ``task_weights``/``combine``: the base's
``gradients`` differentiates the combined objective. GradNorm and the gradient-surgery methods (PCGrad, MGDA,
CAGrad; ``affect_zoo.balancing.surgery``) override ``gradients`` and say which variables they need through
``shared_role``; the network declares them (``affect_zoo.models.shared``). Every balancer takes its extra
per-task backward passes before the pass of the objective, so layers that record statistics in their backward
pass (AFI) report those of the objective's pass. ``gradients`` is per replica: the trainer divides what it returns
by ``num_replicas_in_sync`` once, and the optimizer sums over replicas.
"""
import keras
import tensorflow as tf

KINDS_WITH_GAUSSIAN_LIKELIHOOD = ("regression",)


class Balancer(keras.layers.Layer):
    """Base class: fixed unit weights; subclasses override the hooks they need."""

    #: True when ``gradients`` differentiates each task loss on its own (the tape must be persistent).
    needs_task_gradients = False
    #: The variables ``gradients`` takes as ``shared``: None (none), "shared" (every variable the network declares
    #: shared) or "last_conv" (GradNorm's W, the last shared conv's kernel).
    shared_role = None

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
        """Scalar objective from the (K,) vector of task losses, computed inside the trainer's tape."""
        return tf.reduce_sum(tf.stop_gradient(self.task_weights()) * losses)

    def gradients(self, tape, objective, task_losses, variables, shared=(), regularization=None):
        """One gradient (or None) per variable of ``variables``: what the optimizer applies on this replica.

        ``tape`` recorded ``objective`` (``combine`` of the losses plus ``regularization``, the model's
        ``losses``), each scalar of the list ``task_losses`` and ``regularization`` (None when the model has no
        extra losses); it is persistent when ``needs_task_gradients``. ``shared``: the variables ``shared_role``
        asks for. Base: the gradient of the objective.
        """
        return tape.gradient(objective, variables)

    def after_update(self):
        """Runs after the optimizer step (e.g. renormalising weights)."""

    def end_epoch(self, epoch_losses):
        """Runs after each epoch with the epoch's mean task losses, shape (K,)."""

    def get_config(self):
        config = super().get_config()
        config.update(num_tasks=self.num_tasks, task_kinds=list(self.task_kinds) if self.task_kinds else None)
        return config
