"""Training the other families from their recipes on the builders' dummy data: semdep in four phases with VOC's
difficult labels ignored (phase order, frozen parts, resume by phase) and mmemo's multimodal network sized by its
dataset (per-classifier metrics, load without the dataset)."""
import json
import shutil

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
import yaml
from PIL import Image
from test_semdep import snapshot

import affect_zoo
from affect_zoo import data, evaluation, experiments, families, metrics_multilabel, recipes, registry, zoo
from affect_zoo.models import mmemo, semdep
from affect_zoo.tasks import Task
from affect_zoo.text import Vocabulary


SPLITS = {"train": "train", "validation": "validation", "test": "test"}
PHASES = ("backbone", "attention", "semantic", "all")
PHASE_RATES = (0.01, 0.01, 0.01, 0.001)  # the last one small: a resumed phase 4 stays near phase 3's weights
SEMDEP = {
    "name": "tiny_semdep",
    "dataset": {"name": "voc2007", "splits": SPLITS, "targets": {"labels": ["labels"]},
                "ignore": {"labels": "difficult"}},
    # VGG16: a random MobileNetV2 gives ~0 features at 64 px, whose dead attention ReLUs would never train on the
    # paper's attention path (which has no confidence conv of its own)
    "model": {"family": "semdep", "backbone": "vgg16", "input_size": [64, 64],
              "options": {"attention_filters": [8, 8], "semantic_filters": [8, 8], "se_ratio": 4}},
    "tasks": [{"name": "labels", "kind": "multilabel", "size": 20, "loss": "masked_bce"}],
    "training": {"batch_size": 2, "optimizer": {"name": "adam", "learning_rate": 0.01},
                 "phases": [{"name": name, "epochs": 1, "trainable": list(semdep.PHASES[k]), "learning_rate": rate}
                            for k, (name, rate) in enumerate(zip(PHASES, PHASE_RATES), start=1)]},
}
MMEMO = {
    "name": "tiny_mmemo",
    "dataset": {"name": "affect_multimodal", "splits": SPLITS,
                "targets": {name: ["label"] for name in mmemo.OUTPUT_NAMES}},
    "model": {"family": "mmemo", "backbone": "vgg16", "input_size": [32, 32],
              "options": {"text_embedding_dim": 8, "text_filters": 4, "tag_embedding_dim": 8, "tag_filters": 8,
                          "feature_dim": 8, "classifier_units": [8], "word_vectors": None}},
    "tasks": [{"name": name, "kind": "classification", "size": 4} for name in mmemo.OUTPUT_NAMES],
    "training": {"epochs": 1, "batch_size": 4, "optimizer": {"name": "adam", "learning_rate": 0.001}},
}


@pytest.fixture(scope="module")
def zoo_root(tmp_path_factory):
    """A recipes/ and saved_models/ of this module's own, so nothing is written into the repository's."""
    root = tmp_path_factory.mktemp("zoo")
    (root / "recipes").mkdir()
    with registry.using(recipes=root / "recipes", saved_models=root / "saved_models"):
        yield root


def train_entry(root, recipe, data_dir, run):
    (root / "recipes" / f"{recipe['name']}.yaml").write_text(yaml.safe_dump(recipe))
    return experiments.train(recipe["name"], run_dir=root / run, data_dir=str(data_dir),
                             output_dir=root / "saved_models", steps_per_epoch=2, verbose=0)


@pytest.fixture(scope="module")
def semdep_run(zoo_root, voc2007_dummy_data_dir):
    card = train_entry(zoo_root, SEMDEP, voc2007_dummy_data_dir, "semdep_run")
    return zoo_root, card, voc2007_dummy_data_dir


def phase_dir(run_dir, k):
    return run_dir / f"phase_{k}_{PHASES[k - 1]}"


def part_weights(path):
    """{part: [arrays]} of the semdep network saved at ``path`` (every variable, BatchNorm statistics included)."""
    network = zoo.model_from_recipe(registry.load_recipe("tiny_semdep")).network
    network.load_weights(str(path))
    return snapshot(network)


