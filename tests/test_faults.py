"""Faults in training and in the zoo's files: torn checkpoints, a full or read-only disk, a second run on the same
run dir, a published entry in the way, and user weights, cards and downloads that cannot be trusted.

The kill -9 mid-epoch case is ``test_training.test_sigkill_mid_epoch_resumes_from_last_finished_epoch`` (the same
callbacks). A real full disk is a small tmpfs, mounted when this machine allows it (root); the same faults are also
injected by a monkeypatched write raising ENOSPC, which runs everywhere.
"""
import contextlib
import errno
import hashlib
import http.server
import json
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time
import warnings

import keras
import numpy as np
import pytest
import yaml
from test_experiments import RECIPE
from test_zoo import http_root, publish, tiny_weights, zoo_dirs  # noqa: F401 (fixtures)

import affect_zoo
from affect_zoo import artifacts, cli, experiments, files, recipes, registry, zoo
from affect_zoo.tasks import Task
from affect_zoo.training import MultiTaskModel, standard_callbacks

TASKS = [Task("emotion", "distribution", 7), Task("va", "regression", 2, target_range=(1, 9))]


def tiny_model(width=6):
    keras.utils.set_random_seed(3)
    inputs = keras.Input((5,))
    h = keras.layers.Dense(width, activation="tanh", name="shared_dense")(inputs)
    model = MultiTaskModel(keras.Model(inputs, {t.name: t.head(h) for t in TASKS}), tasks=TASKS)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    return model


def tiny_data(n=16):
    rng = np.random.default_rng(0)
    return (rng.normal(size=(n, 5)).astype("float32"),
            {"emotion": rng.dirichlet(np.ones(7), n).astype("float32"),
             "va": rng.uniform(1, 9, (n, 2)).astype("float32")})


class Epochs(keras.callbacks.Callback):
    """Records the epochs a fit runs and the weights it starts its first epoch with."""

    def __init__(self):
        super().__init__()
        self.epochs, self.start = [], None

    def on_epoch_begin(self, epoch, logs=None):
        if self.start is None:
            self.start = [w.numpy().copy() for w in self.model.network.weights]
        self.epochs.append(epoch)


def fit(model, run_dir, epochs):
    recorder = Epochs()
    x, y = tiny_data()
    model.fit(x, y, epochs=epochs, batch_size=8, verbose=0,
              callbacks=[*standard_callbacks(str(run_dir), tensorboard=False), recorder])
    return recorder


