"""Train an entry from its recipe and evaluate entries: what ``affect-zoo train`` and ``affect-zoo evaluate`` run.

Training writes, per entry, ``<output_dir>/<name>/``: ``<name>.weights.h5``, ``card.json`` (the recipe's card plus
the measured test metrics, the trivial baseline measured the same way, and how the weights were produced:
recipe, commit, data split, wall time) and ``SHA256SUMS``. Long runs live in ``run_dir`` (checkpoints each epoch,
TensorBoard logs, resume state): a run killed at any point continues with ``resume=True``.
"""
import copy
import datetime
import json
import os
import pathlib
import subprocess
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from affect_zoo import data, metrics, recipes, zoo
from affect_zoo.models import copy_weights_by_name
from affect_zoo.tasks import as_tasks
from affect_zoo.training import make_strategy, standard_callbacks


def optimizer_from_recipe(training, steps_per_epoch):
    """The recipe's optimizer with its learning-rate schedule (constant, step or cosine, with warm-up)."""
    spec = dict(training["optimizer"])
    name, rate = spec.pop("name"), float(spec.pop("learning_rate", 1e-3))
    schedule = dict(training.get("schedule") or {"name": "constant"})
    kind = schedule.pop("name", "constant")
    epochs = training["epochs"]
    if kind == "step":
        rate = keras.optimizers.schedules.ExponentialDecay(
            rate, decay_steps=max(1, schedule.get("decay_epochs", 10) * steps_per_epoch),
            decay_rate=schedule.get("decay_rate", 0.1), staircase=True)
    elif kind == "cosine":
        warmup = schedule.get("warmup_epochs", 0) * steps_per_epoch
        rate = keras.optimizers.schedules.CosineDecay(
            0.0 if warmup else rate, decay_steps=max(1, epochs * steps_per_epoch - warmup),
            warmup_target=rate if warmup else None, warmup_steps=warmup)
    elif kind != "constant":
        raise recipes.RecipeError(f"training.schedule.name: unknown schedule {kind!r} (constant, step, cosine)")
    optimizers = {"sgd": keras.optimizers.SGD, "adam": keras.optimizers.Adam, "adamw": keras.optimizers.AdamW}
    if name not in optimizers:
        raise recipes.RecipeError(f"training.optimizer.name: unknown optimizer {name!r} ({', '.join(optimizers)})")
    return optimizers[name](learning_rate=rate, **spec)


def _pipeline(recipe, split_key, training, data_dir, strategy):
    dataset = recipe["dataset"]
    split = (dataset.get("splits") or {}).get(split_key, split_key)
    source = data.load_split(dataset["name"], split, data_dir=data_dir or dataset.get("data_dir"),
                             config=dataset.get("config"))
    replicas = strategy.num_replicas_in_sync
    return data.make_pipeline(
        source, as_tasks(recipe["tasks"]), tuple(recipe["model"].get("input_size", (224, 224))),
        recipe["training"]["batch_size"], training=training,
        targets=dataset.get("targets") or dataset["name"],
        augment=recipe["training"].get("augment") if training else False,
        seed=recipe["training"].get("seed", 0), drop_remainder=replicas > 1)


def train(recipe_or_path, run_dir=None, data_dir=None, epochs=None, resume=False,
          output_dir=zoo.SAVED_MODELS_DIR, steps_per_epoch=None, verbose=1):
    """Train an entry from its recipe; returns the card written (a dict)."""
    if isinstance(recipe_or_path, dict):
        recipe = copy.deepcopy(recipe_or_path)
    else:
        recipe = recipes.load_recipe(recipe_or_path)
    name, training = recipe["name"], recipe["training"]
    if epochs is not None:
        training["epochs"] = int(epochs)
    run_dir = pathlib.Path(run_dir or os.path.join("runs", name))
    if (run_dir / "backup").exists() and not resume:
        raise FileExistsError(f"{run_dir} holds the state of an earlier run: pass --resume to continue it, or "
                              f"choose another --run-dir (nothing was overwritten)")
    keras.utils.set_random_seed(training.get("seed", 0))
    strategy = make_strategy(training.get("strategy", "auto"))
    started = time.time()
    train_data = _pipeline(recipe, "train", True, data_dir, strategy)
    has_validation = "validation" in (recipe["dataset"].get("splits") or {})
    validation = _pipeline(recipe, "validation", False, data_dir, strategy) if has_validation else None
    steps = steps_per_epoch or int(train_data.cardinality())
    with strategy.scope():
        model = zoo.model_from_recipe(recipe, backbone_weights=recipe["model"].get("weights"))
        if recipe.get("init"):
            _initialise(model, recipe["init"])
        model.compile(optimizer=optimizer_from_recipe(training, max(1, steps)))
    model.fit(train_data, validation_data=validation, epochs=training["epochs"], steps_per_epoch=steps_per_epoch,
              callbacks=standard_callbacks(str(run_dir)), verbose=verbose)
    wall = time.time() - started
    splits = recipe["dataset"].get("splits") or {}
    test_split = "validation" if splits and "test" not in splits and "validation" in splits else "test"
    measured = evaluate(model, recipe, split=test_split, data_dir=data_dir)
    baseline = trivial_baseline(recipe, split=test_split, data_dir=data_dir)
    return write_entry(model, recipe, output_dir, measured, baseline, wall, test_split, data_dir)