@pytest.mark.slow
def test_phases_ran_in_order_and_each_moved_only_its_parts(semdep_run):
    root, card, _ = semdep_run
    markers = [json.loads((phase_dir(root / "semdep_run", k) / experiments.PHASE_DONE).read_text())
               for k in range(1, 5)]
    assert [m["name"] for m in markers] == list(PHASES) and [m["phase"] for m in markers] == [1, 2, 3, 4]
    assert all(a["finished"] < b["finished"] for a, b in zip(markers, markers[1:]))
    assert [(p["output"], p["learning_rate"], p["skipped"]) for p in card["produced"]["phases"]] == [
        ("labels_global", 0.01, False), ("labels_semantic", 0.01, False), ("labels_semantic", 0.01, False),
        ("labels", 0.001, False)]
    after = [part_weights(phase_dir(root / "semdep_run", k) / experiments.PHASE_WEIGHTS) for k in range(1, 5)]
    for k in (2, 3, 4):
        for part in semdep.PARTS:
            changed = any(not np.array_equal(b, a) for b, a in zip(after[k - 2][part], after[k - 1][part]))
            assert changed == (part in semdep.PHASES[k]), (PHASES[k - 1], part)


def test_difficult_labels_arrive_as_minus_one(voc2007_dummy_data_dir):
    data_dir = voc2007_dummy_data_dir
    recipe = recipes.resolve(SEMDEP)
    builder = tfds.builder_from_directory(str(data_dir / "voc2007" / "1.0.0"))
    ignored = 0
    for split in ("train", "validation", "test"):
        raw = list(tfds.as_numpy(builder.as_dataset(split=split, decoders={"image": tfds.decode.SkipDecoding()})))
        expected = np.stack([np.where(ex["difficult"], -1.0, ex["labels"].astype(np.float32)) for ex in raw])
        pipeline = evaluation.pipeline(recipe, split, False, str(data_dir), tf.distribute.get_strategy())
        got = np.concatenate([y["labels"].numpy() for _, y in pipeline])
        np.testing.assert_array_equal(got, expected)
        ignored += int((got == -1).sum())
    assert ignored > 0


@pytest.mark.parametrize("ignore, message", [
    ({"labels": "image_id"}, r"mask feature 'image_id' is string \(\), expected a boolean \(20,\) mask"),
    ({"labels": "nope"}, r"mask feature 'nope' is not in the dataset"),
    ({"other": "difficult"}, r"ignore names task 'other'"),
])
def test_ignore_errors_name_the_task_and_feature(voc2007_dummy_data_dir, ignore, message):
    source = data.load_split(str(voc2007_dummy_data_dir / "voc2007" / "1.0.0"), "test")
    with pytest.raises(ValueError, match=message):
        data.make_pipeline(source, [Task("labels", "multilabel", 20, loss="masked_bce")], (32, 32), 2,
                           training=False, targets="voc2007", ignore=ignore)
    with pytest.raises(ValueError, match=r"task 'labels' is binary; only multilabel"):
        data.make_pipeline(source, [Task("labels", "binary")], (32, 32), 2, training=False,
                           targets={"labels": ["labels"]}, ignore={"labels": "difficult"})


@pytest.mark.slow
def test_semdep_card_has_test_map_that_the_loaded_entry_reproduces(semdep_run):
    root, card, data_dir = semdep_run
    test = card["metrics"]["test"]["labels"]
    assert set(test) == {"map", "map_11point"} and 0.0 <= test["map"] <= 1.0
    assert set(card["baselines"]["train_mean"]["test"]["labels"]) == {"map", "map_11point"}
    assert card["produced"]["epochs"] == 4
    model = affect_zoo.load("tiny_semdep")
    outputs, targets = experiments.predictions_and_targets(model, registry.load_recipe("tiny_semdep"), "test",
                                                           str(data_dir))
    assert targets["labels"].shape == (3, 20)
    assert test["map"] == pytest.approx(metrics_multilabel.mean_average_precision(targets["labels"],
                                                                                  outputs["labels"]), rel=1e-5)