def tear(path):
    """Keep the first half of a file, as a kill or a full disk in the middle of a write leaves it."""
    data = pathlib.Path(path).read_bytes()
    pathlib.Path(path).write_bytes(data[:len(data) // 2])


def leftovers(run_dir):
    return sorted(p.name for p in pathlib.Path(run_dir).rglob(".tmp-*"))


# --- torn checkpoints -------------------------------------------------------------------------------------------

def test_torn_resume_state_falls_back_to_the_newest_checkpoint_that_opens(tmp_path):
    fit(tiny_model(), tmp_path, 3)
    tear(tmp_path / "backup" / "latest.weights.h5")
    tear(tmp_path / "checkpoints" / "epoch_003.weights.h5")
    expected = tiny_model()
    expected.load_weights(str(tmp_path / "checkpoints" / "epoch_002.weights.h5"))
    with pytest.warns(UserWarning) as caught:
        recorder = fit(tiny_model(), tmp_path, 5)
    messages = [str(w.message) for w in caught]
    assert any("latest.weights.h5" in m and "cannot be read" in m for m in messages), messages
    assert any("epoch_003.weights.h5" in m and "skipped" in m for m in messages), messages
    assert any("resuming from" in m and "epoch_002.weights.h5" in m for m in messages), messages
    assert recorder.epochs == [2, 3, 4]  # 2 epochs done according to epoch_002
    for got, want in zip(recorder.start, expected.network.weights):
        np.testing.assert_array_equal(got, want.numpy())
    with warnings.catch_warnings(record=True) as again:
        warnings.simplefilter("always")
        assert fit(tiny_model(), tmp_path, 6).epochs == [5]  # the backup written since then opens
    assert not [w for w in again if "cannot be read" in str(w.message)]


def test_torn_resume_metadata_is_named_and_falls_back_too(tmp_path):
    fit(tiny_model(), tmp_path, 2)
    tear(tmp_path / "backup" / "training_metadata.json")
    with pytest.warns(UserWarning, match="training_metadata.json: the resume state cannot be read"):
        assert fit(tiny_model(), tmp_path, 3).epochs == [2]


def test_no_readable_checkpoint_refuses_instead_of_training_from_scratch(tmp_path):
    fit(tiny_model(), tmp_path, 1)
    tear(tmp_path / "backup" / "latest.weights.h5")
    tear(tmp_path / "checkpoints" / "epoch_001.weights.h5")
    with pytest.warns(UserWarning), pytest.raises(RuntimeError, match="no per-epoch checkpoint .* opens"):
        fit(tiny_model(), tmp_path, 2)


# --- full disk while checkpointing ------------------------------------------------------------------------------

def _enospc_after_half(self, filepath, *args, **kwargs):
    """A ``save_weights`` that gets half a file out before the disk fills up."""
    pathlib.Path(filepath).write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    raise OSError(errno.ENOSPC, "No space left on device")


def test_full_disk_during_a_checkpoint_is_one_error_and_keeps_the_last_state(tmp_path, monkeypatch):
    fit(tiny_model(), tmp_path, 2)
    latest = tmp_path / "backup" / "latest.weights.h5"
    before = latest.read_bytes()
    with monkeypatch.context() as patch:
        patch.setattr(keras.Model, "save_weights", _enospc_after_half)
        with pytest.raises(files.DiskError, match=f"could not write {latest}: no space left"):
            fit(tiny_model(), tmp_path, 4)
    assert latest.read_bytes() == before and not leftovers(tmp_path)
    assert json.loads((tmp_path / "backup" / "training_metadata.json").read_text())["epoch"] == 2
    assert fit(tiny_model(), tmp_path, 4).epochs == [2, 3]  # once there is room, the run goes on


def test_too_little_free_space_is_refused_before_writing(tmp_path, monkeypatch):
    fit(tiny_model(), tmp_path, 1)
    before = (tmp_path / "backup" / "latest.weights.h5").read_bytes()
    real = os.statvfs

    def nearly_full(path):
        stat = real(path)
        return os.statvfs_result((stat.f_bsize, stat.f_frsize, stat.f_blocks, 0, 1, *stat[5:]))

    monkeypatch.setattr(os, "statvfs", nearly_full)
    with pytest.raises(files.DiskError, match=f"not enough space in {tmp_path}: about .* MB needed, 0.0 MB free"):
        fit(tiny_model(), tmp_path, 3)  # refused as the fit starts, before an epoch is spent
    assert (tmp_path / "backup" / "latest.weights.h5").read_bytes() == before and not leftovers(tmp_path)


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 2 MB tmpfs of this test's own (root only); skipped, saying why, where it cannot be mounted."""

    def mount(*options):
        point = tmp_path / f"tmpfs{len(mounted)}"
        point.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(("size=2m", *options)), "tmpfs", str(point)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({(done.stderr or done.stdout).strip()}); the monkeypatched "
                        f"tests cover the same faults")
        mounted.append(point)
        return point

    mounted = []
    try:
        if os.geteuid() != 0:
            pytest.skip("mounting a tmpfs needs root; the monkeypatched tests cover the same faults")
        yield mount
    finally:
        for point in mounted:
            subprocess.run(["umount", str(point)], capture_output=True)


def test_a_real_full_disk_stops_the_run_with_one_error_and_an_intact_state(small_tmpfs):
    """~600 KB per weights file on a 2 MB file system: epoch 1's backup and checkpoint fit, epoch 2's do not, and
    the free-space check stops the run before HDF5 writes (HDF5 hitting ENOSPC itself: the next test)."""
    run_dir = small_tmpfs() / "run"
    with pytest.raises(files.DiskError, match=r"not enough space in .*backup"):
        fit(tiny_model(width=10000), run_dir, 3)
    assert not leftovers(run_dir)
    tiny_model(width=10000).load_weights(str(run_dir / "backup" / "latest.weights.h5"))  # epoch 1's, whole


NO_SPACE_CHECK = ("import sys; from affect_zoo import files; files.check_free_space = lambda *a: None; "
                  "from affect_zoo.cli import main; sys.argv[0] = 'affect-zoo'; main()")


@pytest.mark.slow
def test_cli_train_when_hdf5_itself_hits_enospc_exits_1_not_139(small_tmpfs, tmp_path, emotion6_dummy_data_dir):
    """With the free-space check off, HDF5 runs into ENOSPC writing the first backup: one clean error, no torn
    file, and exit 1. (A process whose HDF5 has hit ENOSPC crashes at interpreter exit; the command therefore
    ends with os._exit, and this test runs in a child so that the crash could not hit pytest.)"""
    recipe_file = tmp_path / "tiny_e6.yaml"
    recipe_file.write_text(yaml.safe_dump(RECIPE))
    run_dir = small_tmpfs() / "run"
    done = subprocess.run([sys.executable, "-c", NO_SPACE_CHECK, "train", str(recipe_file), "--run-dir",
                           str(run_dir), "--output-dir", str(tmp_path / "out"), "--data-dir",
                           str(emotion6_dummy_data_dir), "--epochs", "1"], capture_output=True, text=True,
                          timeout=600)
    lines = [line for line in done.stderr.splitlines() if line.startswith("affect-zoo: error:")]
    assert done.returncode == 1 and len(lines) == 1, done.stderr[-3000:]
    assert f"could not write {run_dir}/" in lines[0] and "no space left" in lines[0]
    assert not leftovers(run_dir) and not (run_dir / "backup" / "latest.weights.h5").exists()


@pytest.mark.slow
@pytest.mark.parametrize("full", ["run_dir", "output_dir"])
def test_cli_train_on_a_real_full_disk_is_one_error_before_training(small_tmpfs, tmp_path, emotion6_dummy_data_dir,
                                                                    full):
    """Issue #12 saw exit 139 here. The tiny entry's weights (~2 MB, ~6 MB of checkpoints with Adam's slots) do
    not fit the 2 MB tmpfs: the CLI exits 1 with one line naming it, before an epoch is trained."""
    recipe_file = tmp_path / "tiny_e6.yaml"
    recipe_file.write_text(yaml.safe_dump(RECIPE))
    dirs = {"run_dir": tmp_path / "run", "output_dir": tmp_path / "out"}
    dirs[full] = small_tmpfs() / full
    done = subprocess.run([sys.executable, "-m", "affect_zoo.cli", "train", str(recipe_file), "--run-dir",
                           str(dirs["run_dir"]), "--output-dir", str(dirs["output_dir"]), "--data-dir",
                           str(emotion6_dummy_data_dir), "--epochs", "1"], capture_output=True, text=True,
                          timeout=600)
    lines = [line for line in done.stderr.splitlines() if line.startswith("affect-zoo: error:")]
    assert done.returncode == 1 and len(lines) == 1, done.stderr[-3000:]
    assert f"not enough space in {dirs[full]}" in lines[0] and "Traceback" not in done.stderr
    assert not (dirs["run_dir"] / "checkpoints").exists() and not (dirs["output_dir"] / "tiny_e6").exists()


# --- read-only run and output directories, a locked run dir, a published entry -------------------------------

@pytest.fixture
def tiny_recipe(tmp_path):
    """test_experiments' tiny Emotion6 recipe as recipes/tiny_e6.yaml of an isolated zoo."""
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "tiny_e6.yaml").write_text(yaml.safe_dump(RECIPE))
    with registry.using(recipes=tmp_path / "recipes", saved_models=tmp_path / "saved_models"):
        yield tmp_path / "recipes" / "tiny_e6.yaml"


