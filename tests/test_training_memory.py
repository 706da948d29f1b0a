"""What a two-branch train step holds beyond its tensors (README "Training memory"): no float64 anywhere in the
traced step, and one SGD momentum per trainable variable, built once in ``compile`` and not again by the step."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from affect_zoo.models import multitask
from affect_zoo.tasks import Task
from affect_zoo.training import MultiTaskModel

TASKS = [Task("va", "regression", 2, branch=0, target_range=(1, 9)),
         Task("emotion", "distribution", 7, branch=1, circle="emotion6")]


@pytest.mark.slow
def test_afi_step_is_float32_and_builds_its_slots_once():
    keras.utils.set_random_seed(0)
    network = multitask.build("afi", "mobilenetv2", TASKS, (32, 32, 3), alpha=0.35, recalibrate=True)
    model = MultiTaskModel(network, tasks=TASKS)
    model.compile(optimizer=keras.optimizers.SGD(1e-3, momentum=0.9))
    slots = list(model.optimizer.momentums)
    assert len(slots) == len(model.trainable_variables)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.uniform(0, 255, (2, 32, 32, 3)).astype("float32"))
    y = {"va": tf.constant(rng.uniform(1, 9, (2, 2)).astype("float32")),
         "emotion": tf.constant(rng.dirichlet(np.ones(7), 2).astype("float32"))}
    step = tf.function(model.train_step)
    graph = step.get_concrete_function((x, y)).graph
    dtypes = {tensor.dtype for op in graph.get_operations() for tensor in op.outputs}
    assert tf.float32 in dtypes and tf.float64 not in dtypes
    before = len(model.optimizer.variables)
    step((x, y))
    assert int(model.optimizer.iterations) == 1
    assert len(model.optimizer.variables) == before
    assert [id(v) for v in model.optimizer.momentums] == [id(v) for v in slots]