@pytest.mark.slow
def test_resume_skips_finished_phases_and_continues_a_killed_one(semdep_run, tmp_path):
    root, _, data_dir = semdep_run
    run = tmp_path / "run"
    shutil.copytree(root / "semdep_run", run)
    kwargs = dict(run_dir=run, data_dir=str(data_dir), output_dir=tmp_path / "out", steps_per_epoch=2, verbose=0)
    with pytest.raises(FileExistsError, match="--resume"):
        experiments.train("tiny_semdep", **kwargs)
    finished = {k: (phase_dir(run, k) / experiments.PHASE_DONE).read_text() for k in (1, 2, 3)}
    first_phase4 = part_weights(phase_dir(run, 4) / experiments.PHASE_WEIGHTS)

    # killed after phase 4's only epoch was backed up, before it was marked done: nothing left to train
    (phase_dir(run, 4) / experiments.PHASE_DONE).unlink()
    (phase_dir(run, 4) / experiments.PHASE_WEIGHTS).unlink()
    card = experiments.train("tiny_semdep", resume=True, **kwargs)
    assert [p["skipped"] for p in card["produced"]["phases"]] == [True, True, True, False]
    restored = part_weights(phase_dir(run, 4) / experiments.PHASE_WEIGHTS)
    for part in semdep.PARTS:
        assert all(np.array_equal(a, b) for a, b in zip(first_phase4[part], restored[part])), part

    # killed before phase 4's first epoch ended: phase 4 trains again from phase 3's weights
    shutil.rmtree(phase_dir(run, 4))
    (phase_dir(run, 4) / "logs").mkdir(parents=True)
    card = experiments.train("tiny_semdep", resume=True, overwrite_entry=True, **kwargs)  # the entry of the run above
    assert [p["skipped"] for p in card["produced"]["phases"]] == [True, True, True, False]
    assert {k: (phase_dir(run, k) / experiments.PHASE_DONE).read_text() for k in (1, 2, 3)} == finished
    phase3 = part_weights(phase_dir(run, 3) / experiments.PHASE_WEIGHTS)
    again = part_weights(phase_dir(run, 4) / experiments.PHASE_WEIGHTS)
    for part in ("global", "attention", "semantic", "fusion"):  # two Adam steps at 0.001 from phase 3's values
        assert max(np.abs(a - b).max() for a, b in zip(phase3[part], again[part])) < 0.01, part
        assert any(not np.array_equal(a, b) for a, b in zip(phase3[part], again[part])), part
    assert "map" in card["metrics"]["test"]["labels"]


@pytest.mark.parametrize("edit, message", [
    (lambda r: r["model"].update(family="multitask", architecture="afi"), r"training\.phases: only the semdep"),
    (lambda r: r["training"]["phases"][1].update(trainable=["semantic"]),
     r"training\.phases\[1\]\.trainable: phase 'attention' trains \['attention', 'semantic'\]"),
    (lambda r: r["model"]["options"].update(attention="confidence"),
     r"training\.phases\[1\]\.trainable: phase 'attention' trains \['attention'\]"),
    (lambda r: r["model"]["options"].update(attention="srn"), r"model\.options\.attention: 'srn' is not one of"),
    (lambda r: r["training"]["phases"][0].update(name="heads"), r"training\.phases\[0\]\.name: unknown phase"),
])
def test_phase_recipe_errors_name_the_key(edit, message):
    recipe = json.loads(json.dumps(SEMDEP))
    edit(recipe)
    with pytest.raises(recipes.RecipeError, match=message):
        resolved = recipes.resolve(recipe)
        families.family_of(resolved).check(resolved)


