"""What a training run publishes: the entry folder ``<output_dir>/<name>/`` with ``<name>.weights.h5`` (the
network's weights only, float16 when that moves no test metric by more than ``FLOAT16_TOLERANCE``), ``card.json``
(the recipe's card, the measured metrics next to the trivial baseline, how the weights were produced) and
``SHA256SUMS``, written whole and renamed into place so a reader never sees half an entry."""
import datetime
import json
import os
import pathlib
import shutil
import subprocess
import sys

import h5py
import numpy as np

from affect_zoo import files, registry
from affect_zoo.backbones import imagenet_packages
from affect_zoo.cache import sha256
from affect_zoo.evaluation import evaluate
from affect_zoo.training import weights_bytes

FLOAT16_TOLERANCE = 1e-3


def refuse_existing_entry(folder, overwrite):
    """FileExistsError when ``folder`` holds anything (a published entry, or files of someone else's) and
    ``overwrite`` is not set: training never deletes what it did not write unless told to."""
    if overwrite or not folder.exists() or (folder.is_dir() and not any(folder.iterdir())):
        return
    what = ("a published entry (card.json, weights, SHA256SUMS)" if (folder / "card.json").is_file() else
            "files but no card.json")
    raise FileExistsError(f"{folder} already holds {what}: pass --overwrite-entry to replace it, or --output-dir "
                          f"to write elsewhere (nothing was trained or replaced)")


def entry_bytes(model, assets):
    """About the bytes an entry takes: the network's weights and the asset files (the card is in the margin)."""
    return weights_bytes(model.network) + sum(len(text.encode("utf-8")) for text in (assets or {}).values())


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
    refuse_existing_entry(folder, overwrite)
    files.make_dirs(folder.parent)
    files.check_free_space(folder.parent, entry_bytes(model, assets))
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
    digest = sha256(weights_file)
    sums = [f"{digest}  {weights_file.name}"]
    for filename, text in (assets or {}).items():
        (folder / filename).write_text(text, encoding="utf-8")
        sums.append(f"{sha256(folder / filename)}  {filename}")
    card = registry.card_from_recipe(recipe)
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
    (folder / "card.json").write_text(json.dumps(card.to_dict(), indent=2, default=jsonable) + "\n")
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
    cast_h5(weights_file, np.float16)
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


def cast_h5(path, dtype):
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


def jsonable(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
