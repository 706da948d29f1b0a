"""``affect-zoo``: list, inspect, run, train and evaluate zoo entries from the shell.

Every command that scripts may read has ``--json`` (strict JSON: NaN and infinities are written as null); long
work shows a progress bar on stderr. ``--help``, ``list`` and ``info`` answer without importing TensorFlow (they
read the registry only); the other commands import it with its start-up messages silenced unless ``--verbose``.

Exit status: 0 success; 2 bad input (an unknown entry, a missing file, a bad recipe or card, bad arguments);
1 anything else (a failed download, a full disk, weights that do not fit, ``predict`` with an image it could not
score). Errors print one line, ``affect-zoo: error: …``, and no traceback.
"""
import argparse
import contextlib
import json
import math
import os
import pathlib
import sys

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1
EXIT_STATUS = f"""exit status: 0 success; {EXIT_BAD_INPUT} bad input (unknown entry, missing file, bad recipe or arguments);
  {EXIT_FAILED} anything else (download, disk, weights that do not fit, an image predict could not score)"""


def _plain(value):
    """``value`` as JSON can hold it: NumPy arrays and scalars as lists and numbers, NaN and infinities as None
    (JSON has no NaN; Python's ``json`` would write a bare ``NaN`` that other parsers refuse), tuples as lists,
    anything else unknown as its string."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if hasattr(value, "tolist"):  # NumPy arrays and scalars
        return _plain(value.tolist())
    return str(value)


def _print_json(value):
    print(json.dumps(_plain(value), indent=2, allow_nan=False))


def cmd_list(args):
    from affect_zoo import registry

    pretrained = {"yes": True, "no": False}.get(args.pretrained)
    names = registry.list_models(args.pattern, pretrained=pretrained)
    cards = [registry.model_card(n) for n in names]
    if args.json:
        _print_json([{"name": c.name, "pretrained": c.pretrained, "dataset": c.dataset} for c in cards])
        return
    rows = [("NAME", "WEIGHTS", "DATASET")] + [(n, "yes" if c.pretrained else "-", c.dataset)
                                              for n, c in zip(names, cards)]
    width = max(len(r[0]) for r in rows)
    for name, weights, dataset in rows:
        print(f"{name:{width}s}  {weights:7s}  {dataset}")


def cmd_info(args):
    from affect_zoo import registry

    card = registry.model_card(args.name).to_dict()
    if args.json:
        _print_json(card)
        return
    for key, value in card.items():
        if value in (None, "", {}, []):
            continue
        text = json.dumps(_plain(value)) if isinstance(value, (dict, list, tuple)) else str(value)
        print(f"{key:12s} {text.strip()}")


def _existing_file(path, flag):
    """``path`` (a user's file named on the command line), or a FileNotFoundError naming the flag."""
    if path is not None and not os.path.isfile(path):
        raise FileNotFoundError(f"{flag}: no such file: {path}")
    return path


def cmd_predict(args):
    """Scores every image; exits 1 (after printing all results) when any image could not be read. A directory,
    fifo or missing path is one of those (its row says why): arguments are images, not folders to walk, so one
    argument is always one row (pass DIR/*.jpg for a folder's images). A model that takes more than images (an
    mmemo entry) reads one ``--text`` and/or ``--tags`` per row, in order; with no images, each row is a post of
    text and tags only. Posts that mix rows with and without an image go through the Python ``predict``."""
    import keras
    import numpy as np

    from affect_zoo import inference, zoo

    inputs = _post_inputs(args)
    rows = len(args.images) or max((len(v) for v in inputs.values()), default=0)
    if not rows:
        raise ValueError("predict: give at least one image (or, for an mmemo entry, --text / --tags)")
    for flag, values in inputs.items():
        if len(values) != rows:
            raise ValueError(f"predict: --{flag} given {len(values)} times for {rows} rows; give one per row, in order")
    model = zoo.load(args.name, weights=_existing_file(args.weights, "--weights") or "default")
    names = args.images or list(range(rows))  # a row is its image, or (text/tags only) its post number
    id_field = "image" if args.images else "post"
    results, bar = [], keras.utils.Progbar(rows, verbose=0 if args.json or rows < 8 else 1)
    for start in range(0, rows, args.batch_size):
        chunk = names[start:start + args.batch_size]
        with _stdout_to_stderr():  # Keras' bar prints to stdout, which holds the results
            out = inference.predict(model, chunk if args.images else None, batch_size=args.batch_size,
                                    **{k: v[start:start + args.batch_size] for k, v in inputs.items()})
            bar.add(len(chunk))
        for i, path in enumerate(chunk):
            if out["errors"][i] is not None:
                results.append({id_field: path, "error": out["errors"][i]})
                continue
            row = {id_field: path}
            for key, value in out.items():
                if key != "errors":
                    row[key] = value[i]
            for task in model.tasks:  # a distribution reads better in JSON as {emotion name: probability}
                if task.handler.label_probabilities and task.labels:
                    row[task.name] = dict(zip(task.labels, row[task.name]))
            results.append(row)
    if args.json:
        _print_json(results)
    for row in [] if args.json else results:
        name = row["image"] if args.images else f"post {row['post']}"
        if "error" in row:
            print(f"{name}: ERROR {row['error']}")
            continue
        parts = []
        for field, value in row.items():
            if field in ("image", "post") or isinstance(value, dict) or np.ndim(value) > 0:
                continue
            parts.append(f"{field}={value:.3f}" if isinstance(value, (float, np.floating)) else f"{field}={value}")
            if field.endswith("_label") and isinstance(row.get(field.removesuffix("_label")), dict):  # how sure
                parts.append(f"{field}_p={row[field.removesuffix('_label')][value]:.3f}")
        print(f"{name}: {' '.join(parts)}")
    if any("error" in row for row in results):
        sys.exit(EXIT_FAILED)


def _post_inputs(args):
    """{"text": [...], "tags": [[...], ...]} from the repeated ``--text`` / ``--tags`` flags (tags comma-separated;
    an empty ``--text ""`` or ``--tags ""`` is a post without it), only the flags given."""
    inputs = {}
    if args.text is not None:
        inputs["text"] = [text or None for text in args.text]
    if args.tags is not None:
        inputs["tags"] = [[tag.strip() for tag in value.split(",") if tag.strip()] or None for value in args.tags]
    return inputs


def cmd_gradcam(args):
    """Writes OUT/<image stem>_<task>.png per image and task; an unreadable image is reported and skipped, and
    the command then exits 1 after writing the others (as predict does)."""
    import numpy as np
    from PIL import Image

    from affect_zoo import explain, imageio, zoo

    if args.output is not None and args.task is None:
        raise ValueError("--output names one task's output: give --task too")
    stems = {}
    for path in args.images:
        stem = pathlib.Path(path).stem
        if stem in stems:
            raise ValueError(f"{stems[stem]} and {path} would both write {stem}_<task>.png: rename one")
        stems[stem] = path
    model = zoo.load(args.name, weights=args.weights or "default")
    images, kept, failed = [], [], 0
    for path in args.images:
        try:
            images.append(imageio.decode_image(imageio.read_file(path), name=path))
            kept.append(path)
        except (ValueError, OSError) as error:
            print(f"{path}: ERROR {error}", file=sys.stderr)
            failed += 1
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for start in range(0, len(kept), args.batch_size):
        chunk = slice(start, start + args.batch_size)
        results = explain.overlays(model, images[chunk], task=args.task, output=args.output)
        for i, path in enumerate(kept[chunk]):
            for task, result in results.items():
                target = out / f"{pathlib.Path(path).stem}_{task}.png"
                Image.fromarray(np.asarray(result["overlays"][i])).save(target)
                written.append({"image": path, "task": task, "output": result["output"][i],
                                "score": float(result["score"][i]), "layer": result["layer"], "png": str(target)})
    if args.json:
        print(json.dumps(written, indent=2, allow_nan=False))
    else:
        for row in written:
            print(f"{row['png']}\t{row['task']} output {row['output']} = {row['score']:.3f} at {row['layer']}")
    if failed:
        sys.exit(1)


def cmd_rank(args):
    """Scores every file under DIR; unreadable files are listed (stdout table's end, JSON "errors", the report)
    and do not change the exit status, which is 0 once any image was scored."""
    import keras

    from affect_zoo import rank, zoo

    if args.top is not None and args.top < 1:
        raise ValueError(f"--top must be at least 1, got {args.top}")
    if args.explain < 0:
        raise ValueError(f"--explain must be 0 (no Grad-CAM) or more, got {args.explain}")
    model = zoo.load(args.name, weights=args.weights or "default")
    files = len(rank.find_images(args.dir))
    bar = keras.utils.Progbar(files, verbose=0 if files < 8 else 1, unit_name="file")
    with _stdout_to_stderr():  # the bar belongs on stderr: stdout is the table (or JSON) scripts read
        ranking = rank.score_folder(model, args.dir, args.by, batch_size=args.batch_size, progress=bar.add)
    if not ranking["ranked"]:
        raise ValueError(f"{args.dir}: none of its {files} files could be read as an image "
                         f"(first: {ranking['errors'][0]['image']}: {ranking['errors'][0]['error']})")
    shown = ranking["ranked"][:args.top] if args.top else ranking["ranked"]
    if args.csv:
        _write_rank_csv(args.csv, shown)
    if args.report:
        from affect_zoo import report

        with _stdout_to_stderr():
            report.write_report(args.report, model, zoo.model_card(args.name), ranking, top=args.top,
                                explained=args.explain, focus=rank.target(args.by, model.tasks))
    if args.json:
        print(json.dumps({"by": args.by, "ranked": [{k: v for k, v in row.items() if k != "path"} for row in shown],
                          "errors": ranking["errors"]}, indent=2, allow_nan=False))
        return
    columns = _rank_columns(shown[0]["outputs"])
    print("\t".join(["rank", args.by, "image", *columns]))
    for row in shown:
        print("\t".join([str(row["rank"]), f"{row['score']:.4f}", row["image"],
                         *(_cell(row["outputs"], c) for c in columns)]))
    for error in ranking["errors"]:
        print(f"unreadable\t{error['image']}\t{error['error']}")
    for path in (args.csv, args.report):
        if path:
            print(f"wrote {path}", file=sys.stderr)


def _rank_columns(outputs):
    """Scalar outputs, with each label followed by its probability (``emotion_label_p``): a label alone hides how
    sure the model is, and why the polarity may disagree with it (see the README)."""
    columns = []
    for key, value in outputs.items():
        if isinstance(value, dict):
            continue
        columns.append(key)
        if key.endswith("_label") and isinstance(outputs.get(key.removesuffix("_label")), dict):
            columns.append(f"{key}_p")
    return columns


def _cell(outputs, column):
    if column.endswith("_label_p"):
        task = column.removesuffix("_label_p")
        return f"{outputs[task][outputs[f'{task}_label']]:.3f}"
    value = outputs[column]
    return value if isinstance(value, str) else f"{value:.4f}"


def _write_rank_csv(path, rows):
    import csv

    columns = _rank_columns(rows[0]["outputs"])
    distributions = [k for k, v in rows[0]["outputs"].items() if isinstance(v, dict)]
    header = ["rank", "image", "score", *columns,
              *(f"{task}:{label}" for task in distributions for label in rows[0]["outputs"][task])]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for row in rows:
            outputs = row["outputs"]
            writer.writerow([row["rank"], row["image"], f"{row['score']:.6f}", *(_cell(outputs, c) for c in columns),
                             *(f"{p:.6f}" for task in distributions for p in outputs[task].values())])


@contextlib.contextmanager
def _stdout_to_stderr():
    """Keras' progress bar (and anything else a library prints) goes to stderr while this block runs; on an error
    the bar's unfinished line is ended, so that the one-line error starts a line of its own."""
    stream = _LineTracking(sys.stderr)
    with contextlib.redirect_stdout(stream):
        try:
            yield
        except BaseException:
            if stream.open_line:
                sys.stderr.write("\n")
            raise


class _LineTracking:
    """A text stream passing writes on and remembering whether the last one left its line open."""

    def __init__(self, stream):
        self.stream, self.open_line = stream, False

    def write(self, text):
        if text:
            self.open_line = not text.endswith("\n")
        return self.stream.write(text)

    def __getattr__(self, name):  # flush, isatty, encoding, ...: the wrapped stream's
        return getattr(self.stream, name)


def cmd_train(args):
    from affect_zoo import experiments, registry

    output_dir = pathlib.Path(args.output_dir) if args.output_dir else registry.folders().saved_models
    with _stdout_to_stderr():  # Keras' training log and bars; stdout holds the summary (or JSON)
        card = experiments.train(args.recipe, run_dir=args.run_dir, data_dir=args.data_dir, epochs=args.epochs,
                                 resume=args.resume, verbose=0 if args.json else 1, output_dir=output_dir,
                                 overwrite_entry=args.overwrite_entry)
    if args.json:
        _print_json(card)
    else:
        print(f"wrote {output_dir / card['name']}: {card['weights']['file']} ({card['weights']['sha256'][:12]}…)")
        _print_metrics(card["metrics"], card["baselines"])


def cmd_evaluate(args):
    import keras

    from affect_zoo import evaluation

    bar = keras.utils.Progbar(None, verbose=0 if args.json else 1, unit_name="image")
    with _stdout_to_stderr():
        measured = evaluation.evaluate(args.name, split=args.split, data_dir=args.data_dir, progress=bar.add)
    if args.json:
        _print_json({"name": args.name, "split": args.split, "metrics": measured})
    else:
        _print_metrics({args.split: measured}, {})


def cmd_export(args):
    from affect_zoo import export, zoo

    model = zoo.load(args.name, weights=_existing_file(args.weights, "--weights") or "default")
    version = args.version if args.version is not None else _recipe_export_version(args.name)
    path = export.export_saved_model(model, args.out_dir, version=version, name=args.name,
                                     overwrite=args.overwrite, max_pixels=args.max_pixels or None)
    if args.json:
        _print_json({"name": args.name, "path": str(path), "outputs": export.read_export_info(path)["outputs"]})
    else:
        print(f"exported {args.name} to {path}")


def _recipe_export_version(name):
    """The entry's recipe ``export.version`` (1 for an entry registered in code, which has no recipe)."""
    from affect_zoo import recipes, registry

    if not recipes.recipe_path(name, registry.folders().recipes).is_file():
        return recipes.ExportSpec().version
    return registry.load_recipe(name, components=False).export.version


def cmd_serve_config(args):
    from affect_zoo import export

    path = export.write_model_config(args.out_dir, base_path=args.base_path, policy=args.policy)
    print(path)


def _print_metrics(measured, baselines):
    """One line per split and task; baselines' lines are labelled ``<baseline>:<split>``. A multi-seed card's
    ``<split>_over_seeds`` prints as the mean ± sd over its seeds."""
    rows = []
    for split, by_split in measured.items():
        if "per_seed" in by_split:
            seeds = ", ".join(map(str, by_split["seeds"]))
            rows.append((f"{split.removesuffix('_over_seeds')} (mean ± sd, seeds {seeds})",
                         {task: {k: f"{v:.4f} ± {by_split['sd'][task][k]:.4f}" for k, v in values.items()}
                          for task, values in by_split["mean"].items()}))
        else:
            rows.append((split, by_split))
    rows += [(f"{name}:{split}", by_split) for name, splits in baselines.items() for split, by_split in splits.items()]
    for label, per_task in rows:
        for task, values in per_task.items():
            cells = (f"{k}={v}" if isinstance(v, str) else f"{k}={v:.4f}" for k, v in values.items())
            print(f"{label:10s} {task:16s} " + " ".join(cells))


def _command(sub, name, help, example, run, tensorflow=True):
    """A subcommand with its one-line help, an example in its ``--help`` and whether it needs TensorFlow."""
    s = sub.add_parser(name, help=help, description=help, epilog=f"example:\n  {example}\n\n{EXIT_STATUS}",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    s.set_defaults(run=run, tensorflow=tensorflow)
    return s


def _json_flag(s):
    s.add_argument("--json", action="store_true", help="print JSON for scripts instead of text")


def parser():
    from affect_zoo import imageio

    p = argparse.ArgumentParser(prog="affect-zoo", description="Image aesthetics and emotion model zoo.",
                                epilog=f"example:\n  affect-zoo list 'afi_*'\n  affect-zoo COMMAND --help\n\n{EXIT_STATUS}",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--verbose", action="store_true", help="show TensorFlow's start-up messages (hidden by default)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND",
                           help="one of these (`affect-zoo COMMAND --help` for its arguments and an example)")
    s = _command(sub, "list", "list entries", "affect-zoo list 'afi_*' --pretrained yes", cmd_list, tensorflow=False)
    s.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern of entry names (default: all), e.g. 'afi_*'")
    s.add_argument("--pretrained", choices=["yes", "no"], help="only entries with (yes) / without (no) weights")
    _json_flag(s)
    s = _command(sub, "info", "show an entry's model card", "affect-zoo info afi_efficientnet_lite0_emotion6 --json", cmd_info,
                 tensorflow=False)
    s.add_argument("name", help="entry name (see `affect-zoo list`)")
    _json_flag(s)
    s = _command(sub, "predict", "score images", "affect-zoo predict afi_efficientnet_lite0_emotion6 photo.jpg shots/*.png --json",
                 cmd_predict)
    s.add_argument("name", help="entry name (see `affect-zoo list`)")
    s.add_argument("images", nargs="*", help="image files (one row each; a folder is an error row: pass DIR/*.jpg)")
    s.add_argument("--weights", help="a .weights.h5 file instead of the entry's weights")
    s.add_argument("--batch-size", type=int, default=32, help="images per model call (default 32)")
    s.add_argument("--text", action="append", help="mmemo entries: a post's text, once per row in order")
    s.add_argument("--tags", action="append", help="mmemo entries: a post's tags, comma-separated, once per row")
    _json_flag(s)
    s = _command(sub, "gradcam", "write Grad-CAM overlays (PNG) of images, one per image and task",
                 "affect-zoo gradcam afi_efficientnet_lite0_emotion6 a.jpg b.png --out cams/", cmd_gradcam)
    s.add_argument("name", help="the entry")
    s.add_argument("images", nargs="+", help="image files (any format Pillow reads)")
    s.add_argument("--out", required=True, help="folder for <image stem>_<task>.png")
    s.add_argument("--task", help="only this task (default: every task of the entry)")
    s.add_argument("--output", help="with --task: explain this label (e.g. arousal, joy) instead of the "
                                    "predicted class / the first value")
    s.add_argument("--weights", help="a .weights.h5 file instead of the entry's weights")
    s.add_argument("--batch-size", type=int, default=8, help="images per Grad-CAM call (default 8)")
    _json_flag(s)
    s = _command(sub, "rank", "score every image under a folder and sort them by one output",
                 "affect-zoo rank afi_efficientnet_lite0_emotion6 photos/ --by emotion:joy --top 10 --csv ranked.csv "
                 "--report ranked.html", cmd_rank)
    s.add_argument("name", help="the entry")
    s.add_argument("dir", help="folder, searched recursively; files that are not images are listed, not fatal")
    s.add_argument("--by", default="valence",
                   help="a scalar output (valence, arousal, emotion_intensity, ...) or <task>:<label> "
                        "(emotion:joy); highest first (default valence)")
    s.add_argument("--top", type=int, help="list only the best K images (table, CSV, report)")
    s.add_argument("--csv", help="also write the ranking to this CSV file (with every probability)")
    s.add_argument("--report", help="also write a self-contained HTML report to this file")
    s.add_argument("--explain", type=int, default=3, help="report: Grad-CAM of this many top and bottom images")
    s.add_argument("--weights", help="a .weights.h5 file instead of the entry's weights")
    s.add_argument("--batch-size", type=int, default=32, help="images per model call (default 32)")
    _json_flag(s)
    s = _command(sub, "train", "train an entry from its recipe",
                 "affect-zoo train recipes/afi_vgg16_emotion6.yaml --data-dir ~/tensorflow_datasets --run-dir runs/afi",
                 cmd_train)
    s.add_argument("recipe", help="recipes/<name>.yaml or an entry name")
    s.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its last epoch")
    s.add_argument("--epochs", type=int, help="override the recipe's epochs (with phases: cap each phase)")
    s.add_argument("--data-dir", help="where the TFDS datasets are built")
    s.add_argument("--run-dir", help="checkpoints, logs and resume state (default runs/<name>)")
    s.add_argument("--output-dir", help="where to write <name>/ with weights and card (default saved_models/)")
    s.add_argument("--overwrite-entry", action="store_true",
                   help="replace an entry already published in the output directory (refused by default)")
    _json_flag(s)
    s = _command(sub, "evaluate", "measure an entry on a split of its dataset",
                 "affect-zoo evaluate afi_efficientnet_lite0_emotion6 --split test --data-dir ~/tensorflow_datasets", cmd_evaluate)
    s.add_argument("name", help="entry name (see `affect-zoo list`)")
    s.add_argument("--split", default="test", help="the split of the entry's dataset (default test)")
    s.add_argument("--data-dir", help="where the TFDS datasets are built")
    _json_flag(s)
    s = _command(sub, "export", "export an entry as a SavedModel in TF Serving's layout",
                 "affect-zoo export afi_efficientnet_lite0_emotion6 exports/ --version 2", cmd_export)
    s.add_argument("name", help="entry name (see `affect-zoo list`)")
    s.add_argument("out_dir", help="base directory; the export goes to OUT_DIR/<name>/<version>/")
    s.add_argument("--version", type=int,
                   help="TF Serving version number (default: the recipe's export.version, 1 unless it says)")
    s.add_argument("--overwrite", action="store_true", help="replace an existing version")
    s.add_argument("--weights", help="a .weights.h5 file instead of the entry's weights")
    s.add_argument("--max-pixels", type=int, default=imageio.MAX_PIXELS,
                   help=f"the bytes signature refuses larger images (default {imageio.MAX_PIXELS}; 0: no limit)")
    _json_flag(s)
    s = _command(sub, "serve-config", "write OUT_DIR/models.config for every exported model",
                 "affect-zoo serve-config exports/ --base-path /models", cmd_serve_config)
    s.add_argument("out_dir", help="the directory holding the exports (<name>/<version>/)")
    s.add_argument("--base-path", help="the directory as the server sees it (e.g. /models in the container)")
    s.add_argument("--policy", choices=["all", "latest", "specific"], default="all",
                   help="which versions the server loads (default all)")
    return p


def _quiet_tensorflow():
    """Import TensorFlow with its start-up messages hidden. Its C++ logging writes lines such as "All log messages
    before absl::InitializeLog() ..." and the oneDNN/CUDA notices straight to file descriptor 2 before any setting
    is read (TF_CPP_MIN_LOG_LEVEL does not stop them), so the import runs with fd 2 on a temporary file, which is
    replayed if the import fails. Later warnings are cut to errors (TF_CPP_MIN_LOG_LEVEL=2, absl at ERROR)."""
    import tempfile

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        except BaseException:
            os.dup2(saved, 2)
            sink.seek(0)
            sys.stderr.write(sink.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    import absl.logging

    absl.logging.set_verbosity(absl.logging.ERROR)


def main(argv=None):
    """The command. ``argv=None`` (the console script) reads sys.argv and, after a full or read-only disk, ends
    the process with ``os._exit``: HDF5 that has hit ENOSPC crashes the interpreter's teardown (exit 139, seen
    here), and the files are already safe. Called with an ``argv`` list it raises SystemExit as usual."""
    args = parser().parse_args(argv)
    if args.tensorflow and not args.verbose and "tensorflow" not in sys.modules:
        _quiet_tensorflow()
    try:
        args.run(args)
    except (ValueError, FileNotFoundError, FileExistsError) as error:
        print(f"affect-zoo: error: {error}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    except (RuntimeError, OSError) as error:
        from affect_zoo.files import DiskError

        print(f"affect-zoo: error: {error}", file=sys.stderr)
        if isinstance(error, DiskError) and argv is None:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(EXIT_FAILED)
        sys.exit(EXIT_FAILED)


if __name__ == "__main__":
    main()
