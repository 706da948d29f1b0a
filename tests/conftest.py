"""Shared fixtures. Tests run on CPU with small inputs; real data lives in ../shared/data."""
import os
import pathlib

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture
def shared_data():
    """../shared/data, or a skip that says why (it is absent outside this project's machines)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def emotion6_dummy_data_dir(tmp_path_factory):
    """A data_dir holding the emotion6 builder's dummy data (41/6/11 tiny JPEGs) built once per session."""
    import sys

    import tensorflow_datasets as tfds

    sys.path.insert(0, str(REPO / "tfds_builders"))
    try:
        from emotion6 import emotion6_dataset_builder
    finally:
        sys.path.remove(str(REPO / "tfds_builders"))
    data_dir = tmp_path_factory.mktemp("tfds_data")
    emotion6_dataset_builder.Builder(data_dir=str(data_dir)).download_and_prepare(
        download_config=tfds.download.DownloadConfig(
            manual_dir=str(REPO / "tfds_builders" / "emotion6" / "dummy_data")))
    return data_dir