def read_only_open(monkeypatch, below):
    """Make every write below ``below`` fail as on a read-only file system (root ignores chmod)."""
    real = os.open

    def refusing(path, flags, *args, **kwargs):
        if str(path).startswith(str(below)) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing)


@pytest.mark.parametrize("which", ["run_dir", "output_dir"])
def test_read_only_directories_are_refused_before_training(tiny_recipe, tmp_path, monkeypatch, capsys, which):
    dirs = {"run_dir": tmp_path / "run", "output_dir": tmp_path / "out"}
    for folder in dirs.values():
        folder.mkdir()
    read_only_open(monkeypatch, dirs[which])
    started = time.monotonic()
    with pytest.raises(SystemExit) as stopped:
        cli.main(["train", str(tiny_recipe), "--run-dir", str(dirs["run_dir"]), "--output-dir",
                  str(dirs["output_dir"]), "--data-dir", str(tmp_path / "no_data")])
    err = capsys.readouterr().err
    assert stopped.value.code == 1 and err.count("\n") == 1, err
    assert "could not " in err and str(dirs[which]) in err and "read-only file system" in err
    assert time.monotonic() - started < 10  # before any data is read (there is none) or anything is built


def test_a_real_read_only_run_dir_is_refused_before_training(small_tmpfs, tiny_recipe, tmp_path):
    read_only = small_tmpfs("ro")
    with pytest.raises(files.DiskError, match=f"could not create the lock file {read_only}/run.lock: read-only"):
        experiments.train("tiny_e6", run_dir=read_only, data_dir=str(tmp_path), output_dir=tmp_path, verbose=0)


