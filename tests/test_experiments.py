"""Train an entry from its recipe on built data, write weights + card, evaluate, and use it from the CLI."""
import json
import subprocess
import sys

import numpy as np
import pytest
import yaml

import affect_zoo
from affect_zoo import evaluation, experiments, metrics, registry, zoo

RECIPE = {
    "name": "tiny_e6",
    "dataset": {"name": "emotion6", "splits": {"train": "train", "validation": "validation", "test": "test"}},
    "model": {"family": "multitask", "architecture": "afi", "backbone": "vgg16", "input_size": [32, 32],
              "options": {"depth": 2, "recalibrate": True}},
    "tasks": [{"name": "va", "kind": "regression", "size": 2, "branch": 0, "labels": ["valence", "arousal"],
               "target_range": [1, 9]},
              {"name": "emotion", "kind": "distribution", "size": 7, "branch": 1, "circle": "emotion6"}],
    "training": {"epochs": 2, "batch_size": 8, "optimizer": {"name": "adam", "learning_rate": 0.001},
                 "balancer": {"name": "uncertainty"}},
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, emotion6_dummy_data_dir, scratch_zoo):
    with scratch_zoo(tmp_path_factory, RECIPE) as root:
        card = experiments.train("tiny_e6", run_dir=root / "run", data_dir=str(emotion6_dummy_data_dir),
                                 output_dir=root / "saved_models", verbose=0)
        yield root, card, emotion6_dummy_data_dir


def test_training_writes_verified_weights_and_a_card_with_measured_metrics(trained):
    root, card, _ = trained
    folder = root / "saved_models" / "tiny_e6"
    assert (folder / "SHA256SUMS").read_text().split()[0] == zoo.sha256(folder / "tiny_e6.weights.h5")
    stored = json.loads((folder / "card.json").read_text())
    assert stored["weights"]["sha256"] == card["weights"]["sha256"]
    test = stored["metrics"]["test"]
    assert set(test) == {"emotion", "valence", "arousal"}
    assert set(test["emotion"]) >= {"kl", "cosine", "intersection", "top1_accuracy"}
    assert set(test["valence"]) == {"mae", "pearson_r"}
    assert "test" in stored["baselines"]["train_mean"]
    assert stored["produced"]["commit"] and stored["produced"]["wall_time_s"] > 0
    assert stored["produced"]["data_split"]["test"] == "test"
    assert affect_zoo.list_models(pretrained=True) == ["tiny_e6"]
    network_bytes = 4 * affect_zoo.load("tiny_e6").network.count_params()
    assert (folder / "tiny_e6.weights.h5").stat().st_size < 2 * network_bytes  # no optimizer slots (Adam: 3x)


def test_card_metrics_are_what_evaluate_measures_and_match_numpy(trained):
    root, card, data_dir = trained
    model = affect_zoo.load("tiny_e6")
    batches = []
    again = experiments.evaluate(model, registry.load_recipe("tiny_e6"), split="test", data_dir=str(data_dir),
                                 progress=batches.append)
    assert sum(batches) == 11 and len(batches) >= 2  # the CLI's bar: each batch's samples, the whole split
    for task, values in card["metrics"]["test"].items():
        for name, value in values.items():
            assert again[task][name] == pytest.approx(value, rel=1e-4, abs=1e-6)
    outputs, targets = experiments.predictions_and_targets(model, registry.load_recipe("tiny_e6"), "test",
                                                           str(data_dir))
    assert len(targets["emotion"]) == 11
    expected_kl = np.mean(metrics.kl_divergence(targets["emotion"], outputs["emotion"]))
    assert card["metrics"]["test"]["emotion"]["kl"] == pytest.approx(expected_kl, rel=1e-4)
    expected_mae = np.mean(np.abs(targets["va"][:, 0] - outputs["va"][:, 0]))
    assert card["metrics"]["test"]["valence"]["mae"] == pytest.approx(expected_mae, rel=1e-4)


def test_trivial_baseline_predicts_the_training_mean(trained):
    root, card, data_dir = trained
    recipe = registry.load_recipe("tiny_e6")
    train_targets = evaluation._targets(recipe, "train", str(data_dir), affect_zoo.tasks.as_tasks(recipe.tasks))
    test_targets = evaluation._targets(recipe, "test", str(data_dir), affect_zoo.tasks.as_tasks(recipe.tasks))
    mean = train_targets["va"][:, 0].mean()
    expected = np.mean(np.abs(test_targets["va"][:, 0] - mean))
    assert card["baselines"]["train_mean"]["test"]["valence"]["mae"] == pytest.approx(expected, rel=1e-5)


def test_a_second_run_over_the_same_run_dir_needs_resume(trained):
    root, _, data_dir = trained
    with pytest.raises(FileExistsError, match="--resume"):
        experiments.train("tiny_e6", run_dir=root / "run", data_dir=str(data_dir),
                          output_dir=root / "saved_models", verbose=0)


