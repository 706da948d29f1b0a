"""The TensorFlow-free registry: entries from injected folders, code-registered entries scoped to a block, cards."""
import json
import subprocess
import sys

import pytest
import yaml

from affect_zoo import recipes, registry
from affect_zoo.tasks import describe_outputs

RECIPE = {"name": "tiny_reg", "description": "a tiny entry", "dataset": {"name": "emotion6"},
          "model": {"family": "multitask", "architecture": "single", "backbone": "mobilenetv2", "input_size": [32, 32]},
          "tasks": [{"name": "emotion", "kind": "distribution", "size": 7, "circle": "emotion6"},
                    {"name": "va", "kind": "regression", "size": 2, "labels": ["valence", "arousal"]}]}


@pytest.fixture
def folders(tmp_path):
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "tiny_reg.yaml").write_text(yaml.safe_dump(RECIPE))
    (tmp_path / "recipes" / "tiny_reg_child.yaml").write_text(yaml.safe_dump(
        {"name": "tiny_reg_child", "extends": "tiny_reg", "model": {"architecture": "hard_share"}}))
    return tmp_path


def test_entries_come_from_the_folders_in_use_and_only_there(folders):
    shipped = registry.list_models()
    with registry.using(recipes=folders / "recipes", saved_models=folders / "saved_models") as used:
        assert used.recipes == folders / "recipes" and registry.folders() == used
        assert registry.list_models() == ["tiny_reg", "tiny_reg_child"]
        assert registry.list_models("*child") == ["tiny_reg_child"]
        assert registry.list_models(pretrained=True) == []
        assert registry.load_recipe("tiny_reg_child").model.backbone == "mobilenetv2"  # extends, same folder
        with pytest.raises(ValueError, match=r"unknown model 'tiny_rg'; did you mean: tiny_reg"):
            registry.model_card("tiny_rg")
    assert registry.list_models() == shipped and "tiny_reg" not in shipped


def test_an_untrained_card_says_what_its_recipe_says(folders):
    with registry.using(recipes=folders / "recipes", saved_models=folders / "saved_models"):
        card = registry.model_card("tiny_reg_child")
    assert (card.name, card.architecture, card.backbone, card.dataset) == ("tiny_reg_child", "hard_share",
                                                                            "mobilenetv2", "emotion6")
    assert card.input_size == (32, 32) and card.recipe == "recipes/tiny_reg_child.yaml" and not card.pretrained
    assert [t["name"] for t in card.tasks] == ["emotion", "va"]
    assert card.tasks[0]["labels"] == ("anger", "disgust", "fear", "joy", "sadness", "surprise", "neutral")
    assert card.tasks[0]["loss"] == "kl"  # the kind's default, filled in by Task
    assert set(card.outputs) == {"emotion", "emotion_probs", "emotion_label", "emotion_polarity", "emotion_angle",
                                 "emotion_intensity", "va", "valence", "arousal"}


def test_a_published_card_is_seen_at_once_and_wins_over_the_recipe(folders):
    with registry.using(recipes=folders / "recipes", saved_models=folders / "saved_models"):
        assert not registry.model_card("tiny_reg").pretrained
        card = registry.card_from_recipe(registry.load_recipe("tiny_reg"))
        card.weights = {"file": "tiny_reg.weights.h5", "sha256": "0" * 64}
        card.metrics = {"test": {"emotion": {"kl": 0.5}}}
        (folders / "saved_models" / "tiny_reg").mkdir(parents=True)
        (folders / "saved_models" / "tiny_reg" / "card.json").write_text(json.dumps(card.to_dict()))
        assert registry.list_models(pretrained=True) == ["tiny_reg"]
        assert registry.model_card("tiny_reg").metrics == {"test": {"emotion": {"kl": 0.5}}}
        (folders / "saved_models" / "tiny_reg" / "card.json").write_text("[1]")
        with pytest.raises(registry.CardError, match=r"card\.json: a model card is a JSON object, got list"):
            registry.model_card("tiny_reg")


def test_code_registered_entries_last_as_long_as_their_block(folders):
    with registry.using(recipes=folders / "recipes"):
        @registry.register_model(card={"name": "coded", "dataset": "fi"})
        def coded(weights=None):
            return "a model"

        @registry.register_model("tiny_reg", card=registry.ModelCard(name="tiny_reg", backbone="vgg16"))
        def replaces_the_recipe(weights=None):
            return "another"

        assert registry.list_models() == ["coded", "tiny_reg", "tiny_reg_child"]
        assert registry.entry("coded").build() == "a model" and registry.model_card("coded").dataset == "fi"
        assert registry.model_card("tiny_reg").backbone == "vgg16"  # code wins over a recipe of the same name
    with registry.using(recipes=folders / "recipes"):
        assert "coded" not in registry.list_models() and registry.model_card("tiny_reg").backbone == "mobilenetv2"


def test_set_folders_changes_the_folders_until_set_back(folders):
    previous = registry.set_folders(recipes=folders / "recipes", cache=folders / "cache")
    try:
        assert registry.list_models() == ["tiny_reg", "tiny_reg_child"]
        assert registry.folders().cache_dir == folders / "cache"
        assert registry.folders().saved_models == previous.saved_models
    finally:
        registry.set_folders(previous)
    assert registry.folders() == previous and registry.folders().recipes == recipes.RECIPES_DIR


def test_the_registry_reads_every_shipped_entry_without_tensorflow():
    script = ("import sys; from affect_zoo import registry; "
              "cards = [registry.model_card(n) for n in registry.list_models()]; "
              "print(len(cards), sum(c.pretrained for c in cards)); "
              "print(sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', 'keras', 'tensorflow_datasets'}))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    counts, heavy = out.stdout.splitlines()
    count, pretrained = counts.split()
    assert int(count) == len(registry.list_models()) and int(pretrained) == len(registry.list_models(pretrained=True))
    assert heavy == "[]"


def test_a_card_describes_a_recipe_whose_balancer_only_training_checks(tmp_path):
    """Cards skip the checks that need TensorFlow's classes (strategy, balancer); loading the recipe makes them."""
    (tmp_path / "odd.yaml").write_text(yaml.safe_dump({**RECIPE, "name": "odd",
                                                       "training": {"balancer": {"name": "nope"}}}))
    with registry.using(recipes=tmp_path):
        assert registry.model_card("odd").backbone == "mobilenetv2"
        with pytest.raises(recipes.RecipeError, match=r"odd\.yaml: 'training\.balancer\.name' is 'nope'"):
            registry.load_recipe("odd")


def test_a_stored_card_shows_the_outputs_of_the_code_in_use(folders):
    """Outputs are derived from the tasks: a card written by an older version still lists today's names."""
    with registry.using(recipes=folders / "recipes", saved_models=folders / "saved_models"):
        card = registry.card_from_recipe("tiny_reg").to_dict()
    card["outputs"] = {"emotion": "written by an old version"}
    (folders / "saved_models" / "tiny_reg").mkdir(parents=True)
    (folders / "saved_models" / "tiny_reg" / "card.json").write_text(json.dumps(card))
    with registry.using(recipes=folders / "recipes", saved_models=folders / "saved_models"):
        shown = registry.model_card("tiny_reg").outputs
    assert shown == describe_outputs(card["tasks"]) and "emotion_probs" in shown
