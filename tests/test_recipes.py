"""Recipe validation of numbers, names, tasks and balancer options: every error names the file and the field, for
a YAML file and for a dict given to ``experiments.train`` alike, before anything is built or trained."""
import copy
import dataclasses

import pytest
import yaml
from test_experiments import RECIPE

from affect_zoo import cli, experiments, recipes


def edited(path, value):
    """RECIPE with the dotted ``path`` set to ``value`` (a missing mapping on the way is created)."""
    recipe = copy.deepcopy(RECIPE)
    *parents, last = path.split(".")
    node = recipe
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return recipe


BAD = [
    ("training.epochs", 0, "'training.epochs' must be >= 1, got 0"),
    ("training.epochs", -3, "'training.epochs' must be >= 1, got -3"),
    ("training.batch_size", 0, "'training.batch_size' must be >= 1, got 0"),
    ("training.seed", -1, r"'training.seed' must be in \[0, 4294967295\], got -1"),
    ("training.optimizer.learning_rate", 0, "'training.optimizer.learning_rate' must be > 0, got 0"),
    ("training.optimizer.learning_rate", -0.1, "'training.optimizer.learning_rate' must be > 0"),
    ("training.optimizer.learning_rate", float("nan"), "'training.optimizer.learning_rate' must be > 0, got nan"),
    ("training.optimizer.learning_rate", float("inf"), "'training.optimizer.learning_rate' must be > 0, got inf"),
    ("training.optimizer.weight_decay", -1e-4, "'training.optimizer.weight_decay' must be >= 0"),
    ("training.optimizer.momentum", 1.0, r"'training.optimizer.momentum' must be in \[0, 1\)"),
    ("training.schedule.decay_epochs", 0, "'training.schedule.decay_epochs' must be >= 1"),
    ("training.schedule.warmup_epochs", -1, "'training.schedule.warmup_epochs' must be >= 0"),
    ("training.schedule.decay_rate", 0, r"'training.schedule.decay_rate' must be in \(0, 1\]"),
    ("training.schedule.decay_rate", 1.5, r"'training.schedule.decay_rate' must be in \(0, 1\]"),
    ("export.version", 0, "'export.version' must be >= 1"),
    ("model.input_size", [16, 32], r"'model.input_size' must be \[height, width\], ints >= 32, got \[16, 32\]"),
    ("model.input_size", [32], r"'model.input_size' must be \[height, width\]"),
    ("training.optimizer.name", "rmsprop", "'training.optimizer.name' is 'rmsprop'; choose one of sgd, adam, adamw"),
    ("training.schedule.name", "linear", "'training.schedule.name' is 'linear'; choose one of constant, step"),
    ("training.strategy", "tpu", "'training.strategy' is 'tpu'; choose one of auto"),
    ("training.balancer", {"name": "dwa", "temprature": 2}, "unknown key 'training.balancer.temprature' "
                                                            r"\(balancer 'dwa' takes: temperature\)"),
    ("training.balancer", {"name": "uncertainty", "alpha": 1}, "unknown key 'training.balancer.alpha' "
                                                               r"\(balancer 'uncertainty' takes: no options\)"),
    ("training.balancer", {"name": "dwa", "temperature": 0}, "'training.balancer': DWA: temperature must be > 0"),
    ("training.balancer", {"name": "fixed", "weights": [1, -1]}, "'training.balancer': FixedWeights: weights"),
    ("training.balancer", {"name": "magic"}, "'training.balancer.name' is 'magic'; choose one of fixed"),
    ("training.balancer", "fixed", "'training.balancer' must be a mapping with a 'name'"),
    ("tasks", [{"name": "va", "kind": "regression", "size": 0}], r"'tasks\[0\]': task 'va': size must be"),
    ("tasks", [{"name": "va", "kind": "regression", "colour": 1}], r"'tasks\[0\]': .*colour"),
]


@pytest.mark.parametrize("path, value, message", BAD, ids=[f"{p}={v}" for p, v, _ in BAD])
def test_out_of_range_or_unknown_values_name_the_file_and_the_field(tmp_path, path, value, message):
    recipe_file = tmp_path / "bad.yaml"
    recipe_file.write_text(yaml.safe_dump(edited(path, value)))
    with pytest.raises(recipes.RecipeError, match=f"^{recipe_file}: {message}"):
        recipes.load_recipe(recipe_file)


