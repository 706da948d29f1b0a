"""Train an entry from its recipe: what ``affect-zoo train`` runs (measuring is ``affect_zoo.evaluation``'s, whose
names are re-exported here).

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
import datetime
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

import h5py
import keras
import numpy as np

from affect_zoo import files, recipes, registry, zoo
from affect_zoo.backbones import imagenet_packages
from affect_zoo.evaluation import (evaluate, over_seeds, paired_comparison, pipeline,  # noqa: F401
                                   predictions_and_targets, task_metrics, trivial_baseline)
from affect_zoo.families import family_of
from affect_zoo.models import copy_weights_by_name
from affect_zoo.training import (is_chief, make_strategy, save_weights_atomically, standard_callbacks,
                                 weights_bytes)

PHASE_DONE = "phase_done.json"
PHASE_WEIGHTS = "network.weights.h5"
SEED_DONE = "seed_done.json"
SEED_WEIGHTS = "network.weights.h5"
HISTORY = "history.csv"
FLOAT16_TOLERANCE = 1e-3


def optimizer_from_recipe(training, steps_per_epoch):
    """The recipe's optimizer with its learning-rate schedule (constant, step or cosine, with warm-up)."""
    spec, schedule = training.optimizer, training.schedule
    name, rate, kind, epochs = spec.name, float(spec.learning_rate), schedule.name, training.epochs
    if kind == "step":
        rate = keras.optimizers.schedules.ExponentialDecay(
            rate, decay_steps=max(1, schedule.decay_epochs * steps_per_epoch), decay_rate=schedule.decay_rate,
            staircase=True)
    elif kind == "cosine":
        warmup = schedule.warmup_epochs * steps_per_epoch
        rate = keras.optimizers.schedules.CosineDecay(
            0.0 if warmup else rate, decay_steps=max(1, epochs * steps_per_epoch - warmup),
            warmup_target=rate if warmup else None, warmup_steps=warmup)
    elif kind != "constant":
        raise recipes.RecipeError(f"training.schedule.name: unknown schedule {kind!r} (constant, step, cosine)")
    optimizers = {"sgd": keras.optimizers.SGD, "adam": keras.optimizers.Adam, "adamw": keras.optimizers.AdamW}
    if name not in optimizers:
        raise recipes.RecipeError(f"training.optimizer.name: unknown optimizer {name!r} ({', '.join(optimizers)})")
    extra = {k: getattr(spec, k) for k in ("momentum", "weight_decay") if getattr(spec, k) is not None}
    return optimizers[name](learning_rate=rate, **extra)


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
    _refuse_existing_entry(output_dir / name, overwrite_entry)
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


def _refuse_existing_entry(folder, overwrite):
    """FileExistsError when ``folder`` holds anything (a published entry, or files of someone else's) and
    ``overwrite`` is not set: training never deletes what it did not write unless told to."""
    if overwrite or not folder.exists() or (folder.is_dir() and not any(folder.iterdir())):
        return
    what = ("a published entry (card.json, weights, SHA256SUMS)" if (folder / "card.json").is_file() else
            "files but no card.json")
    raise FileExistsError(f"{folder} already holds {what}: pass --overwrite-entry to replace it, or --output-dir "
                          f"to write elsewhere (nothing was trained or replaced)")


def _entry_bytes(model, assets):
    """About the bytes an entry takes: the network's weights and the asset files (the card is in the margin)."""
    return weights_bytes(model.network) + sum(len(text.encode("utf-8")) for text in (assets or {}).values())


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
    files.check_free_space(output_dir, _entry_bytes(model, assets))
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
        files.atomic_write_text(folder / SEED_DONE, json.dumps(record, indent=1, default=_jsonable) + "\n")
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


def _commit():
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                              cwd=pathlib.Path(__file__).parent).stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def write_entry(model, recipe, output_dir, measured, baseline, wall_time, split, data_dir, produced=None,
                assets=None, more_metrics=None, overwrite=False):
    """Weights + card.json + SHA256SUMS under ``output_dir/<name>/``; returns the card as a dict.

    produced: more of how the weights came about, merged into the card's ``produced`` (``phases``, and
    ``network_options``, which ``zoo.load`` rebuilds the network with). assets: {filename: text} written beside
    the weights (mmemo's vocabularies), listed in ``produced.assets`` and in SHA256SUMS. more_metrics: more
    ``card.metrics`` keys (a multi-seed run's validation figures and its summary over seeds).

    The entry is written whole into a hidden sibling directory and renamed into place (``files.publish_dir``),
    after a free-space check, so ``output_dir/<name>/`` is either the old entry or the complete new one; an
    existing entry is replaced only with ``overwrite``. A full or read-only disk is one ``files.DiskError``.
    """
    name = recipe.name
    folder = pathlib.Path(output_dir) / name
    _refuse_existing_entry(folder, overwrite)
    files.make_dirs(folder.parent)
    files.check_free_space(folder.parent, _entry_bytes(model, assets))
    staged = folder.with_name(f".partial-{os.getpid()}-{name}")
    shutil.rmtree(staged, ignore_errors=True)
    try:
        staged.mkdir()
        card = _write_entry_files(staged, model, recipe, measured, baseline, wall_time, split, data_dir, produced,
                                  assets, more_metrics)
        files.publish_dir(staged, folder, overwrite=overwrite)
    except OSError as error:
        if isinstance(error, FileExistsError):
            raise
        raise files.disk_error(folder, error) from None
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return card


