"""Train an entry from its recipe: what ``affect-zoo train`` runs. Measuring is ``affect_zoo.evaluation``'s (its
names are re-exported here), the optimizer ``affect_zoo.optimization``'s, and what a run publishes
``affect_zoo.artifacts``'s.

Training writes, per entry, ``<output_dir>/<name>/``: ``<name>.weights.h5``, ``card.json`` (the recipe's card plus
the measured test metrics, the trivial baseline measured the same way, and how the weights were produced:
recipe, commit, data split, wall time) and ``SHA256SUMS``. Long runs live in ``run_dir`` (checkpoints each epoch,
TensorBoard logs, resume state): a run killed at any point continues with ``resume=True``.

How a family trains is its ``affect_zoo.families.Family``'s (this driver asks it and never branches on the name):
``multitask`` and ``mmemo`` fit all tasks at once; ``semdep`` with ``training.phases`` fits one stage after another
(``Family.stages``), each in ``run_dir/phase_<k>_<name>/``, and the entry is the network after the last stage.
mmemo's network is sized by its dataset's ``info.metadata`` (``Family.network_for_dataset``): those sizes go to
the card as ``produced.network_options`` (``zoo.load`` rebuilds the network with them) and the vocabularies beside
the weights (``text_vocabulary.txt``, ``tags_vocabulary.txt``, one token per line in id order,
``affect_zoo.text.Vocabulary.load``), so new posts can be encoded without the dataset.
"""
import contextlib
import csv
import dataclasses
import json
import os
import pathlib
import time

import keras
import numpy as np

from affect_zoo import files, registry, zoo
from affect_zoo.artifacts import entry_bytes, jsonable, refuse_existing_entry, write_entry
from affect_zoo.evaluation import (evaluate, over_seeds, paired_comparison, pipeline,  # noqa: F401
                                   predictions_and_targets, task_metrics, trivial_baseline)
from affect_zoo.families import family_of
from affect_zoo.models import copy_weights_by_name
from affect_zoo.optimization import optimizer_from_recipe
from affect_zoo.training import is_chief, make_strategy, save_weights_atomically, standard_callbacks

PHASE_DONE = "phase_done.json"
PHASE_WEIGHTS = "network.weights.h5"
SEED_DONE = "seed_done.json"
SEED_WEIGHTS = "network.weights.h5"
HISTORY = "history.csv"


def train(recipe_or_path, run_dir=None, data_dir=None, epochs=None, resume=False,
          output_dir=None, steps_per_epoch=None, verbose=1, overwrite_entry=False):
    """Train an entry from its recipe; returns the card written (a dict).

    recipe_or_path: an entry name, a YAML path or a dict (validated like a file; errors name "recipe <name>").
    epochs: overrides ``training.epochs``. With ``training.phases`` it caps every phase at that many epochs
        instead, so a short run still goes through each stage in order.
    resume: continue the run in ``run_dir`` (without it, a ``run_dir`` holding an earlier run's state is an error).
        A phased run keeps each stage in ``run_dir/phase_<k>_<name>/``, with its own resume state and, once the
        stage has finished, the network's weights and a ``phase_done.json`` marker: finished stages are skipped
        (their weights loaded), a stage killed midway continues from its last finished epoch. A run over
        ``training.seeds`` does the same per seed in ``run_dir/seed_<s>/`` (``seed_done.json``).
    output_dir: where the entry is written (default: the registry's saved_models folder in use).
    overwrite_entry: replace an entry already published in ``output_dir/<name>/`` (refused by default, before
        any training, so a shipped, verified entry is never replaced by accident).

    The run holds an exclusive lock on ``run_dir`` (``files.run_lock``): a second run on it is refused at once.
    ``run_dir`` and ``output_dir`` are checked writable, and ``output_dir`` for room for the weights, before
    training starts.
    """
    recipe = registry.as_recipe(recipe_or_path)
    output_dir = pathlib.Path(output_dir) if output_dir is not None else registry.folders().saved_models
    for value, flag in ((epochs, "epochs"), (steps_per_epoch, "steps_per_epoch")):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{flag} must be an int >= 1, got {value!r}")
    run_dir = pathlib.Path(run_dir or os.path.join("runs", recipe.name))
    with files.run_lock(run_dir) if is_chief() else contextlib.nullcontext():
        return _train_locked(recipe, run_dir, data_dir, epochs, resume, pathlib.Path(output_dir), steps_per_epoch,
                             verbose, overwrite_entry)