def _initialise(model, init):
    """Fine-tuning: start from another entry's weights (copied by layer name) or a weights file."""
    if pathlib.Path(init).suffix == ".h5":
        model.load_weights(init)
        return
    source = zoo.load(init)
    copied = copy_weights_by_name(source.network, model.network)
    if not copied:
        raise ValueError(f"init {init!r}: no layer of it matches this model by name and shape")


def predictions_and_targets(model, recipe, split, data_dir=None):
    """Model outputs and targets over a whole split, as NumPy dicts keyed by task name."""
    pipeline = _pipeline(recipe, split, False, data_dir, tf.distribute.get_strategy())
    outputs, targets = {}, {}
    for x, y in pipeline:
        batch = model(x, training=False)
        for task in model.tasks:
            outputs.setdefault(task.name, []).append(np.asarray(batch[task.name]))
            targets.setdefault(task.name, []).append(np.asarray(y[task.name]))
    return ({k: np.concatenate(v) for k, v in outputs.items()}, {k: np.concatenate(v) for k, v in targets.items()})


def task_metrics(tasks, outputs, targets):
    """Test metrics per task: the LDL measures for distributions, MAE and Pearson r per regression label,
    accuracy for classification and binary tasks."""
    result = {}
    for task in tasks:
        p, t = outputs[task.name], targets[task.name]
        if task.kind == "distribution":
            result[task.name] = metrics.distribution_metrics(t, p)
        elif task.kind == "regression":
            labels = task.labels or [task.name]
            p2, t2 = p.reshape(len(p), -1), t.reshape(len(t), -1)
            for i, label in enumerate(labels):
                result[label] = {"mae": float(metrics.mae(t2[:, i], p2[:, i])),
                                 "pearson_r": float(metrics.pearson_r(t2[:, i], p2[:, i]))}
        elif task.kind == "classification":
            result[task.name] = {"accuracy": float(np.mean(np.argmax(p, -1) == t.reshape(-1)))}
        elif task.kind == "binary":
            result[task.name] = {"accuracy": float(np.mean((p.reshape(-1) > 0.5) == (t.reshape(-1) > 0.5)))}
    return result


def evaluate(model_or_name, recipe=None, split="test", data_dir=None):
    """Metrics of a model (or entry name) on a split of its recipe's dataset."""
    model = zoo.load(model_or_name) if isinstance(model_or_name, str) else model_or_name
    recipe = recipe or recipes.load_recipe(model_or_name if isinstance(model_or_name, str) else model.name)
    outputs, targets = predictions_and_targets(model, recipe, split, data_dir)
    return task_metrics(model.tasks, outputs, targets)


def trivial_baseline(recipe, split="test", data_dir=None):
    """The metrics of predicting the training-set mean target (distribution, regression) or the most frequent
    class, measured on ``split`` exactly as the model is."""
    tasks = as_tasks(recipe["tasks"])
    means = _targets(recipe, "train", data_dir, tasks)
    targets = _targets(recipe, split, data_dir, tasks)
    outputs = {}
    for task in tasks:
        n = len(targets[task.name])
        if task.kind == "classification":
            counts = np.bincount(means[task.name].reshape(-1).astype(int), minlength=task.size)
            constant = counts / counts.sum()
        else:
            constant = means[task.name].mean(axis=0)
        outputs[task.name] = np.repeat(np.asarray(constant, np.float32)[None], n, axis=0)
    return task_metrics(tasks, outputs, targets)


def _targets(recipe, split, data_dir, tasks):
    targets = {}
    for _, y in _pipeline(recipe, split, False, data_dir, tf.distribute.get_strategy()):
        for task in tasks:
            targets.setdefault(task.name, []).append(np.asarray(y[task.name]))
    return {k: np.concatenate(v) for k, v in targets.items()}


def _commit():
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                              cwd=pathlib.Path(__file__).parent).stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def write_entry(model, recipe, output_dir, measured, baseline, wall_time, split, data_dir):
    """Weights + card.json + SHA256SUMS under ``output_dir/<name>/``; returns the card as a dict."""
    name = recipe["name"]
    folder = pathlib.Path(output_dir) / name
    folder.mkdir(parents=True, exist_ok=True)
    weights_file = folder / f"{name}.weights.h5"
    model.save_weights(str(weights_file))
    digest = zoo.sha256(weights_file)
    card = zoo.card_from_recipe(recipe)
    card.metrics = {split: measured}
    card.baselines = {"train_mean": {split: baseline}}
    card.weights = {"file": weights_file.name, "sha256": digest, "size_bytes": weights_file.stat().st_size}
    card.produced = {"recipe": f"recipes/{name}.yaml", "commit": _commit(), "wall_time_s": round(wall_time, 1),
                     "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                     "command": " ".join(["affect-zoo"] + sys.argv[1:]) if sys.argv else "",
                     "data_split": recipe["dataset"].get("splits", {}), "evaluated_on": split,
                     "epochs": recipe["training"]["epochs"]}
    (folder / "card.json").write_text(json.dumps(card.to_dict(), indent=2, default=_jsonable) + "\n")
    (folder / "SHA256SUMS").write_text(f"{digest}  {weights_file.name}\n")
    return card.to_dict()


def _jsonable(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")

