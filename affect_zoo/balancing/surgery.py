"""The base of the gradient-surgery balancers (PCGrad, MGDA, CAGrad): they combine the task gradients of the
shared variables into one update direction instead of weighting the losses.

Each step takes K backward passes (one per task, on the shared variables only) plus the objective's pass for the
rest; the task-specific variables get the gradient of the plain sum of the losses (each head its own task's
gradient, as all three papers do), the shared ones ``combine_gradients`` of the (K, P) matrix of flattened task
gradients, plus the gradient of the model's regularisation losses. Under a distribution strategy the surgery is
applied to each replica's gradients and the results are summed (per-replica surgery: with more than one replica
this is not the surgery of the global-batch gradients).
"""
import math

import tensorflow as tf

from affect_zoo.balancing.base import Balancer


class GradientSurgery(Balancer):
    """Unit loss weights (``combine`` is the plain sum it logs); subclasses define ``combine_gradients``."""

    needs_task_gradients = True
    shared_role = "shared"

    def combine_gradients(self, grads):
        """The (P,) update direction from the (K, P) task gradients of the shared variables."""
        raise NotImplementedError

    def gradients(self, tape, objective, task_losses, variables, shared=(), regularization=None):
        if not shared:
            raise ValueError(f"{type(self).__name__} needs the network's shared variables; it declares none")
        per_task = tf.stack([flatten(tape.gradient(loss, shared, unconnected_gradients="zero"))
                             for loss in task_losses])
        combined = self.combine_gradients(per_task)
        if regularization is not None:
            combined = combined + flatten(tape.gradient(regularization, shared, unconnected_gradients="zero"))
        shared_ids = {id(v) for v in shared}
        rest = [v for v in variables if id(v) not in shared_ids]
        by_id = dict(zip((id(v) for v in rest), tape.gradient(objective, rest)))
        by_id.update(zip((id(v) for v in shared), unflatten(combined, shared)))
        return [by_id[id(v)] for v in variables]


def flatten(grads):
    """One vector from a list of (dense or sliced) gradients."""
    return tf.concat([tf.reshape(tf.convert_to_tensor(g), [-1]) for g in grads], axis=0)


def unflatten(vector, variables):
    sizes = [math.prod(v.shape) for v in variables]
    return [tf.reshape(piece, v.shape) for piece, v in zip(tf.split(vector, sizes), variables)]