def _write_entry_files(folder, model, recipe, measured, baseline, wall_time, split, data_dir, produced, assets,
                       more_metrics):
    name = recipe.name
    weights_file = folder / f"{name}.weights.h5"
    model.network.save_weights(str(weights_file))  # the network only: a compiled model's file holds the optimizer
    stored = _store_dtype(model, recipe, weights_file, measured, split, data_dir)
    measured = stored.pop("measured")
    digest = zoo.sha256(weights_file)
    sums = [f"{digest}  {weights_file.name}"]
    for filename, text in (assets or {}).items():
        (folder / filename).write_text(text, encoding="utf-8")
        sums.append(f"{zoo.sha256(folder / filename)}  {filename}")
    card = zoo.card_from_recipe(recipe)
    card.metrics = {split: measured, **(more_metrics or {})}
    card.baselines = {"train_mean": {split: baseline}}
    card.weights = {"file": weights_file.name, "sha256": digest, "size_bytes": weights_file.stat().st_size,
                    "dtype": stored.pop("dtype")}
    card.produced = {"recipe": f"recipes/{name}.yaml", "commit": _commit(), "wall_time_s": round(wall_time, 1),
                     "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                     "command": " ".join(["affect-zoo"] + sys.argv[1:]) if sys.argv else "",
                     "data_split": dict(recipe.dataset.splits), "evaluated_on": split,
                     "epochs": recipe.training.epochs, **(produced or {})}
    card.produced.update(stored)
    backbone = recipe.model.backbone
    if recipe.model.weights == "imagenet" and backbone in imagenet_packages.SOURCES:
        card.produced["init"] = imagenet_packages.provenance(backbone)
    if assets:
        card.produced["assets"] = sorted(assets)
    (folder / "SHA256SUMS").write_text("\n".join(sums) + "\n")
    (folder / "card.json").write_text(json.dumps(card.to_dict(), indent=2, default=_jsonable) + "\n")
    return card.to_dict()


def _store_dtype(model, recipe, weights_file, measured, split, data_dir):
    """Rewrite the weights file in ``model.weights_dtype`` (float16 halves it; loading casts back to float32).

    The card's metrics must be those of the file that ships, so a float16 file is loaded back and measured
    again; if any metric moves by more than ``FLOAT16_TOLERANCE`` the float32 file is kept instead. Returns
    ``{"measured", "dtype"}`` and, for float16, ``float16_max_metric_change``.
    """
    if recipe.model.weights_dtype == "float32":
        return {"measured": measured, "dtype": "float32"}
    full = model.network.get_weights()
    _cast_h5(weights_file, np.float16)
    model.network.load_weights(str(weights_file))
    again = evaluate(model, recipe, split=split, data_dir=data_dir)
    change = max(abs(again[t][m] - measured[t][m]) for t in measured for m in measured[t]
                 if np.isfinite(measured[t][m]))
    if change > FLOAT16_TOLERANCE:
        model.network.set_weights(full)
        model.network.save_weights(str(weights_file))
        return {"measured": measured, "dtype": "float32", "float16_max_metric_change": float(change),
                "float16_refused": f"a metric moved by {change:.2e} > {FLOAT16_TOLERANCE}"}
    return {"measured": again, "dtype": "float16", "float16_max_metric_change": float(change)}


def _cast_h5(path, dtype):
    """Every float32 array of a Keras ``.weights.h5`` file cast to ``dtype``, written to a temporary file that
    then replaces it (a reader never sees half a file)."""
    tmp = pathlib.Path(str(path) + ".tmp")
    with h5py.File(path, "r") as source, h5py.File(tmp, "w") as target:
        def copy(name, item):
            if isinstance(item, h5py.Group):
                group = target.require_group(name)
                group.attrs.update(item.attrs)
            else:
                data = item[()]
                out = target.create_dataset(name, data=data.astype(dtype) if data.dtype == np.float32 else data)
                out.attrs.update(item.attrs)

        target.attrs.update(source.attrs)
        source.visititems(copy)
    os.replace(tmp, path)


def _jsonable(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")