@pytest.mark.parametrize("edit, message", [
    (lambda r: r["tasks"][0].update(loss="bce"), r"'dataset\.ignore\.labels' .* loss: masked_bce"),
    (lambda r: r["dataset"].update(ignore={"other": "difficult"}), r"'dataset\.ignore\.other' names no task"),
    (lambda r: r["training"].update(epochs=10), r"'training\.epochs' is 10 but the phases train 4"),
    (lambda r: r["training"]["phases"][2].pop("epochs"), r"'training\.phases\[2\]\.epochs' is missing"),
])
def test_ignore_and_phase_schema_errors_name_the_key(edit, message):
    recipe = json.loads(json.dumps(SEMDEP))
    edit(recipe)
    with pytest.raises(recipes.RecipeError, match=message):
        recipes.validate(recipe)


@pytest.fixture(scope="module")
def mmemo_run(zoo_root, affect_multimodal_dummy_data_dir):
    card = train_entry(zoo_root, MMEMO, affect_multimodal_dummy_data_dir, "mmemo_run")
    return zoo_root, card, affect_multimodal_dummy_data_dir


def dummy_builder(data_dir):
    return tfds.builder_from_directory(str(data_dir / "affect_multimodal" / "1.1.0"))


@pytest.mark.slow
def test_mmemo_card_has_accuracy_per_classifier_on_the_samples_it_applies_to(mmemo_run):
    root, card, data_dir = mmemo_run
    builder = dummy_builder(data_dir)
    raw = list(tfds.as_numpy(builder.as_dataset(split="test", decoders={"image": tfds.decode.SkipDecoding()})))
    test = card["metrics"]["test"]
    assert set(test) == {*mmemo.OUTPUT_NAMES, "prediction"}
    for combo, name in zip(mmemo.CLASSIFIERS, mmemo.OUTPUT_NAMES):
        applies = sum(all(ex[f"{m}_present"] for m in combo) for ex in raw)
        assert test[name]["samples"] == applies, name
        assert (0.0 <= test[name]["accuracy"] <= 1.0) if applies else np.isnan(test[name]["accuracy"])
    assert test["prediction"]["samples"] == len(raw) == 3
    assert set(card["baselines"]["train_mean"]["test"]) == set(test)
    metadata = builder.info.metadata
    assert card["produced"]["network_options"] == {**mmemo.dataset_options(metadata), "text_embedding_dim": 8,
                                                   "word_vectors": None}
    folder = root / "saved_models" / "tiny_mmemo"
    sums = dict(reversed(line.split()) for line in (folder / "SHA256SUMS").read_text().splitlines())
    for kind in ("text", "tags"):
        path = folder / f"{kind}_vocabulary.txt"
        assert Vocabulary.load(path).tokens == list(metadata[f"{kind}_vocabulary"])
        assert sums[path.name] == zoo.sha256(path)
    assert sums["tiny_mmemo.weights.h5"] == card["weights"]["sha256"]


@pytest.mark.slow
def test_loaded_mmemo_entry_reproduces_its_card_and_predicts_new_posts(mmemo_run):
    root, card, data_dir = mmemo_run
    model = affect_zoo.load("tiny_mmemo")
    recipe = registry.load_recipe("tiny_mmemo")
    again = experiments.evaluate(model, recipe, split="test", data_dir=str(data_dir))
    for name, values in card["metrics"]["test"].items():
        assert again[name]["samples"] == values["samples"]
        assert again[name]["accuracy"] == pytest.approx(values["accuracy"], nan_ok=True)
    folder = root / "saved_models" / "tiny_mmemo"
    text_vocab, tags_vocab = (Vocabulary.load(folder / f"{k}_vocabulary.txt") for k in ("text", "tags"))
    options = card["produced"]["network_options"]
    records = [{"image": np.full((20, 30, 3), 120, np.uint8), "text": "what a happy day", "tags": ["beach"]},
               {"text": "so angry"}, {"tags": ["storm"]}]
    x = mmemo.encode_records(records, text_vocab, tags_vocab, (32, 32, 3), options["max_text_length"],
                             options["max_tags"])
    out = model(x)
    np.testing.assert_array_equal(out["answered_by"], [6, 1, 2])
    assert out["prediction"].shape == (3, 4)
    np.testing.assert_allclose(np.sum(out["prediction"], axis=1), 1.0, rtol=1e-5)
    # load attached the shipped vocabularies, so predict takes the posts as they are
    assert model.vocabularies == {"text": text_vocab, "tags": tags_vocab}
    got = affect_zoo.predict(model, [r.get("image") for r in records], text=[r.get("text") for r in records],
                             tags=[r.get("tags") for r in records])
    assert list(got["answered_by"]) == ["p_all", "p_text", "p_tags"]
    np.testing.assert_allclose(got["prediction_probs"], out["prediction"], atol=1e-5)


