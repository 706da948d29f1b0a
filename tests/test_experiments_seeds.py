"""Model selection on the validation split and multi-seed entries (``training.select``, ``training.seeds``)."""
import copy
import json

import h5py
import keras
import numpy as np
import pytest

import affect_zoo
from affect_zoo import artifacts, experiments, recipes, registry


RECIPE = {
    "name": "tiny_seeds",
    "dataset": {"name": "emotion6", "splits": {"train": "train", "validation": "validation", "test": "test"}},
    "model": {"family": "multitask", "architecture": "hard_share", "backbone": "vgg16", "input_size": [32, 32],
              "weights_dtype": "float16", "options": {"depth": 1}},
    "tasks": [{"name": "va", "kind": "regression", "size": 2, "branch": 0, "labels": ["valence", "arousal"],
               "target_range": [1, 9]},
              {"name": "emotion", "kind": "distribution", "size": 7, "branch": 1, "circle": "emotion6"}],
    "training": {"epochs": 3, "batch_size": 8, "optimizer": {"name": "adam", "learning_rate": 0.003},
                 "seeds": [3, 5], "select": {"monitor": "val_loss", "mode": "min"}},
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, emotion6_dummy_data_dir, scratch_zoo):
    with scratch_zoo(tmp_path_factory, RECIPE) as root:
        card = experiments.train("tiny_seeds", run_dir=root / "run", data_dir=str(emotion6_dummy_data_dir),
                                 output_dir=root / "saved_models", verbose=0)
        yield root, card, str(emotion6_dummy_data_dir)


@pytest.mark.slow
def test_each_seed_selects_its_best_validation_epoch(trained):
    root, card, _ = trained
    for seed in (3, 5):
        history = experiments.read_history(root / "run" / f"seed_{seed}")
        assert sorted(history) == [1, 2, 3]
        losses = {epoch: float(row["val_loss"]) for epoch, row in history.items()}
        selected = card["produced"]["seeds"][str(seed)]["selected"]
        assert selected["epoch"] == min(losses, key=losses.get)
        assert selected["value"] == pytest.approx(losses[selected["epoch"]])
        assert card["produced"]["seeds"][str(seed)]["wall_time_s"] == pytest.approx(
            sum(float(row["epoch_seconds"]) for row in history.values()), abs=0.1)


@pytest.mark.slow
def test_the_shipped_seed_is_best_on_validation_and_reproduces_its_test_metrics(trained):
    root, card, data_dir = trained
    summary = card["metrics"]["test_over_seeds"]
    values = {s: card["produced"]["seeds"][str(s)]["selected"]["value"] for s in (3, 5)}
    assert summary["shipped_seed"] == min(values, key=values.get)
    shipped = summary["per_seed"][str(summary["shipped_seed"])]  # measured in float32, before the file was halved
    for task, values in card["metrics"]["test"].items():
        for name, value in values.items():
            assert value == pytest.approx(shipped[task][name], abs=artifacts.FLOAT16_TOLERANCE)
    assert set(card["metrics"]["validation"]) == {"valence", "arousal", "emotion"}
    again = experiments.evaluate(affect_zoo.load("tiny_seeds"), registry.load_recipe("tiny_seeds"), split="test",
                                 data_dir=data_dir)
    for task, values in card["metrics"]["test"].items():
        for name, value in values.items():
            assert again[task][name] == pytest.approx(value, rel=1e-4, abs=1e-6)


@pytest.mark.slow
def test_mean_and_sd_over_seeds_match_numpy(trained):
    root, card, _ = trained
    summary = card["metrics"]["test_over_seeds"]
    for task in ("valence", "emotion"):
        for metric in summary["mean"][task]:
            column = np.array([summary["per_seed"][s][task][metric] for s in ("3", "5")])
            assert summary["mean"][task][metric] == pytest.approx(column.mean())
            assert summary["sd"][task][metric] == pytest.approx(np.std(column, ddof=1))
    stored = json.loads((root / "saved_models" / "tiny_seeds" / "card.json").read_text())
    assert stored["metrics"]["test_over_seeds"]["seeds"] == [3, 5]


@pytest.mark.slow
def test_resume_skips_finished_seeds(trained, monkeypatch):
    root, card, data_dir = trained
    with pytest.raises(FileExistsError, match="--resume"):
        experiments.train("tiny_seeds", run_dir=root / "run", data_dir=data_dir, output_dir=root / "again",
                          verbose=0)

    def no_training(*args, **kwargs):
        raise AssertionError("a finished seed was trained again")

    monkeypatch.setattr(experiments, "_run", no_training)
    again = experiments.train("tiny_seeds", run_dir=root / "run", data_dir=data_dir, output_dir=root / "again",
                              resume=True, verbose=0)
    assert again["metrics"]["test_over_seeds"] == card["metrics"]["test_over_seeds"]
    assert again["weights"]["sha256"] != "" and again["metrics"]["test"] == card["metrics"]["test"]


