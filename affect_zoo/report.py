"""The rank report: one self-contained HTML file (every picture a base64 data URI, no script, no external link),
so it can be mailed or opened offline.

It shows the ranking (thumbnail, score, each scalar output, the emotion distribution as a small bar chart),
Grad-CAM overlays of the top and bottom images for every task, the files that could not be read, and the entry's
card summary with its measured test metrics beside its baselines', so a reader knows how far to trust the scores.
Pictures are drawn with matplotlib (Agg, no pyplot state) and the page with a Jinja2 template
(``templates/report.html.j2``, autoescaped). Trade-off: a data URI is a third larger than the file it encodes,
so thumbnails are small JPEGs (``THUMBNAIL`` px on the long side) to keep a 100-image report near 1-2 MB.
"""
import base64
import datetime
import io
import math
import pathlib

import numpy as np
from PIL import Image

from affect_zoo import explain, imageio

TEMPLATES = pathlib.Path(__file__).parent / "templates"
THUMBNAIL = 192


def write_report(path, model, card, ranking, top=None, explained=3, focus=(None, None)):
    """Write the HTML report of ``ranking`` (``rank.score_folder``'s result) to ``path`` and return the path.

    card: the entry's ModelCard (or its dict); top: list only the first ``top`` images (None: all);
    explained: Grad-CAM for this many top and bottom images; focus: (task, output) whose Grad-CAM follows the
    ranked score (other tasks explain their predicted class / first value).
    """
    import jinja2  # only the report needs it

    card = card.to_dict() if hasattr(card, "to_dict") else dict(card)
    ranked = ranking["ranked"]
    rows = []
    for row in ranked[:top] if top else ranked:
        rows.append({**row, "thumbnail": _data_uri(_thumbnail(row["path"]), "JPEG"),
                     "scalars": _scalars(row["outputs"]),
                     "charts": {k: _data_uri(_bar_chart(v), "PNG") for k, v in row["outputs"].items()
                                if isinstance(v, dict)}})
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                                     undefined=jinja2.StrictUndefined)
    page = environment.get_template("report.html.j2").render(
        card=card, by=ranking["by"], rows=rows, total=len(ranked), errors=ranking["errors"],
        explanations=_explanations(model, ranked, explained, focus), metrics=metric_table(card),
        created=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


def _scalars(outputs):
    """{output: text} of the scalar outputs; a label shows its probability beside it (a plurality of 0.25 is
    not a confident call, and is why the polarity, read off the whole distribution, may disagree with it)."""
    shown = {}
    for key, value in outputs.items():
        if isinstance(value, dict):
            continue
        distribution = outputs.get(key.removesuffix("_label")) if key.endswith("_label") else None
        if isinstance(distribution, dict) and value in distribution:
            shown[key] = f"{value} (p = {distribution[value]:.3f})"
        else:
            shown[key] = value if isinstance(value, str) else f"{value:.3f}"
    return shown


def metric_table(card):
    """[(task, metric, entry's test value, {baseline: value})] as text, from the card's ``test`` split (or its
    ``test_over_seeds``, as mean ± sd); empty when the card has no measured test metrics."""
    metrics = card.get("metrics") or {}
    if "test_over_seeds" in metrics:
        over = metrics["test_over_seeds"]
        measured = {task: {k: f"{_number(v)} ± {_number(over['sd'][task][k])}" for k, v in values.items()}
                    for task, values in over["mean"].items()}
    else:
        measured = {task: {k: _number(v) for k, v in values.items()} for task, values in
                    (metrics.get("test") or {}).items()}
    baselines = {name: splits.get("test") or {} for name, splits in (card.get("baselines") or {}).items()}
    return [(task, metric, value, {name: _number(b.get(task, {}).get(metric)) for name, b in baselines.items()})
            for task, values in measured.items() for metric, value in values.items()]


def _number(value):
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.4f}" if isinstance(value, (float, int)) else str(value)


def _rgb(path):
    return imageio.decode_image(imageio.read_file(path), name=str(path))


def _thumbnail(path):
    picture = Image.fromarray(_rgb(path))
    picture.thumbnail((THUMBNAIL, THUMBNAIL))
    return picture


def _data_uri(picture, kind):
    buffer = io.BytesIO()
    if isinstance(picture, np.ndarray):
        picture = Image.fromarray(picture)
    picture.save(buffer, format=kind, **({"quality": 85} if kind == "JPEG" else {}))
    mime = "jpeg" if kind == "JPEG" else "png"
    return f"data:image/{mime};base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"


def _bar_chart(distribution):
    """A small PNG bar chart of {label: probability} (matplotlib's Agg canvas, no global pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(2.6, 1.3), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    labels, values = list(distribution), list(distribution.values())
    colours = ["#c0392b" if v == max(values) else "#7f8c8d" for v in values]
    axes.bar(range(len(values)), values, color=colours)
    axes.set_xticks(range(len(values)), [label[:4] for label in labels], fontsize=6)
    axes.set_ylim(0, 1)
    axes.tick_params(axis="y", labelsize=6)
    axes.spines[["top", "right"]].set_visible(False)
    figure.tight_layout(pad=0.3)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def _explanations(model, ranked, count, focus):
    """[{"which": "top 1"/"bottom 1"/..., "image", "score", "overlays": {task: data URI}}] for the ``count``
    best and worst images (each image once when the ranking is shorter than 2 × count)."""
    if not count or not ranked:
        return []
    picked = list(range(min(count, len(ranked))))
    picked += [i for i in range(max(len(ranked) - count, 0), len(ranked)) if i not in picked]
    images = [_rgb(ranked[i]["path"]) for i in picked]
    task, output = focus
    results = {}
    for t in model.tasks:
        results.update(explain.overlays(model, images, task=t.name, output=output if t.name == task else None))
    shown = []
    for position, index in enumerate(picked):
        row = ranked[index]
        which = f"top {index + 1}" if index < count else f"bottom {len(ranked) - index}"
        shown.append({"which": which, "image": row["image"], "score": row["score"], "original":
                      _data_uri(_thumbnail(row["path"]), "JPEG"),
                      "overlays": {name: (f"{result['layer']}, output {result['output'][position]}",
                                          _data_uri(result["overlays"][position], "PNG"))
                                   for name, result in results.items()}})
    return shown
