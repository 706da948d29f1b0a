"""A recipe's split pipelines and what is measured on them: ``evaluate`` (the card's test metrics), the trivial
baseline, and summaries over seeds (``over_seeds``, ``paired_comparison``). Training (``affect_zoo.experiments``)
builds its pipelines here too, so a split is read the same way for fitting and for measuring."""
import dataclasses

import keras
import numpy as np
import tensorflow as tf

from affect_zoo import data, metrics, registry, zoo
from affect_zoo.families import family_of
from affect_zoo.tasks import as_tasks


def pipeline(recipe, split_key, training, data_dir, strategy):
    """The batches of a recipe's split as its family feeds them (augmented when ``training``)."""
    dataset = recipe.dataset
    split = dataset.splits.get(split_key, split_key)
    source = data.load_split(dataset.name, split, data_dir=data_dir or dataset.data_dir, config=dataset.config)
    replicas = strategy.num_replicas_in_sync
    return family_of(recipe).pipeline(
        recipe, source, training, augment=dataclasses.asdict(recipe.training.augment) if training else False,
        seed=recipe.training.seed, drop_remainder=replicas > 1)


def paired_comparison(card_a, card_b, task, metric, split="test"):
    """Seed-by-seed differences ``a − b`` of one test metric of two multi-seed entries trained with the same
    seeds (same data order and init per seed, so the pairing removes the seed's share of the variance).

    Returns {"seeds", "a", "b", "differences", "mean_difference", "sd_difference", "a_better"}: ``a_better``
    counts the seeds where a is better (lower for errors and divergences, higher for the rest).
    """
    runs = [card.get("metrics", {}).get(f"{split}_over_seeds", {}).get("per_seed") for card in (card_a, card_b)]
    if not all(runs):
        raise ValueError(f"both cards need metrics.{split}_over_seeds (entries trained with training.seeds)")
    seeds = sorted(set(runs[0]) & set(runs[1]), key=int)
    if not seeds:
        raise ValueError(f"{card_a.get('name')} and {card_b.get('name')} share no seed")
    a = np.array([runs[0][s][task][metric] for s in seeds], float)
    b = np.array([runs[1][s][task][metric] for s in seeds], float)
    diff = a - b
    lower_is_better = {**metrics.DIRECTIONS, "mae": "down", "pearson_r": "up"}[metric] == "down"
    return {"seeds": [int(s) for s in seeds], "a": a.tolist(), "b": b.tolist(), "differences": diff.tolist(),
            "mean_difference": float(diff.mean()), "sd_difference": float(diff.std(ddof=1)) if len(diff) > 1 else 0.0,
            "a_better": int(np.sum(diff < 0 if lower_is_better else diff > 0))}


def over_seeds(results):
    """Mean and sample standard deviation (ddof 1; 0 for one seed) of ``{task: {metric: value}}`` dicts."""
    mean, sd = {}, {}
    for task, values in results[0].items():
        for metric in values:
            column = np.array([r[task][metric] for r in results], float)
            mean.setdefault(task, {})[metric] = float(column.mean())
            sd.setdefault(task, {})[metric] = float(column.std(ddof=1)) if len(column) > 1 else 0.0
    return mean, sd


def predictions_and_targets(model, recipe, split, data_dir=None, progress=None):
    """Model outputs and targets over a whole split, as NumPy dicts keyed by task name; ``progress(n)``, when
    given, is called with each batch's number of samples (the CLI's progress bar).

    A task's rows are the samples it applies to: all of them, except where the pipeline gives per-task sample
    weights (mmemo: a classifier applies to the samples that have all of its modalities), whose zero-weight
    samples are left out. mmemo's ``prediction`` output is included as one more task (every sample, the label).
    """
    tasks = _evaluated_tasks(recipe, model.tasks)
    outputs, targets = {}, {}
    for x, y, rows in _batches(recipe, split, data_dir):
        batch = model(x, training=False)
        for task in tasks:
            outputs.setdefault(task.name, []).append(np.asarray(batch[task.name])[rows[task.name]])
            targets.setdefault(task.name, []).append(y[task.name][rows[task.name]])
        if progress is not None:
            progress(len(next(iter(y.values()))))
    return ({k: np.concatenate(v) for k, v in outputs.items()}, {k: np.concatenate(v) for k, v in targets.items()})


def _evaluated_tasks(recipe, tasks):
    """The tasks measured on a test split: the model's, plus what its family adds (mmemo's ``prediction``)."""
    return family_of(recipe).evaluated_tasks(tasks)


def _batches(recipe, split, data_dir):
    """``(x, targets, rows)`` per batch of a split's evaluation pipeline, targets as NumPy and ``rows[task]`` the
    boolean mask of the samples the task applies to (non-zero sample weight)."""
    family = family_of(recipe)
    for element in pipeline(recipe, split, False, data_dir, tf.distribute.get_strategy()):
        x, y, weights = keras.utils.unpack_x_y_sample_weight(element)
        y = {k: np.asarray(v) for k, v in y.items()}
        every = np.ones(len(next(iter(y.values()))), bool)
        rows = {k: every if weights is None else np.asarray(weights[k]) > 0 for k in y}
        y, rows = family.evaluation_targets(y, rows, every)
        yield x, y, rows


def task_metrics(tasks, outputs, targets):
    """Test metrics per task: the LDL measures for distributions, MAE and Pearson r per regression label,
    accuracy (and on how many samples) for classification, accuracy for binary tasks, mAP (``map`` exact and
    ``map_11point`` VOC2007's 11-point as its devkit computes it — VOC2007's reported figure —, ignored ``-1``
    labels left out) for multilabel tasks."""
    result = {}
    for task in tasks:
        result.update(task.handler.test_metrics(task, outputs[task.name], targets[task.name]))
    return result


def evaluate(model_or_name, recipe=None, split="test", data_dir=None, progress=None):
    """Metrics of a model (or entry name) on a split of its recipe's dataset (``progress``: see
    ``predictions_and_targets``)."""
    model = zoo.load(model_or_name) if isinstance(model_or_name, str) else model_or_name
    recipe = registry.as_recipe(recipe or (model_or_name if isinstance(model_or_name, str) else model.name))
    outputs, targets = predictions_and_targets(model, recipe, split, data_dir, progress)
    return task_metrics(_evaluated_tasks(recipe, model.tasks), outputs, targets)


def trivial_baseline(recipe, split="test", data_dir=None):
    """The metrics of predicting the training-set mean target (distribution, regression), the class frequencies
    or each label's positive rate (multilabel, ignored labels left out), measured on ``split`` exactly as the
    model is."""
    recipe = registry.as_recipe(recipe)
    tasks = _evaluated_tasks(recipe, as_tasks(recipe.tasks))
    means = _targets(recipe, "train", data_dir, tasks)
    targets = _targets(recipe, split, data_dir, tasks)
    outputs = {}
    for task in tasks:
        n = len(targets[task.name])
        constant = task.handler.constant_prediction(task, means[task.name])
        outputs[task.name] = np.repeat(np.asarray(constant, np.float32)[None], n, axis=0)
    return task_metrics(tasks, outputs, targets)


def _targets(recipe, split, data_dir, tasks):
    targets = {}
    for _, y, rows in _batches(recipe, split, data_dir):
        for task in tasks:
            targets.setdefault(task.name, []).append(y[task.name][rows[task.name]])
    return {k: np.concatenate(v) for k, v in targets.items()}
