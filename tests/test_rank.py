"""`affect-zoo gradcam` and `affect-zoo rank` (table, CSV, JSON, HTML report) on a tiny published entry, and the
report opened in a real headless Chromium (slow)."""
import csv
import html.parser
import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from affect_zoo import cli, explain, inference, rank, report, zoo

RECIPE = {
    "name": "tiny_rank",
    "dataset": {"name": "emotion6", "splits": {"train": "train", "validation": "validation", "test": "test"}},
    "model": {"family": "multitask", "architecture": "afi", "backbone": "vgg16", "input_size": [32, 32],
              "options": {"depth": 1}},
    "tasks": [{"name": "va", "kind": "regression", "size": 2, "branch": 0, "labels": ["valence", "arousal"],
               "target_range": [1, 9]},
              {"name": "emotion", "kind": "distribution", "size": 7, "branch": 1, "circle": "emotion6"}],
    "training": {"epochs": 1, "batch_size": 8, "optimizer": {"name": "adam", "learning_rate": 0.001}},
}
METRICS = {"test": {"valence": {"mae": 1.25, "pearson_r": 0.5}, "emotion": {"kl": 0.4321, "top1_accuracy": 0.5}}}
BASELINES = {"train_mean": {"test": {"valence": {"mae": 1.6}, "emotion": {"kl": 0.62}}}}


