"""Shared fixtures. Tests run on CPU with small inputs; real data lives in ../shared/data."""
import contextlib
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


def _built(tmp_path_factory, name, manual_dir):
    """A fresh data_dir holding tfds_builders/<name> prepared from ``manual_dir``."""
    import importlib
    import sys

    import tensorflow_datasets as tfds

    sys.path.insert(0, str(REPO / "tfds_builders"))
    try:
        module = importlib.import_module(f"{name}.{name}_dataset_builder")
    finally:
        sys.path.remove(str(REPO / "tfds_builders"))
    data_dir = tmp_path_factory.mktemp(f"{name}_data")
    module.Builder(data_dir=str(data_dir)).download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
    return data_dir


def _dummy_data_dir(tmp_path_factory, name):
    """A data_dir holding tfds_builders/<name> built from its dummy_data/."""
    return _built(tmp_path_factory, name, REPO / "tfds_builders" / name / "dummy_data")


@pytest.fixture(scope="session")
def emotion6_dummy_data_dir(tmp_path_factory):
    """A data_dir holding the emotion6 builder's dummy data (41/6/11 tiny JPEGs) built once per session."""
    return _dummy_data_dir(tmp_path_factory, "emotion6")


@pytest.fixture(scope="session")
def voc2007_dummy_data_dir(tmp_path_factory):
    """A data_dir holding the voc2007 builder's dummy data (3/4/3 tiny JPEGs, with difficult labels)."""
    return _dummy_data_dir(tmp_path_factory, "voc2007")


@pytest.fixture(scope="session")
def affect_multimodal_dummy_data_dir(tmp_path_factory):
    """A data_dir holding the affect_multimodal builder's dummy data (16/3/3 posts, modalities missing)."""
    return _dummy_data_dir(tmp_path_factory, "affect_multimodal")


@pytest.fixture(scope="session")
def emotion6_real_data_dir(tmp_path_factory):
    """A data_dir holding the emotion6 builder run on the real release in ../shared/data/emotion6 (~15 s)."""
    if not (SHARED_DATA / "emotion6").is_dir():
        pytest.skip(f"real Emotion6 not found at {SHARED_DATA / 'emotion6'}")
    return _built(tmp_path_factory, "emotion6", SHARED_DATA / "emotion6")


@pytest.fixture(scope="session")
def scratch_zoo():
    """``with scratch_zoo(tmp_path_factory, recipe) as root``: a zoo whose recipes/ holds only ``recipe`` and
    whose saved_models/ starts empty (no code-registered entries), for tests that train an entry and load it back. A
    fixture, not an import: ``conftest`` names two modules in this repository (tests/ and tfds_builders/)."""
    return _scratch_zoo


@contextlib.contextmanager
def _scratch_zoo(tmp_path_factory, recipe):
    import yaml

    from affect_zoo import registry

    root = tmp_path_factory.mktemp(recipe["name"])
    (root / "recipes").mkdir()
    (root / "recipes" / f"{recipe['name']}.yaml").write_text(yaml.safe_dump(recipe))
    with registry.using(recipes=root / "recipes", saved_models=root / "saved_models"):
        yield root
