"""Score every image under a folder with a zoo entry and sort them by one output: pick the best shots of a burst.

What a file is: every regular file under the folder (recursively, symlinks followed), whatever its extension, is
tried, because "readable" is decided by the decoder and not by the name; hidden files and folders (a leading
``.``, e.g. ``.DS_Store``) are skipped. A file that cannot be read is listed with its reason and does not stop
the others (``inference.predict`` reports per image).

What can be ranked (``by``): any scalar output ``inference.predict`` names (``valence``, ``arousal``,
``emotion_intensity``, ``emotion_polarity``, ...) or ``<task>:<label>``, the probability of one class of a
classification / distribution / multilabel task (``emotion:joy``). Ties keep the folder's sorted path order.
"""
import os
import pathlib

import numpy as np

from affect_zoo import inference
from affect_zoo.tasks import named_outputs


def find_images(folder):
    """Sorted paths of the non-hidden regular files under ``folder`` (a clear error if it is not a folder)."""
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a folder (rank scores the images under a folder)")
    found = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [pathlib.Path(root) / f for f in files if not f.startswith(".")]
    return sorted(p for p in found if p.is_file())


def rankable(tasks):
    """The names ``by`` accepts for these tasks, in output order."""
    probe = {t.name: np.zeros((1, t.size), np.float32) for t in tasks}
    labels = {f"{t.name}_label" for t in tasks}  # names (or class indices), not scores
    names = [k for k, v in named_outputs(tasks, probe).items() if np.ndim(v) == 1 and k not in labels]
    for task in tasks:
        if task.handler.label_probabilities and task.labels:
            names += [f"{task.name}:{label}" for label in task.labels]
    return names


def target(by, tasks):
    """(task name, output to explain) for ``by``: which task's Grad-CAM shows what the ranking rewards."""
    if ":" in by:
        task, label = by.split(":", 1)
        return task, label
    for task in tasks:
        if task.handler.label_outputs and task.labels and by in task.labels:
            return task.name, by
        if by == task.name or by.startswith(f"{task.name}_"):
            return task.name, None
    return None, None


def score_folder(model, folder, by, batch_size=32, progress=None):
    """Score every image under ``folder`` and sort by ``by``, best first.

    Returns {"by", "ranked": [{"image": path relative to folder, "path", "score", "outputs": {name: value}}],
    "errors": [{"image", "error"}]}; outputs hold the scalars and, for each labelled distribution, {label: p}.
    ``progress(n)`` is called after each batch with the number of files done.
    """
    tasks = model.tasks
    choices = rankable(tasks)
    if by not in choices:
        raise ValueError(f"--by {by!r} is not an output of this entry; choose one of: {', '.join(choices)}")
    folder = pathlib.Path(folder)
    paths = find_images(folder)
    if not paths:
        raise FileNotFoundError(f"{folder}: no files to score under it")
    ranked, errors = [], []
    for start in range(0, len(paths), batch_size):
        chunk = paths[start:start + batch_size]
        out = inference.predict(model, [str(p) for p in chunk], batch_size=batch_size)
        for i, path in enumerate(chunk):
            name = path.relative_to(folder).as_posix()
            if out["errors"][i] is not None:
                errors.append({"image": name, "error": out["errors"][i]})
                continue
            outputs = _outputs(tasks, out, i)
            ranked.append({"image": name, "path": str(path), "score": _score(by, outputs), "outputs": outputs})
        if progress is not None:
            progress(len(chunk))
    ranked.sort(key=lambda row: -row["score"])  # stable: ties keep path order
    for position, row in enumerate(ranked, 1):
        row["rank"] = position
    return {"by": by, "ranked": ranked, "errors": errors}


def _outputs(tasks, out, i):
    labelled = {t.name: t.labels for t in tasks if t.handler.label_probabilities and t.labels}
    row = {}
    for key, value in out.items():
        if key == "errors":
            continue
        item = value[i]
        if key in labelled:
            row[key] = {label: float(p) for label, p in zip(labelled[key], item)}
        elif np.ndim(item) == 0:
            row[key] = item if isinstance(item, str) else float(item)
    return row


def _score(by, outputs):
    if ":" in by:
        task, label = by.split(":", 1)
        return outputs[task][label]
    return outputs[by]
