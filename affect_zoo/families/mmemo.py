"""``mmemo`` (Pagé Fortin & Chaib-draa 2019): image, text and tags, one classifier per subset of modalities.

The inputs (image, text, tags, presence flags), targets and per-classifier sample weights come from
``mmemo.training_example``, and the network is sized by the dataset's ``info.metadata`` (vocabularies, sequence
lengths): training records those sizes as ``produced.network_options`` and ships the vocabularies beside the
weights. A classifier is measured on the samples that have all of its modalities, and ``prediction`` (the
classifier of exactly the present modalities) on all of them.
"""
import tensorflow as tf

from affect_zoo import data, recipes
from affect_zoo.families.base import Family, register_family
from affect_zoo.models import mmemo
from affect_zoo.tasks import Task

PREDICTION = "prediction"


@register_family
class MMEmo(Family):
    name = "mmemo"

    def check(self, recipe):
        """Targets are fixed by ``mmemo.training_example`` (the label, for every classifier): a recipe that says
        otherwise would be silently ignored, so it is an error."""
        super().check(recipe)
        dataset = recipe.dataset
        if dataset.ignore:
            raise recipes.RecipeError("dataset.ignore: the mmemo family has no multilabel target to ignore labels of")
        for task, keys in (dataset.targets or {}).items():
            if ([keys] if isinstance(keys, str) else list(keys)) != ["label"]:
                raise recipes.RecipeError(f"dataset.targets.{task}: mmemo trains every classifier on the example's "
                                          f"label (mmemo.training_example); got {keys!r}")

    def network_for_dataset(self, recipe, data_dir, backbone_weights=None):
        spec, dataset = recipe.model, recipe.dataset
        metadata = data.load_metadata(dataset.name, data_dir=data_dir or dataset.data_dir, config=dataset.config)
        classes = list(metadata["classes"])
        for i, task in enumerate(recipe.tasks):
            if task.get("size") != len(classes):
                raise recipes.RecipeError(f"tasks[{i}].size: {task.get('size')}, but dataset {dataset.name!r} has "
                                          f"{len(classes)} classes ({', '.join(classes)})")
        fixed = mmemo.dataset_options(metadata)
        options = dict(spec.options)
        clash = sorted(set(options) & set(fixed))
        if clash:
            raise recipes.RecipeError(f"model.options.{clash[0]}: mmemo takes it from the dataset's metadata; "
                                      f"remove it")
        network = mmemo.build_for_dataset(spec.backbone, metadata, (*spec.input_size, 3),
                                          weights=backbone_weights, **options)
        # The trained embedding is in the weights: a rebuild needs its width, not the word-vector file.
        network_options = {**fixed, "text_embedding_dim": int(network.get_layer("text_embedding").output_dim),
                           "word_vectors": None}
        assets = {f"{kind}_vocabulary.txt": "\n".join(metadata[f"{kind}_vocabulary"]) + "\n"
                  for kind in ("text", "tags")}
        return network, network_options, assets

    def pipeline(self, recipe, source, training, **common):
        self.check(recipe)
        return data.make_example_pipeline(source, _example, recipe.model.input_size, recipe.training.batch_size,
                                          training=training, **common)

    def evaluated_tasks(self, tasks):
        """The classifiers, plus ``prediction`` (not trained, so no task of the model)."""
        tasks = list(tasks)
        return tasks + [Task(PREDICTION, "classification", tasks[0].size, labels=tasks[0].labels)]

    def evaluation_targets(self, y, rows, every):
        return {**y, PREDICTION: y[mmemo.OUTPUT_NAMES[-1]]}, {**rows, PREDICTION: every}


def _example(example):
    """``(x, y, sample_weight)`` of an example whose image is already the model's view; an absent image (the
    builder stores a black placeholder) is exactly zeros, as ``mmemo.encode_records`` feeds it."""
    present = tf.cast(example["image_present"], tf.float32)
    return mmemo.training_example({**example, "image": example["image"] * present})