HOLD_LOCK = ("import sys, time; from affect_zoo import files; lock = files.run_lock(sys.argv[1]); lock.__enter__(); "
             "print('locked', flush=True); time.sleep(600)")


def test_a_second_run_on_a_locked_run_dir_is_refused_at_once_naming_the_holder(tiny_recipe, tmp_path, capsys):
    run_dir = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(run_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        started = time.monotonic()
        with pytest.raises(files.RunDirBusy, match=rf"{run_dir} is in use by another run \(pid {holder.pid}\)"):
            experiments.train("tiny_e6", run_dir=run_dir, data_dir=str(tmp_path), output_dir=tmp_path, verbose=0)
        assert time.monotonic() - started < 5
        with pytest.raises(SystemExit) as stopped:
            cli.main(["train", "tiny_e6", "--run-dir", str(run_dir)])
        assert stopped.value.code == 1 and f"(pid {holder.pid})" in capsys.readouterr().err
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    with files.run_lock(run_dir) as lock:  # the kernel released the killed holder's lock
        assert lock.read_text().strip() == str(os.getpid())


@pytest.mark.slow
def test_training_never_replaces_a_published_entry_without_the_flag(tiny_recipe, tmp_path, capsys,
                                                                    emotion6_dummy_data_dir):
    out = tmp_path / "elsewhere"
    entry = out / "tiny_e6"
    entry.mkdir(parents=True)
    published = {"card.json": b'{"name": "tiny_e6"}\n', "tiny_e6.weights.h5": b"shipped", "SHA256SUMS": b"x\n"}
    for name, data in published.items():
        (entry / name).write_bytes(data)
    argv = ["train", str(tiny_recipe), "--run-dir", str(tmp_path / "run"), "--output-dir", str(out),
            "--data-dir", str(emotion6_dummy_data_dir), "--epochs", "1"]
    with pytest.raises(SystemExit) as stopped:
        cli.main(argv)
    assert stopped.value.code == 2 and "--overwrite-entry" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in entry.iterdir()} == published
    assert not (tmp_path / "run" / "backup").exists()  # refused before training

    cli.main(argv + ["--overwrite-entry"])
    assert f"wrote {entry}: tiny_e6.weights.h5" in capsys.readouterr().out
    card = json.loads((entry / "card.json").read_text())
    assert card["weights"]["sha256"] == zoo.sha256(entry / "tiny_e6.weights.h5")
    assert sorted(p.name for p in out.iterdir()) == ["tiny_e6"]  # no staging or replaced copy left