def test_select_loads_the_best_epochs_checkpoint(tmp_path):
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2, name="d")(inputs))
    (tmp_path / "checkpoints").mkdir()
    kernels = {}
    for epoch in (1, 2, 3):
        kernels[epoch] = np.full((3, 2), float(epoch), "float32")
        model.get_layer("d").kernel.assign(kernels[epoch])
        model.save_weights(str(tmp_path / "checkpoints" / f"epoch_{epoch:03d}.weights.h5"))
    (tmp_path / experiments.HISTORY).write_text("epoch,loss,val_loss\n0,1.0,0.5\n1,0.9,0.3\n2,0.8,0.4\n")
    rows = experiments.read_history(tmp_path)
    chosen = experiments._select_epoch(model, tmp_path, rows, recipes.SelectSpec("val_loss", "min"))
    assert chosen["epoch"] == 2 and chosen["value"] == pytest.approx(0.3)
    np.testing.assert_array_equal(model.get_layer("d").kernel, kernels[2])
    chosen = experiments._select_epoch(model, tmp_path, rows, recipes.SelectSpec("val_loss", "max"))
    assert chosen["epoch"] == 1
    np.testing.assert_array_equal(model.get_layer("d").kernel, kernels[1])
    with pytest.raises(ValueError, match="val_top1"):
        experiments._select_epoch(model, tmp_path, rows, recipes.SelectSpec("val_top1"))


@pytest.mark.parametrize("change,message", [
    ({"select": None}, "needs 'training.select'"),
    ({"seed": 1}, "not both"),
    ({"seeds": [1, 1]}, "distinct"),
    ({"seeds": []}, "non-empty"),
    ({"select": {"monitor": "loss"}}, "validation log"),
    ({"select": {"monitor": "val_loss", "mode": "lowest"}}, "min or max"),
])
def test_recipe_validation(change, message):
    recipe = copy.deepcopy(RECIPE)
    recipe["training"].update(change)
    recipe["training"] = {k: v for k, v in recipe["training"].items() if v is not None}
    with pytest.raises(recipes.RecipeError, match=message):
        recipes.validate(recipe, where="tiny.yaml")


@pytest.mark.slow
def test_float16_entry_file_loads_as_float32_and_its_card_measures_that_file(trained):
    root, card, _ = trained
    path = root / "saved_models" / "tiny_seeds" / "tiny_seeds.weights.h5"
    dtypes = set()
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, item: dtypes.add(item.dtype) if isinstance(item, h5py.Dataset) else None)
    change = card["produced"]["float16_max_metric_change"]
    if card["weights"]["dtype"] == "float16":
        assert dtypes == {np.dtype("float16")} and change <= artifacts.FLOAT16_TOLERANCE
    else:  # refused: the metrics moved too much, the float32 file ships
        assert dtypes == {np.dtype("float32")} and change > artifacts.FLOAT16_TOLERANCE
    model = affect_zoo.load("tiny_seeds")
    assert {v.dtype for v in model.network.weights} == {"float32"}


def test_cast_h5_keeps_every_array_and_its_layout(tmp_path):
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.BatchNormalization(name="bn")(keras.layers.Dense(2, name="d")(inputs)))
    model.get_layer("d").kernel.assign(np.array([[0.1, 2.0], [-3.25, 1e-3], [65000.0, 0.5]], "float32"))
    path = tmp_path / "m.weights.h5"
    model.save_weights(str(path))
    artifacts.cast_h5(path, np.float16)
    other = keras.Model(inputs, keras.layers.BatchNormalization(name="bn")(keras.layers.Dense(2, name="d")(inputs)))
    other.load_weights(str(path))
    for a, b in zip(model.get_weights(), other.get_weights(), strict=True):
        np.testing.assert_array_equal(b, a.astype(np.float16).astype(np.float32))
    assert not list(tmp_path.glob("*.tmp"))


def test_paired_comparison_by_hand():
    def card(name, kl_by_seed, r_by_seed):
        return {"name": name, "metrics": {"test_over_seeds": {"per_seed": {
            str(seed): {"emotion": {"kl": kl}, "valence": {"pearson_r": r}}
            for seed, kl, r in zip((0, 1, 2), kl_by_seed, r_by_seed)}}}}

    a = card("a", [0.40, 0.45, 0.50], [0.60, 0.55, 0.70])
    b = card("b", [0.42, 0.44, 0.55], [0.58, 0.60, 0.65])
    kl = experiments.paired_comparison(a, b, "emotion", "kl")
    np.testing.assert_allclose(kl["differences"], [-0.02, 0.01, -0.05])
    assert kl["mean_difference"] == pytest.approx(-0.02)
    assert kl["sd_difference"] == pytest.approx(np.sqrt(((0.0) ** 2 + 0.03 ** 2 + 0.03 ** 2) / 2))
    assert kl["a_better"] == 2  # lower KL is better
    r = experiments.paired_comparison(a, b, "valence", "pearson_r")
    assert r["a_better"] == 2 and r["mean_difference"] == pytest.approx(0.02 / 3)
    with pytest.raises(ValueError, match="test_over_seeds"):
        experiments.paired_comparison(a, {"name": "c", "metrics": {"test": {}}}, "emotion", "kl")


@pytest.mark.slow
def test_cli_prints_a_multi_seed_card(trained, capsys):
    from affect_zoo import cli

    _, card, _ = trained
    cli._print_metrics(card["metrics"], card["baselines"])
    lines = capsys.readouterr().out.splitlines()
    mean = card["metrics"]["test_over_seeds"]["mean"]["emotion"]["kl"]
    sd = card["metrics"]["test_over_seeds"]["sd"]["emotion"]["kl"]
    assert any(line.startswith("test (mean ± sd, seeds 3, 5)") and f"kl={mean:.4f} ± {sd:.4f}" in line
               for line in lines)
    assert any(line.startswith("validation ") for line in lines) and any(line.startswith("train_mean:test")
                                                                        for line in lines)
