"""Fixtures for the builder tests: real data in <repo>/../shared/data, builds into temporary dirs, read-back."""
import os
import pathlib
import shutil

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def real_data():
    """Returns a function name → <repo>/../shared/data/<name>, skipping (with the path) when it is absent."""

    def locate(name):
        path = SHARED_DATA / name
        if not path.is_dir():
            pytest.skip(f"real data not found at {path} (it lives beside the repository, never in it)")
        return path

    return locate


@pytest.fixture(scope="session")
def build(tmp_path_factory):
    """Returns build(builder_cls, manual_dir, config=None) → a prepared builder in a fresh data dir."""

    def _build(builder_cls, manual_dir, config=None):
        data_dir = tmp_path_factory.mktemp(f"{builder_cls.name}_data")
        builder = builder_cls(data_dir=str(data_dir), config=config)
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
        return builder

    return _build


@pytest.fixture
def dummy_copy(tmp_path):
    """Returns copy(src_dir) → a writable copy of a dummy_data dir, for tests that break it."""

    def _copy(src):
        dst = tmp_path / "manual"
        shutil.copytree(src, dst)
        return dst

    return _copy


def read_split(builder, split, skip_image=True):
    """All examples of a split as numpy dicts; images left encoded unless asked for (decoding is the slow part)."""
    decoders = {"image": tfds.decode.SkipDecoding()} if skip_image else None
    return list(tfds.as_numpy(builder.as_dataset(split=split, decoders=decoders)))


@pytest.fixture(scope="session")
def examples():
    """Returns read_split (see above) as a fixture, since builder folders cannot import this conftest."""
    return read_split