def test_the_shipped_entries_are_protected(tmp_path):
    shipped = [n for n in affect_zoo.list_models(pretrained=True) if (zoo.SAVED_MODELS_DIR / n).is_dir()]
    assert shipped
    with pytest.raises(FileExistsError, match="--overwrite-entry"):
        experiments.train(shipped[0], run_dir=tmp_path / "run", data_dir=str(tmp_path), verbose=0)


# --- full disk while writing an entry ---------------------------------------------------------------------------

def write_tiny_entry(folder, overwrite=False):
    recipe = recipes.resolve(RECIPE)
    model = zoo.model_from_recipe(recipe)
    return artifacts.write_entry(model, recipe, folder, {}, {}, 0.0, "test", None, overwrite=overwrite)


def test_full_disk_while_writing_an_entry_leaves_no_half_entry(tmp_path, monkeypatch):
    write_tiny_entry(tmp_path)
    old = {p.name: p.read_bytes() for p in (tmp_path / "tiny_e6").iterdir()}
    with monkeypatch.context() as patch:
        patch.setattr(keras.Model, "save_weights", _enospc_after_half)
        with pytest.raises(files.DiskError, match=f"could not write {tmp_path / 'tiny_e6'}: no space left"):
            write_tiny_entry(tmp_path, overwrite=True)
        with pytest.raises(files.DiskError, match="no space left"):
            write_tiny_entry(tmp_path / "fresh")
    assert {p.name: p.read_bytes() for p in (tmp_path / "tiny_e6").iterdir()} == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fresh", "tiny_e6"]
    assert not any((tmp_path / "fresh").iterdir())
    card = write_tiny_entry(tmp_path, overwrite=True)
    assert card["weights"]["sha256"] == zoo.sha256(tmp_path / "tiny_e6" / "tiny_e6.weights.h5")


def test_an_entry_folder_holding_other_files_or_published_meanwhile_is_not_replaced(tmp_path, monkeypatch):
    theirs = tmp_path / "tiny_e6"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=f"{theirs} already holds files but no card.json: pass --overwrite"):
        write_tiny_entry(tmp_path)
    staged = tmp_path / ".partial-x"
    staged.mkdir()
    (staged / "card.json").write_text("{}")
    monkeypatch.setattr(pathlib.Path, "exists", lambda self: False)  # it appears after the check
    with pytest.raises(FileExistsError, match=f"{theirs} appeared while this one was being written"):
        files.publish_dir(staged, theirs)
    assert [p.name for p in theirs.iterdir()] == ["notes.txt"]


# --- user weights, cards, downloads -----------------------------------------------------------------------------

@pytest.mark.slow
def test_user_weights_are_verified_against_a_sha256_beside_them_or_flagged(zoo_dirs, tmp_path):
    path, _ = tiny_weights(str(zoo_dirs.parent))
    with pytest.warns(zoo.UnverifiedWeightsWarning, match=f"{path}: no tiny.weights.h5.sha256 beside it"):
        affect_zoo.load("tiny_entry", weights=path)
    sidecar = pathlib.Path(path + ".sha256")
    try:
        sidecar.write_text(f"{zoo.sha256(path).upper()}  tiny.weights.h5\n")  # sha256sum's format, upper case
        with warnings.catch_warnings():
            warnings.simplefilter("error", zoo.UnverifiedWeightsWarning)
            affect_zoo.load("tiny_entry", weights=path)
        sidecar.write_text("0" * 64 + "\n")
        with pytest.raises(zoo.WeightsError, match=f"{path}: sha256 does not match {sidecar}"):
            affect_zoo.load("tiny_entry", weights=path)
    finally:
        sidecar.unlink()