@pytest.mark.slow
def test_mmemo_entry_predicts_through_the_cli_with_text_and_tags(mmemo_run, tmp_path, capsys):
    from affect_zoo import cli

    image = tmp_path / "post.png"
    Image.fromarray(np.full((20, 30, 3), 120, np.uint8)).save(image)
    cli.main(["predict", "tiny_mmemo", str(image), "--text", "what a happy day", "--tags", "beach, sun", "--json"])
    row, = json.loads(capsys.readouterr().out)
    want = affect_zoo.predict("tiny_mmemo", [str(image)], text=["what a happy day"], tags=[["beach", "sun"]])
    assert row["image"] == str(image) and row["answered_by"] == want["answered_by"][0] == "p_all"
    np.testing.assert_allclose(row["prediction_probs"], want["prediction_probs"][0], atol=1e-6)
    cli.main(["predict", "tiny_mmemo", "--text", "so angry", "--text", "", "--tags", "", "--tags", "storm", "--json"])
    rows = json.loads(capsys.readouterr().out)
    assert [r["post"] for r in rows] == [0, 1]
    assert [r["answered_by"] for r in rows] == ["p_text", "p_tags"]
    cli.main(["predict", "tiny_mmemo", "--text", "so angry"])
    assert capsys.readouterr().out.startswith("post 0: ")


@pytest.mark.slow
def test_mmemo_entry_exports_through_the_cli_with_text_and_tags_inputs(mmemo_run, tmp_path, capsys):
    from affect_zoo import cli, export

    cli.main(["export", "tiny_mmemo", str(tmp_path), "--json"])
    printed = json.loads(capsys.readouterr().out)
    info = export.read_export_info(printed["path"])
    assert set(info["signatures"]["serving_default"]) == {"images", "text", "tags"}
    assert printed["outputs"] == info["outputs"] and "answered_by" in info["outputs"]
    served = tf.saved_model.load(printed["path"]).signatures["serving_default"]
    out = served(images=tf.constant([b""]), text=tf.constant(["so angry"]), tags=tf.constant([[""]]))
    assert out["answered_by"].numpy().tolist() == [mmemo.OUTPUT_NAMES.index("p_text")]


@pytest.mark.slow
def test_mmemo_recipe_that_disagrees_with_its_dataset_is_refused(mmemo_run, tmp_path):
    _, _, data_dir = mmemo_run
    recipe = json.loads(json.dumps(MMEMO))
    for task in recipe["tasks"]:
        task["size"] = 8
    with pytest.raises(recipes.RecipeError, match=r"tasks\[0\]\.size: 8, but dataset 'affect_multimodal' has 4"):
        experiments.train(recipe, run_dir=tmp_path / "a", data_dir=str(data_dir), output_dir=tmp_path, verbose=0)
    recipe = json.loads(json.dumps(MMEMO))
    recipe["dataset"]["targets"]["p_all"] = ["image_present"]
    with pytest.raises(recipes.RecipeError, match=r"dataset\.targets\.p_all: mmemo trains every classifier"):
        experiments.train(recipe, run_dir=tmp_path / "b", data_dir=str(data_dir), output_dir=tmp_path, verbose=0)
