"""Model families as plug-ins: the training driver, the evaluation and the factory ask the recipe's ``Family``."""
import json

import numpy as np
import pytest
from test_experiments_families import MMEMO, PHASE_RATES, PHASES, SEMDEP

from affect_zoo import evaluation, families, recipes, zoo
from affect_zoo.families import Family, register_family
from affect_zoo.families import base as families_base
from affect_zoo.models import semdep
from affect_zoo.tasks import Task

TINY = {"name": "tiny_family", "dataset": {"name": "emotion6"},
        "model": {"family": "multitask", "architecture": "single", "backbone": "mobilenetv2", "input_size": [32, 32]},
        "tasks": [{"name": "emotion", "kind": "distribution", "size": 7}]}


@pytest.fixture
def echo_family():
    """A family added the way a user adds one: one class, one decorator; removed again after the test."""

    @register_family
    class Echo(Family):
        name = "echo"

        def evaluated_tasks(self, tasks):
            return [*tasks, Task("echo", "distribution", tasks[0].size)]

        def evaluation_targets(self, y, rows, every):
            return {**y, "echo": y["emotion"]}, {**rows, "echo": every}

    yield Echo
    families_base._FAMILIES.pop("echo")


def test_every_family_of_the_repository_is_registered():
    assert {"multitask", "semdep", "mmemo"} <= set(families_base._FAMILIES)
    with pytest.raises(recipes.RecipeError, match=r"model\.family: unknown model family 'nope'; known: mmemo"):
        families.get_family("nope")


def test_registration_refuses_a_taken_name_and_what_is_not_a_family():
    class Other(Family):
        name = "semdep"

    with pytest.raises(ValueError, match="'semdep' is already registered by SemDep"):
        register_family(Other)
    with pytest.raises(TypeError, match="Family subclass"):
        register_family(dict)


def test_a_new_family_changes_what_is_measured_without_touching_the_evaluation(echo_family):
    recipe = recipes.resolve({**TINY, "model": {**TINY["model"], "family": "echo"}})
    tasks = evaluation._evaluated_tasks(recipe, [Task("emotion", "distribution", 7)])
    assert [t.name for t in tasks] == ["emotion", "echo"]
    y, rows = echo_family().evaluation_targets({"emotion": np.eye(7)[:2]}, {"emotion": np.ones(2, bool)},
                                               np.ones(2, bool))
    np.testing.assert_array_equal(y["echo"], np.eye(7)[:2])


def test_the_factory_builds_through_the_family():
    recipe = recipes.resolve(json.loads(json.dumps(TINY)))
    model = zoo.model_from_recipe(recipe)
    assert model.network.input_shape == (None, 32, 32, 3) and set(model.network.output) == {"emotion"}
    assert families.family_of(recipe).stages(recipe, model.network) is None  # one fit of all tasks


def test_semdep_plans_one_stage_per_phase_from_the_recipe():
    recipe = recipes.resolve(json.loads(json.dumps(SEMDEP)))
    network = zoo.model_from_recipe(recipe).network
    stages = families.family_of(recipe).stages(recipe, network)
    assert [s.name for s in stages] == list(PHASES)
    assert [s.learning_rate for s in stages] == list(PHASE_RATES) and [s.epochs for s in stages] == [1, 1, 1, 1]
    assert [s.tasks[0].name for s in stages] == ["labels_global", "labels_semantic", "labels_semantic", "labels"]
    assert stages[0].targets({"labels": 1, "other": 2}) == {"labels_global": 1, "other": 2}
    stages[1].prepare(network)
    trainable = {semdep.part_of(layer.name) for layer in network.layers if layer.trainable and layer.weights}
    assert trainable == set(semdep.PHASES[2])


def test_mmemo_measures_prediction_on_every_sample_beyond_its_classifiers():
    recipe = recipes.resolve(json.loads(json.dumps(MMEMO)))
    family = families.family_of(recipe)
    tasks = family.evaluated_tasks([Task(n["name"], "classification", 4) for n in MMEMO["tasks"]])
    assert tasks[-1].name == "prediction" and len(tasks) == len(MMEMO["tasks"]) + 1
    y = {t["name"]: np.array([1, 2, 3]) for t in MMEMO["tasks"]}
    rows = {t["name"]: np.array([True, False, True]) for t in MMEMO["tasks"]}
    y2, rows2 = family.evaluation_targets(y, rows, np.ones(3, bool))
    np.testing.assert_array_equal(y2["prediction"], [1, 2, 3])
    np.testing.assert_array_equal(rows2["prediction"], [True, True, True])
    with pytest.raises(recipes.RecipeError, match="training.phases: only the semdep family trains in phases"):
        family.check(recipe.replace(**{"training.phases": recipes.resolve(json.loads(json.dumps(SEMDEP)))
                                       .training.phases}))


def test_the_image_size_is_read_from_the_network_once_for_predict_and_the_export():
    import keras

    def pooled(*inputs):
        features = [keras.layers.GlobalAveragePooling2D()(x) if len(x.shape) == 4 else x for x in inputs]
        return keras.Model(list(inputs), keras.layers.Concatenate()(features) if len(features) > 1 else features[0])

    multitask, mmemo = families.get_family("multitask"), families.get_family("mmemo")
    assert multitask.image_size(pooled(keras.Input((48, 32, 3)))) == (48, 32)
    named = pooled(keras.Input((5,), name="text"), keras.Input((40, 24, 3), name="image"))
    assert mmemo.image_size(named) == (40, 24)
    with pytest.raises(ValueError, match=r"must take one image input .* its inputs: \[\(None, 5\), \(None, 40, 24, 3\)\]"):
        multitask.image_size(named)
    with pytest.raises(ValueError, match=r"H and W fixed; its inputs: \[\(None, None, None, 3\)\]"):
        multitask.image_size(pooled(keras.Input((None, None, 3))))