def test_upper_case_sha256_in_a_card_is_accepted(zoo_dirs):
    path, _ = tiny_weights(str(zoo_dirs.parent))
    publish(zoo_dirs, path, sha=zoo.sha256(path).upper())
    affect_zoo.load("tiny_entry")
    publish(zoo_dirs, path, sha="not-a-hash")
    with pytest.raises(zoo.WeightsError, match="'not-a-hash' is not a sha256"):
        affect_zoo.load("tiny_entry")


@pytest.mark.parametrize("text, message", [("{not json", "not a valid model card"),
                                           ("[1, 2]", "a model card is a JSON object, got list"),
                                           ('{"name": "tiny_entry", "colour": 1}', "unknown fields")])
def test_an_invalid_card_is_an_error_naming_the_file(zoo_dirs, text, message):
    card = zoo_dirs / "saved_models" / "tiny_entry" / "card.json"
    card.parent.mkdir()
    card.write_text(text)
    with pytest.raises(zoo.CardError, match=f"{card}: .*{message}"):
        affect_zoo.model_card("tiny_entry")


class _Dripping(http.server.BaseHTTPRequestHandler):
    """Promises 1 MB and sends one byte every 0.2 s until the client goes away, or for 8 s at most (then it
    hangs up, so a client without a deadline fails this test in seconds instead of hanging it)."""

    seconds = 8.0

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(1 << 20))
        self.end_headers()
        stop = time.monotonic() + self.seconds
        with contextlib.suppress(OSError):
            while time.monotonic() < stop:
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.2)

    def log_message(self, *args):
        pass


@pytest.fixture
def dripping_url():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Dripping)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/w.h5"
    server.shutdown()
    server.server_close()


def test_the_download_timeout_is_a_deadline_for_the_whole_transfer(tmp_path, dripping_url):
    target = tmp_path / "cache" / "w.weights.h5"
    started = time.monotonic()
    with pytest.raises(zoo.WeightsError, match=r"did not finish within 1\.5 s: not kept"):
        zoo.download(dripping_url, target, "0" * 64, timeout=1.5)
    assert time.monotonic() - started < 4  # every read returns within 0.2 s: only the deadline stops it
    assert sorted(os.listdir(target.parent)) == []


KILLED_DOWNLOAD = ("import sys; from affect_zoo import zoo; "
                   "zoo.download(sys.argv[1], sys.argv[2], '0' * 64, timeout=600)")


@pytest.mark.slow
def test_a_killed_download_leaves_no_part_file_behind(tmp_path, dripping_url, http_root, monkeypatch):  # noqa: F811
    monkeypatch.setattr(_Dripping, "seconds", 120.0)  # still dripping when the child is killed
    target = tmp_path / "cache" / "w.weights.h5"
    child = subprocess.Popen([sys.executable, "-c", KILLED_DOWNLOAD, dripping_url, str(target)])
    try:
        for _ in range(600):
            if list(target.parent.glob("*.part")) if target.parent.is_dir() else []:
                break
            time.sleep(0.1)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    assert len(list(target.parent.glob("*.part"))) == 1  # what kill -9 leaves: no cleanup ran
    root, base = http_root
    (root / "w.h5").write_bytes(b"weights")
    zoo.download(f"{base}/w.h5", target, hashlib.sha256(b"weights").hexdigest().upper())
    assert sorted(os.listdir(target.parent)) == ["w.weights.h5"]  # the dead process's .part was removed