@pytest.mark.slow
def test_cli_predict_json_on_a_real_image_and_a_bad_one(trained, tmp_path, shared_data):
    root, _, _ = trained
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    script = ("import sys; from affect_zoo import registry; "
              f"registry.set_folders(recipes={str(root / 'recipes')!r}, saved_models={str(root / 'saved_models')!r}); "
              "from affect_zoo.cli import main; main(sys.argv[1:])")
    image = shared_data / "emotion6" / "images" / "joy" / "1.jpg"
    result = subprocess.run([sys.executable, "-c", script, "predict", "tiny_e6", str(image), str(bad), "--json"],
                            capture_output=True, text=True, timeout=300)
    rows = json.loads(result.stdout)
    assert rows[0]["image"] == str(image) and len(rows[0]["emotion"]) == 7
    assert np.isfinite(rows[0]["valence"]) and np.isfinite(rows[0]["arousal"])  # an unbounded linear head
    assert rows[0]["emotion_label"] in affect_zoo.emotion.EMOTION6.names
    assert rows[1]["image"] == str(bad) and "bad.jpg" in rows[1]["error"]
    assert result.returncode == 1


def test_cli_export_and_serve_config(trained, tmp_path, capsys):
    from affect_zoo import cli

    out = tmp_path / "exports"
    cli.main(["export", "tiny_e6", str(out), "--json"])
    exported = json.loads(capsys.readouterr().out)
    assert exported["path"] == str(out / "tiny_e6" / "1")
    assert {"emotion_probs", "emotion_polarity", "valence", "arousal"} <= set(exported["outputs"])
    assert (out / "tiny_e6" / "1" / "saved_model.pb").is_file()
    assert (out / "tiny_e6" / "1" / "assets.extra" / "tf_serving_warmup_requests").is_file()
    with pytest.raises(SystemExit) as stopped:
        cli.main(["export", "tiny_e6", str(out)])
    assert stopped.value.code == 2 and "--overwrite" in capsys.readouterr().err
    cli.main(["serve-config", str(out)])
    config = (out / "models.config").read_text()
    assert 'name: "tiny_e6"' in config and str(out / "tiny_e6") in config


def test_cli_export_writes_the_recipes_export_version_unless_told_another(trained, tmp_path, capsys):
    from affect_zoo import cli

    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "tiny_e6.yaml").write_text(yaml.safe_dump({**RECIPE, "export": {"version": 4}}))
    with registry.using(recipes=tmp_path / "recipes"):
        cli.main(["export", "tiny_e6", str(tmp_path / "out"), "--json"])
        assert json.loads(capsys.readouterr().out)["path"] == str(tmp_path / "out" / "tiny_e6" / "4")
        cli.main(["export", "tiny_e6", str(tmp_path / "out"), "--version", "7", "--json"])
        assert json.loads(capsys.readouterr().out)["path"] == str(tmp_path / "out" / "tiny_e6" / "7")


@pytest.mark.slow
def test_fine_tuning_starts_from_another_entry_by_layer_name(trained):
    """A recipe whose ``init`` names an entry starts from its weights wherever layer names and shapes match (here
    the branches and heads of an AFI entry under a cross-stitch net); one Adam step at learning rate 1e-9 (a
    recipe's rate must be > 0) moves each by at most ~1e-9."""
    root, _, data_dir = trained
    recipe = {"name": "tiny_e6_ft", "extends": "tiny_e6", "init": "tiny_e6",
              "model": {"architecture": "cross_stitch"},
              "training": {"epochs": 1, "optimizer": {"name": "adam", "learning_rate": 1e-9}}}
    (root / "recipes" / "tiny_e6_ft.yaml").write_text(yaml.safe_dump(recipe))
    experiments.train("tiny_e6_ft", run_dir=root / "run_ft", data_dir=str(data_dir),
                      output_dir=root / "saved_models", steps_per_epoch=1, verbose=0)
    source, tuned = affect_zoo.load("tiny_e6").network, affect_zoo.load("tiny_e6_ft").network
    untrained = affect_zoo.load("tiny_e6_ft", weights=None).network
    names = {layer.name for layer in tuned.layers}
    shared = [layer.name for layer in source.layers if layer.weights and layer.name in names and
              [w.shape for w in layer.weights] == [w.shape for w in tuned.get_layer(layer.name).weights]]
    assert any(name.startswith("a_") for name in shared) and "emotion_circle_head" in shared
    assert not any(name.startswith("interaction_") for name in shared)  # AFI's and cross-stitch's differ
    for name in shared:
        for before, after, fresh in zip(source.get_layer(name).weights, tuned.get_layer(name).weights,
                                        untrained.get_layer(name).weights):
            np.testing.assert_allclose(np.asarray(after), np.asarray(before), rtol=0, atol=1e-7, err_msg=name)
    assert not np.array_equal(np.asarray(untrained.get_layer(shared[0]).weights[0]),
                              np.asarray(source.get_layer(shared[0]).weights[0]))