def _train_locked(recipe, run_dir, data_dir, epochs, resume, output_dir, steps_per_epoch, verbose, overwrite_entry):
    family_of(recipe).check(recipe)
    phases = recipe.training.phases or None
    if phases and epochs is not None:
        phases = tuple(dataclasses.replace(p, epochs=min(p.epochs, epochs)) for p in phases)
        recipe = recipe.replace(**{"training.phases": phases, "training.epochs": sum(p.epochs for p in phases)})
    elif epochs is not None:
        recipe = recipe.replace(**{"training.epochs": epochs})
    name = recipe.name
    earlier = (run_dir / "backup").exists() or any(run_dir.glob("phase_*")) or any(run_dir.glob("seed_*"))
    if earlier and not resume:
        raise FileExistsError(f"{run_dir} holds the state of an earlier run: pass --resume to continue it, or "
                              f"choose another --run-dir (nothing was overwritten)")
    refuse_existing_entry(output_dir / name, overwrite_entry)
    files.check_writable(output_dir)
    splits = recipe.dataset.splits
    test_split = "validation" if splits and "test" not in splits and "validation" in splits else "test"
    if recipe.training.seeds:
        model, produced, assets, wall, more_metrics = _run_seeds(recipe, run_dir, data_dir, steps_per_epoch,
                                                                 verbose, test_split, output_dir)
        measured = more_metrics.pop(test_split)
    else:
        model, produced, assets, wall = _run(recipe, run_dir, data_dir, phases, steps_per_epoch, verbose,
                                             output_dir)
        measured, more_metrics = evaluate(model, recipe, split=test_split, data_dir=data_dir), {}
    baseline = trivial_baseline(recipe, split=test_split, data_dir=data_dir)
    try:
        return write_entry(model, recipe, output_dir, measured, baseline, wall, test_split, data_dir,
                           produced=produced, assets=assets, more_metrics=more_metrics, overwrite=overwrite_entry)
    except files.DiskError as error:
        raise files.DiskError(f"{error}. The trained state is kept in {run_dir}: once there is room, the same "
                              f"command with --resume writes the entry without training again") from None


def _run(recipe, run_dir, data_dir, phases, steps_per_epoch, verbose, output_dir):
    """One training run in ``run_dir`` (resumable); returns the model, what the card's ``produced`` gets, the
    files to ship and the wall time of the finished epochs (summed over resumed processes)."""
    training = recipe.training
    keras.utils.set_random_seed(training.seed)
    strategy = make_strategy(training.strategy)
    started = time.time()
    train_data = pipeline(recipe, "train", True, data_dir, strategy)
    has_validation = "validation" in recipe.dataset.splits
    validation = pipeline(recipe, "validation", False, data_dir, strategy) if has_validation else None
    steps = steps_per_epoch or int(train_data.cardinality())
    with strategy.scope():
        model, network_options, assets = _model(recipe, data_dir)
        if recipe.init:
            _initialise(model, recipe.init)
    files.check_free_space(output_dir, entry_bytes(model, assets))
    produced = {"network_options": network_options} if network_options else {}
    stages = family_of(recipe).stages(recipe, model.network) if phases else None
    if stages:
        produced["phases"] = _train_stages(model, recipe, stages, train_data, validation, run_dir,
                                           steps_per_epoch, steps, strategy, verbose)
        return model, produced, assets, time.time() - started
    files.make_dirs(run_dir)
    with strategy.scope():
        model.compile(optimizer=optimizer_from_recipe(training, max(1, steps)))
    history = [_EpochTimer(), keras.callbacks.CSVLogger(str(run_dir / HISTORY), append=True)]
    model.fit(train_data, validation_data=validation, epochs=training.epochs, steps_per_epoch=steps_per_epoch,
              callbacks=standard_callbacks(str(run_dir)) + history, verbose=verbose)
    rows = read_history(run_dir)
    if training.select:
        produced["selected"] = _select_epoch(model, run_dir, rows, training.select)
    return model, produced, assets, sum(float(row.get("epoch_seconds") or 0) for row in rows.values())


class _EpochTimer(keras.callbacks.Callback):
    """Adds ``epoch_seconds`` to the epoch's logs (so the history file sums to the run's wall time across
    resumed processes)."""

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.time()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["epoch_seconds"] = time.time() - self._start


def read_history(run_dir):
    """{epoch (1-based): {log: value}} from ``run_dir/history.csv``; a re-run epoch keeps its last row."""
    path = pathlib.Path(run_dir) / HISTORY
    if not path.is_file():
        return {}
    with open(path, newline="") as f:
        return {int(row["epoch"]) + 1: row for row in csv.DictReader(f)}


def _select_epoch(model, run_dir, rows, select):
    """Load the checkpoint of the epoch whose validation log is best (``training.select``)."""
    monitor, mode = select.monitor, select.mode
    values = {epoch: float(row[monitor]) for epoch, row in rows.items() if row.get(monitor) not in (None, "")}
    values = {epoch: value for epoch, value in values.items() if np.isfinite(value)}
    if not values:
        raise ValueError(f"{run_dir / HISTORY}: no finite {monitor} was logged, so no epoch can be selected; "
                         f"logged: {sorted(next(iter(rows.values()), {}))}")
    best = (min if mode == "min" else max)(values, key=values.get)
    model.load_weights(str(run_dir / "checkpoints" / f"epoch_{best:03d}.weights.h5"))
    return {"epoch": best, "monitor": monitor, "mode": mode, "value": values[best], "epochs": len(rows)}


