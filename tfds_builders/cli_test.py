"""Every builder folder works with the real `tfds build` command and reads back with builder_from_directory."""
import os
import pathlib
import shutil
import subprocess
import sys

import pytest
import tensorflow_datasets as tfds

HERE = pathlib.Path(__file__).resolve().parent
CASES = [("emotion6", None), ("fi", None), ("flickr_ldl", None), ("twitter_ldl", None), ("voc2007", None),
         ("mirflickr25k", "labels38"), ("uae", None), ("affect_multimodal", None)]


@pytest.mark.slow
@pytest.mark.parametrize("name, config", CASES)
def test_tfds_cli_builds_the_folder(name, config, tmp_path):
    tfds_cli = shutil.which("tfds", path=os.path.dirname(sys.executable)) or shutil.which("tfds")
    assert tfds_cli, "the tfds command is not installed (pip install -e '.[dev]')"
    command = [tfds_cli, "build", str(HERE / name), f"--manual_dir={HERE / name / 'dummy_data'}",
               f"--data_dir={tmp_path}"] + ([f"--config={config}"] if config else [])
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    version_dirs = [p.parent for p in tmp_path.glob(f"{name}/**/dataset_info.json")]
    assert len(version_dirs) == 1, version_dirs
    builder = tfds.builder_from_directory(str(version_dirs[0]))
    assert sum(split.num_examples for split in builder.info.splits.values()) > 0
    assert builder.info.metadata["skipped_images"] >= 1  # the dummy data holds a truncated and an empty image
    first = next(iter(builder.as_dataset(split=list(builder.info.splits)[0]).take(1)))
    assert first["image"].shape[-1] == 3