@pytest.fixture(scope="module")
def entry(tmp_path_factory, scratch_zoo):
    """A published entry without training: random weights (seeded) with a card that carries measured metrics."""
    import keras

    with scratch_zoo(tmp_path_factory, RECIPE) as root:
        keras.utils.set_random_seed(0)
        model = zoo.load("tiny_rank", weights=None)
        folder = root / "saved_models" / "tiny_rank"
        folder.mkdir(parents=True)
        model.network.save_weights(str(folder / "tiny_rank.weights.h5"))
        card = zoo.card_from_recipe(RECIPE).to_dict()
        card.update(metrics=METRICS, baselines=BASELINES, notes="random weights, for tests",
                    weights={"file": "tiny_rank.weights.h5", "sha256": zoo.sha256(folder / "tiny_rank.weights.h5")})
        (folder / "card.json").write_text(json.dumps(card))
        yield zoo.load("tiny_rank")


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Seven images in three formats, two of them in a subfolder, plus a text file, an empty .jpg and a hidden
    file (skipped)."""
    root = tmp_path_factory.mktemp("photos")
    (root / "burst").mkdir()
    rng = np.random.default_rng(0)
    for i in range(7):
        size = (20 + 5 * i, 30 + 3 * i)
        picture = Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8))
        name = ["a.jpg", "b.png", "c.bmp", "d.jpg", "e.png", "burst/f.jpg", "burst/g.png"][i]
        picture.save(root / name)
    (root / "notes.txt").write_text("not an image")
    (root / "burst" / "empty.jpg").write_bytes(b"")
    (root / ".hidden.jpg").write_text("skipped")
    return root


IMAGES = ["a.jpg", "b.png", "burst/f.jpg", "burst/g.png", "c.bmp", "d.jpg", "e.png"]
UNREADABLE = ["burst/empty.jpg", "notes.txt"]


def run(capsys, *argv):
    """(exit status, stdout, stderr) of the command run in this process (the scratch zoo is patched in)."""
    try:
        cli.main(list(argv))
        status = 0
    except SystemExit as exit_:
        status = exit_.code
    out, err = capsys.readouterr()
    return status, out, err


def test_find_images_walks_the_folder_and_skips_hidden_files(photos):
    found = [p.relative_to(photos).as_posix() for p in rank.find_images(photos)]
    assert found == sorted(IMAGES + UNREADABLE)
    with pytest.raises(FileNotFoundError, match="not a folder"):
        rank.find_images(photos / "a.jpg")


def test_rankable_outputs_and_what_grad_cam_follows(entry):
    names = rank.rankable(entry.tasks)
    assert names[:2] == ["valence", "arousal"]
    assert {"emotion_intensity", "emotion_polarity", "emotion:joy", "emotion:neutral"} <= set(names)
    assert "emotion_label" not in names and "emotion" not in names
    assert rank.target("arousal", entry.tasks) == ("va", "arousal")
    assert rank.target("emotion:joy", entry.tasks) == ("emotion", "joy")
    assert rank.target("emotion_intensity", entry.tasks) == ("emotion", None)


def test_rank_table_is_sorted_by_the_scores_predict_gives(entry, photos, capsys):
    status, out, _ = run(capsys, "rank", "tiny_rank", str(photos), "--by", "arousal")
    assert status == 0
    lines = out.strip().splitlines()
    header = lines[0].split("\t")
    assert header[:3] == ["rank", "arousal", "image"] and "emotion_label_p" in header
    expected = inference.predict(entry, [str(photos / name) for name in IMAGES])
    order = [IMAGES[i] for i in np.argsort(-expected["arousal"], kind="stable")]
    rows = [line.split("\t") for line in lines[1:1 + len(IMAGES)]]
    assert [r[2] for r in rows] == order
    assert [int(r[0]) for r in rows] == list(range(1, len(IMAGES) + 1))
    by_image = dict(zip(IMAGES, expected["arousal"]))
    for r in rows:
        assert float(r[1]) == pytest.approx(by_image[r[2]], abs=1e-4)
        label, p = r[header.index("emotion_label")], float(r[header.index("emotion_label_p")])
        i = IMAGES.index(r[2])
        assert label == expected["emotion_label"][i]
        assert p == pytest.approx(expected["emotion"][i].max(), abs=1e-3)
    unreadable = [line.split("\t") for line in lines[1 + len(IMAGES):]]
    assert [u[:2] for u in unreadable] == [["unreadable", name] for name in UNREADABLE]


def test_rank_json_is_strict_and_csv_has_every_probability(entry, photos, capsys, tmp_path):
    status, out, _ = run(capsys, "rank", "tiny_rank", str(photos), "--by", "emotion:joy", "--top", "3",
                         "--json", "--csv", str(tmp_path / "r.csv"))
    assert status == 0

    def refuse(constant):
        raise AssertionError(f"non-standard JSON constant {constant}")

    ranked = json.loads(out, parse_constant=refuse)
    assert ranked["by"] == "emotion:joy" and len(ranked["ranked"]) == 3
    assert [e["image"] for e in ranked["errors"]] == UNREADABLE
    expected = inference.predict(entry, [str(photos / name) for name in IMAGES])
    joy = expected["emotion"][:, 3].astype(float)
    assert [row["image"] for row in ranked["ranked"]] == [IMAGES[i] for i in np.argsort(-joy, kind="stable")[:3]]
    assert ranked["ranked"][0]["score"] == pytest.approx(ranked["ranked"][0]["outputs"]["emotion"]["joy"])
    with open(tmp_path / "r.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [row["image"] for row in table] == [row["image"] for row in ranked["ranked"]]
    probabilities = [float(table[0][f"emotion:{label}"]) for label in entry.tasks[1].labels]
    assert sum(probabilities) == pytest.approx(1.0, abs=1e-4)
    assert float(table[0]["score"]) == pytest.approx(float(table[0]["emotion:joy"]))


def test_rank_names_a_bad_by_and_a_folder_without_images(entry, photos, capsys, tmp_path):
    status, _, err = run(capsys, "rank", "tiny_rank", str(photos), "--by", "emotion:happy")
    assert status == 2 and "emotion:happy" in err and "emotion:joy" in err and "valence" in err
    status, _, err = run(capsys, "rank", "tiny_rank", str(photos), "--top", "0")
    assert status == 2 and "--top must be at least 1, got 0" in err
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x.txt").write_text("no")
    status, _, err = run(capsys, "rank", "tiny_rank", str(tmp_path / "junk"))
    assert status == 2 and "none of its 1 files could be read" in err and "x.txt" in err


class _Images(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources, self.links = [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.sources.append(attrs["src"])
        self.links += [v for k, v in attrs.items() if k in ("href", "src") and tag != "img"]


@pytest.fixture(scope="module")
def written_report(entry, photos, tmp_path_factory):
    path = tmp_path_factory.mktemp("report") / "report.html"
    ranking = rank.score_folder(entry, photos, "valence")
    report.write_report(path, entry, zoo.model_card("tiny_rank"), ranking, explained=2,
                        focus=rank.target("valence", entry.tasks))
    return path, ranking


def test_report_is_self_contained_with_every_picture(written_report):
    path, ranking = written_report
    page = path.read_text()
    images = _Images()
    images.feed(page)
    # per ranked image: thumbnail + bar chart; per explained image (2 top + 2 bottom): original + 2 tasks' overlays
    assert len(images.sources) == 2 * len(IMAGES) + 4 * 3
    assert all(re.fullmatch(r"data:image/(png|jpeg);base64,[A-Za-z0-9+/=]+", s) for s in images.sources)
    assert images.links == [] and "http" not in page.replace("http-equiv", "")
    for name in IMAGES + UNREADABLE:
        assert name in page
    assert "0.4321" in page and "1.6000" in page and "random weights, for tests" in page  # card, metrics, baseline
    best, worst = ranking["ranked"][0], ranking["ranked"][-1]
    assert f"top 1: {best['image']}" in page and f"bottom 1: {worst['image']}" in page
    assert "interaction_1[0], output valence" in page


def test_report_pictures_decode_at_their_sizes(written_report):
    import base64
    import io

    path, _ = written_report
    images = _Images()
    images.feed(path.read_text())
    pictures = [Image.open(io.BytesIO(base64.b64decode(s.split(",", 1)[1]))) for s in images.sources]
    for picture in pictures:
        picture.load()  # raises on a truncated or corrupt picture
    thumbnails = [p.size for p in pictures if p.format == "JPEG"]
    assert len(thumbnails) == len(IMAGES) + 4 and all(max(size) <= report.THUMBNAIL for size in thumbnails)
    assert [p.size for p in pictures if p.format == "PNG"].count((32, 32)) == 8  # overlays at the input size


def test_metric_table_reads_multi_seed_cards():
    card = {"metrics": {"test_over_seeds": {"mean": {"va": {"mae": 1.0}}, "sd": {"va": {"mae": 0.25}},
                                            "seeds": [0, 1], "per_seed": {}}},
            "baselines": {"train_mean": {"test": {"va": {"mae": float("nan")}}}}}
    assert report.metric_table(card) == [("va", "mae", "1.0000 ± 0.2500", {"train_mean": "n/a"})]
    assert report.metric_table({"metrics": {}}) == []


def test_gradcam_writes_the_overlays_explain_makes(entry, photos, capsys, tmp_path):
    images = [str(photos / "a.jpg"), str(photos / "burst" / "g.png")]
    status, out, _ = run(capsys, "gradcam", "tiny_rank", *images, "--out", str(tmp_path / "cams"), "--json")
    assert status == 0
    rows = json.loads(out)
    assert sorted(p.name for p in (tmp_path / "cams").iterdir()) == [
        "a_emotion.png", "a_va.png", "g_emotion.png", "g_va.png"]
    rgb = [np.asarray(Image.open(path).convert("RGB")) for path in images]
    expected = explain.overlays(entry, rgb)
    for row in rows:
        written = np.asarray(Image.open(row["png"]))
        assert written.shape == (32, 32, 3)
        np.testing.assert_array_equal(written, expected[row["task"]]["overlays"][images.index(row["image"])])
    assert {row["layer"] for row in rows} == {"interaction_1[0]", "interaction_1[1]"}


def test_gradcam_one_task_output_and_bad_images(entry, photos, capsys, tmp_path):
    status, out, err = run(capsys, "gradcam", "tiny_rank", str(photos / "b.png"), str(photos / "notes.txt"),
                           "--out", str(tmp_path), "--task", "va", "--output", "arousal")
    assert status == 1 and "notes.txt: ERROR" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b_va.png"]
    assert "output arousal" in out
    status, _, err = run(capsys, "gradcam", "tiny_rank", str(photos / "a.jpg"), "--out", str(tmp_path),
                         "--output", "arousal")
    assert status == 2 and "--task" in err
    status, _, err = run(capsys, "gradcam", "tiny_rank", str(photos / "a.jpg"), str(photos / "burst" / "f.jpg"),
                         str(photos / "d.jpg"), str(photos / "a.jpg"), "--out", str(tmp_path))
    assert status == 2 and "a_<task>.png" in err


def test_predict_text_shows_how_sure_the_label_is(entry, photos, capsys):
    """The label's probability sits beside it, so a label that disagrees with the polarity reads as what it is:
    a plurality, while the polarity is the side of the circle the whole distribution points to."""
    status, out, _ = run(capsys, "predict", "tiny_rank", str(photos / "a.jpg"), str(photos / "b.png"))
    assert status == 0
    expected = inference.predict(entry, [str(photos / "a.jpg"), str(photos / "b.png")])
    for i, line in enumerate(out.strip().splitlines()):
        fields = dict(part.split("=", 1) for part in line.split(": ", 1)[1].split())
        assert fields["emotion_label"] == expected["emotion_label"][i]
        assert float(fields["emotion_label_p"]) == pytest.approx(expected["emotion"][i].max(), abs=1e-3)


def test_predict_progress_goes_to_stderr_and_stdout_holds_only_rows(entry, photos, capsys):
    """Eight images or more show Keras' bar, which prints to stdout: the CLI sends it to stderr."""
    images = [str(photos / "a.jpg")] * 5 + [str(photos / "b.png")] * 4
    status, out, err = run(capsys, "predict", "tiny_rank", *images, "--batch-size", "4")
    assert status == 0
    assert [line.split(": ", 1)[0] for line in out.strip().splitlines()] == images
    assert "9/9" in err and "━" not in out and "\x1b" not in out