def _run_seeds(recipe, run_dir, data_dir, steps_per_epoch, verbose, test_split, output_dir):
    """One run per seed of ``training.seeds``; ships the seed whose selected epoch is best on validation.

    Returns the shipped model, ``produced`` (per seed: wall time, selected epoch), the assets, the summed wall
    time and the metrics: ``{test_split: shipped seed's, "validation": shipped seed's, f"{test_split}_over_seeds":
    {seeds, shipped_seed, mean, sd, per_seed}}``.
    """
    seeds, select = recipe.training.seeds, recipe.training.select
    records = {}
    for seed in seeds:
        folder = run_dir / f"seed_{seed}"
        if (folder / SEED_DONE).is_file():
            records[seed] = json.loads((folder / SEED_DONE).read_text())
            continue
        run = recipe.replace(**{"training.seed": seed})
        model, produced, _, wall = _run(run, folder, data_dir, None, steps_per_epoch, verbose, output_dir)
        record = {"seed": seed, "wall_time_s": round(wall, 1), "selected": produced["selected"],
                  "validation": evaluate(model, run, split="validation", data_dir=data_dir),
                  test_split: evaluate(model, run, split=test_split, data_dir=data_dir)}
        save_weights_atomically(model.network, folder / SEED_WEIGHTS)
        files.atomic_write_text(folder / SEED_DONE, json.dumps(record, indent=1, default=jsonable) + "\n")
        records[seed] = record
    best = min if select.mode == "min" else max
    shipped = best(seeds, key=lambda s: records[s]["selected"]["value"])
    keras.utils.set_random_seed(shipped)
    model, network_options, assets = _model(recipe, data_dir)
    model.network.load_weights(str(run_dir / f"seed_{shipped}" / SEED_WEIGHTS))
    mean, sd = over_seeds([records[s][test_split] for s in seeds])
    produced = {"seeds": {str(s): {"wall_time_s": records[s]["wall_time_s"], "selected": records[s]["selected"]}
                          for s in seeds}}
    if network_options:
        produced["network_options"] = network_options
    summary = {"seeds": list(seeds), "shipped_seed": shipped,
               "shipped_because": f"best validation {select.monitor} ({select.mode}) at its "
                                  f"selected epoch",
               "mean": mean, "sd": sd, "per_seed": {str(s): records[s][test_split] for s in seeds}}
    metrics = {test_split: records[shipped][test_split], "validation": records[shipped]["validation"],
               f"{test_split}_over_seeds": summary}
    return model, produced, assets, sum(records[s]["wall_time_s"] for s in seeds), metrics


def _model(recipe, data_dir):
    """The untrained model of a recipe, the network options its dataset fixed (for the card; {} unless the family
    sizes the network from the dataset, as mmemo does) and the files to ship beside the weights ({filename: text})."""
    network, network_options, assets = family_of(recipe).network_for_dataset(recipe, data_dir,
                                                                              recipe.model.weights)
    return zoo.multitask_model(recipe, network), network_options, assets


def _train_stages(model, recipe, stages, train_data, validation, run_dir, steps_per_epoch, steps, strategy,
                  verbose):
    """Train the network stage by stage as its family plans (see ``train``); returns, per stage, what it did."""
    network, training = model.network, recipe.training
    done = []
    for k, stage in enumerate(stages, start=1):
        folder = run_dir / f"phase_{k}_{stage.name}"
        record = {"name": stage.name, "epochs": stage.epochs, "learning_rate": stage.learning_rate,
                  "output": stage.tasks[0].name, "skipped": (folder / PHASE_DONE).is_file()}
        if record["skipped"]:  # finished by an earlier run: start the next stage from its weights
            network.load_weights(str(folder / PHASE_WEIGHTS))
            done.append(record)
            continue
        stage.prepare(network)

        def rename(x, y, targets=stage.targets):
            return x, targets(y)

        stage_training = dataclasses.replace(
            training, epochs=stage.epochs,
            optimizer=dataclasses.replace(training.optimizer, learning_rate=stage.learning_rate))
        with strategy.scope():
            fitted = zoo.multitask_model(recipe, network, tasks=stage.tasks)
            fitted.compile(optimizer=optimizer_from_recipe(stage_training, max(1, steps)))
        fitted.fit(train_data.map(rename), validation_data=validation.map(rename) if validation else None,
                   epochs=stage.epochs, steps_per_epoch=steps_per_epoch, callbacks=standard_callbacks(str(folder)),
                   verbose=verbose)
        save_weights_atomically(network, folder / PHASE_WEIGHTS)
        files.atomic_write_text(folder / PHASE_DONE, json.dumps({**record, "phase": k, "finished": time.time()}) + "\n")
        done.append(record)
    return done


def _initialise(model, init):
    """Fine-tuning: start from another entry's weights (copied by layer name) or a weights file."""
    if pathlib.Path(init).suffix == ".h5":
        model.network.load_weights(init)
        return
    source = zoo.load(init)
    copied = copy_weights_by_name(source.network, model.network)
    if not copied:
        raise ValueError(f"init {init!r}: no layer of it matches this model by name and shape")