def test_momentum_is_refused_for_an_optimizer_without_one(tmp_path):
    recipe_file = tmp_path / "bad.yaml"
    recipe_file.write_text(yaml.safe_dump(edited("training.optimizer", {"name": "adam", "momentum": 0.9})))
    with pytest.raises(recipes.RecipeError, match="'training.optimizer.momentum' applies to sgd only, not 'adam'"):
        recipes.load_recipe(recipe_file)


def test_phase_numbers_are_checked_with_their_index(tmp_path):
    recipe = edited("training.phases", [{"name": "backbone", "epochs": 1},
                                        {"name": "attention", "epochs": 1, "learning_rate": 0.0}])
    with pytest.raises(recipes.RecipeError, match=r"'training.phases\[1\].learning_rate' must be > 0, got 0.0"):
        recipes.validate(recipe, where="x.yaml")


def test_every_shipped_recipe_passes():
    for name in recipes.list_recipes():
        recipes.load_recipe(name)


def test_train_validates_a_dict_recipe_before_anything_is_built(tmp_path):
    with pytest.raises(recipes.RecipeError, match="^recipe 'tiny_e6': 'training.epochs' must be >= 1, got 0"):
        experiments.train(edited("training.epochs", 0), run_dir=tmp_path / "run", output_dir=tmp_path, verbose=0)
    with pytest.raises(recipes.RecipeError, match="^recipe 'tiny_e6': 'training.batch_size' must be >= 1"):
        experiments.train(edited("training.batch_size", 0), run_dir=tmp_path / "run", output_dir=tmp_path)
    with pytest.raises(ValueError, match="epochs must be an int >= 1, got 0"):
        experiments.train(RECIPE, epochs=0, run_dir=tmp_path / "run", output_dir=tmp_path)
    assert not (tmp_path / "run").exists() and not (tmp_path / "tiny_e6").exists()


def test_cli_epochs_zero_is_a_one_line_error_and_publishes_nothing(tmp_path, capsys):
    recipe_file = tmp_path / "tiny_e6.yaml"
    recipe_file.write_text(yaml.safe_dump(RECIPE))
    with pytest.raises(SystemExit) as stopped:
        cli.main(["train", str(recipe_file), "--epochs", "0", "--output-dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and err.strip() == "affect-zoo: error: epochs must be an int >= 1, got 0"
    assert not (tmp_path / "out").exists()


def test_a_recipe_is_parsed_once_into_frozen_typed_specs_with_every_default_from_the_spec_classes():
    recipe = recipes.resolve(RECIPE)
    assert isinstance(recipe.training.optimizer, recipes.OptimizerSpec) and recipe.training.optimizer.learning_rate == 0.001
    with pytest.raises(dataclasses.FrozenInstanceError):
        recipe.training.epochs = 5
    bare = recipes.resolve({k: v for k, v in RECIPE.items() if k != "training"})
    assert bare.training == recipes.TrainingSpec() and bare.export == recipes.ExportSpec()
    assert (bare.training.optimizer.name, bare.training.optimizer.learning_rate, bare.training.epochs) == ("adam", 1e-4, 10)
    assert recipes.resolve(edited("model.input_size", None)).model.input_size == recipes.ModelSpec().input_size


def test_replace_derives_a_new_recipe_and_to_dict_round_trips():
    recipe = recipes.resolve(RECIPE)
    shorter = recipe.replace(**{"training.epochs": 1, "training.optimizer.learning_rate": 0.5})
    assert (shorter.training.epochs, shorter.training.optimizer.learning_rate) == (1, 0.5)
    assert recipe.training.epochs == RECIPE["training"]["epochs"]
    assert recipes.resolve(recipe.to_dict()) == recipe
    assert recipe.to_dict()["model"]["input_size"] == RECIPE["model"]["input_size"]


def test_the_schema_is_the_spec_classes_fields():
    assert set(recipes.SCHEMA["training"]) == {f.name for f in dataclasses.fields(recipes.TrainingSpec)}
    assert set(recipes.SCHEMA["model"]) == {f.name for f in dataclasses.fields(recipes.ModelSpec)}
    assert recipes.SCHEMA["training"]["optimizer"]["learning_rate"] is float