def _chromium():
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.skip("chromium is not installed (.ci/run installs Debian's package when it runs as root or "
                    "with sudo)")
    return found


PROBE = """<script>
window.addEventListener("error", event => { document.documentElement.setAttribute("data-load-error",
  (event.target && event.target.alt) || String(event.message)); }, true);
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  images.forEach(image => image.setAttribute("data-decoded", String(image.complete && image.naturalWidth > 0)));
  document.body.setAttribute("data-images", String(images.length));
  console.log("probe: " + images.length + " images");
});
</script>"""


@pytest.mark.slow
def test_report_opens_in_headless_chromium(written_report, tmp_path):
    """Every <img> is in the DOM and decodes (naturalWidth > 0, marked by a probe script added to a copy), no
    console message but the probe's own (which proves console capture works), and a screenshot is saved."""
    browser = _chromium()
    path, _ = written_report
    probed = tmp_path / "probed.html"
    probed.write_text(path.read_text().replace("<head>", "<head>" + PROBE, 1))
    common = [browser, "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars",
              "--enable-logging=stderr", "--v=0"]
    env = {**os.environ, "HOME": str(tmp_path)}  # chromium writes its profile there
    dom = subprocess.run([*common, "--dump-dom", probed.as_uri()], capture_output=True, text=True, timeout=120,
                         env=env)
    assert dom.returncode == 0, dom.stderr[-2000:]
    expected = 2 * len(IMAGES) + 4 * 3
    assert f'data-images="{expected}"' in dom.stdout
    assert dom.stdout.count('data-decoded="true"') == expected and 'data-decoded="false"' not in dom.stdout
    assert 'data-load-error="' not in dom.stdout  # the attribute, not the probe's own text
    console = [line for line in dom.stderr.splitlines() if ":CONSOLE" in line]
    assert len(console) == 1 and f'"probe: {expected} images"' in console[0], console
    screenshot = tmp_path / "report.png"
    shot = subprocess.run([*common, f"--screenshot={screenshot}", "--window-size=1200,1600", path.as_uri()],
                          capture_output=True, text=True, timeout=120, env=env)
    assert shot.returncode == 0, shot.stderr[-2000:]
    with Image.open(screenshot) as picture:
        assert picture.size == (1200, 1600)
        assert len(set(picture.convert("L").getdata())) > 50  # not a blank page
    print(f"report screenshot: {screenshot}")
