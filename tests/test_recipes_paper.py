"""The paper-scale recipes state the hyper-parameters their papers give (as DESIGN.md and issue 15 transcribe them)
and mark every training hyper-parameter "(paper)" or "(assumed)"."""
import re

import pytest
import tensorflow_datasets as tfds

from affect_zoo import data, recipes, zoo

PAPER_SCALE = sorted(n for n in recipes.list_recipes()
                     if n.endswith(("_uae", "_uae_score")) or n.startswith(("circle_resnet50_", "semdep_", "mmemo_")))
MARKED_KEYS = ("learning_rate", "momentum", "weight_decay", "decay_epochs", "batch_size", "epochs", "input_size",
               "weights", "augment", "se_ratio", "dropout", "text_dropout", "text_padding")


def test_the_paper_scale_recipes_are_the_expected_ones():
    assert {"afi_resnet50_uae", "afi_resnet50_uae_score", "circle_resnet50_fi", "semdep_densenet121_voc2007",
            "mmemo_densenet121_multimodal"} <= set(PAPER_SCALE)


def marked(lines, i):
    """Line i carries a (paper)/(assumed) mark itself or in the comment block right above it (for an item of a
    YAML list, above the list's first item, with the list's key line)."""
    block = [lines[i]]
    j = i - 1
    if lines[i].lstrip().startswith("- "):
        while j >= 0 and lines[j].lstrip().startswith("- "):
            j -= 1
        block.append(lines[j])
        j -= 1
    while j >= 0 and lines[j].lstrip().startswith("#"):
        block.append(lines[j])
        j -= 1
    return any(re.search(r"\((paper|assumed|not in the paper)", line) for line in block)


@pytest.mark.parametrize("name", PAPER_SCALE)
def test_every_stated_hyper_parameter_is_marked_paper_or_assumed(name):
    lines = recipes.recipe_path(name).read_text().splitlines()
    unmarked = [line.strip() for i, line in enumerate(lines)
                if re.search(rf"\b({'|'.join(MARKED_KEYS)}):", line.split("#")[0])
                and not marked(lines, i)]
    assert not unmarked, f"{name}: no (paper)/(assumed) mark on {unmarked}"


def test_semdep_voc2007_has_the_papers_training_protocol():
    """Xue et al. 2019 on VOC2007: lr 0.001 divided by 10 every 30 epochs, weight decay 0.0005, batch 24, trained
    on trainval (5,011 images)."""
    recipe = recipes.load_recipe("semdep_densenet121_voc2007")
    training = recipe.training
    assert (training.optimizer.learning_rate, training.optimizer.weight_decay) == (0.001, 0.0005)
    assert (training.schedule.name, training.schedule.decay_epochs, training.schedule.decay_rate) == ("step", 30, 0.1)
    assert training.batch_size == 24 and {p.learning_rate for p in training.phases} == {0.001}
    splits = recipe.dataset.splits
    assert splits["train"] == "train+validation" and "validation" not in splits
    assert recipe.model.options["attention"] == "maps"
    card = zoo.model_card("semdep_densenet121_voc2007")
    assert "Reported figure: map_11point" in " ".join(card.description.split())


def test_voc2007_trainval_split_reads_train_and_validation(voc2007_dummy_data_dir):
    root = str(voc2007_dummy_data_dir / "voc2007" / "1.0.0")
    builder = tfds.builder_from_directory(root)
    sizes = {s: builder.info.splits[s].num_examples for s in ("train", "validation")}
    trainval = data.load_split(root, "train+validation")
    assert sum(1 for _ in trainval) == sizes["train"] + sizes["validation"]


def test_circle_fi_has_the_papers_view_and_optimizer():
    """Yang et al. 2021 (seed 001): shorter side resized to 480, 448 × 448 crops, Adam at 1e-5."""
    recipe = recipes.load_recipe("circle_resnet50_fi")
    assert recipe.model.input_size == (448, 448)
    assert recipe.training.augment.resize_shorter == 480 and recipe.training.augment.crop
    assert recipe.training.optimizer == recipes.OptimizerSpec(name="adam", learning_rate=1e-5)
    for child in ("circle_resnet50_flickr_ldl", "circle_resnet50_twitter_ldl"):
        assert recipes.load_recipe(child).training == recipe.training


def test_afi_uae_entries_keep_the_papers_two_tasks_and_the_score_is_an_extra():
    """Shen et al. 2022 (tables 5–6): binary aesthetics (mean score 5) and the 8 emotions, nothing else."""
    for name in [n for n in PAPER_SCALE if n.endswith("_uae")]:
        recipe = recipes.load_recipe(name)
        assert [(t["name"], t["kind"]) for t in recipe.tasks] == [("aesthetic", "binary"),
                                                                  ("emotion", "classification")], name
        assert set(recipe.dataset.targets) == {"aesthetic", "emotion"}, name
    extra = recipes.load_recipe("afi_resnet50_uae_score")
    base = recipes.load_recipe("afi_resnet50_uae")
    assert [t["name"] for t in extra.tasks] == ["aesthetic", "aesthetic_score", "emotion"]
    assert extra.dataset.targets["aesthetic_score"] == ["aesthetic_score"]
    assert extra.training == base.training and extra.model == base.model


def test_mmemo_recipe_uses_the_papers_text_extractor():
    options = recipes.load_recipe("mmemo_densenet121_multimodal").model.options
    assert (options["text_padding"], options["text_dropout"], options["text_embedding_dim"]) == ("valid", 0.5, 300)
