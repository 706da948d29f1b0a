"""Code shared by the TFDS builders in `tfds_builders/` (build time only: not part of the affect_zoo package).

`tfds build tfds_builders/<name>` imports each builder as ``<name>.<name>_dataset_builder`` with `tfds_builders/`
on ``sys.path`` (pytest does the same, having no ``__init__.py`` there), so this file is the top-level module
``tfds_common`` for them. It holds what two builders share: manual-dir checks with layout-naming errors, image
loading that skips and records unreadable files, distribution checks, deterministic seeded splits, and the
Flickr_LDL/Twitter_LDL base builder.
"""
from __future__ import annotations

import logging
import pathlib
import shutil
from typing import Iterable, Mapping, Sequence

import h5py
import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from affect_zoo.emotion import MIKELS8
from affect_zoo.imageio import ImageDecodeError, encode_jpeg, to_jpeg_bytes

logger = logging.getLogger(__name__)

MIKELS8_NAMES = MIKELS8.names
DIST_TOLERANCE = 1e-3


class DataLayoutError(ValueError):
    """The manual data is present but inconsistent (bad label, id without image, split conflict, ...)."""


def require(manual_dir: epath.PathLike, relpaths: Iterable[str], layout: str) -> epath.Path:
    """Returns the manual dir after checking every `relpaths` entry exists under it.

    The error lists every missing path and the expected layout, since a user usually misplaces a whole folder.
    """
    root = epath.Path(manual_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"manual_dir {root} does not exist. Expected layout:\n{layout}")
    missing = [p for p in relpaths if not (root / p).exists()]
    if missing:
        raise FileNotFoundError(
            f"missing in manual_dir {root}: {', '.join(missing)}. Expected layout:\n{layout}"
        )
    return root


def new_metadata(**fields) -> tfds.core.MetadataDict:
    """Dataset metadata with the skipped-image record every builder keeps (saved as metadata.json)."""
    return tfds.core.MetadataDict(skipped_images=0, skipped_files=[], **fields)


def reset_skipped(metadata: Mapping) -> None:
    """Clears the skipped-image record so a rebuild does not accumulate entries."""
    metadata["skipped_images"] = 0
    metadata["skipped_files"] = []


def load_jpeg(path: epath.PathLike, name: str, metadata: Mapping) -> bytes | None:
    """JPEG bytes of an image for storage, or None for a corrupt/unreadable one.

    A bad file is logged with `logging.warning` and recorded in `metadata` (`skipped_images` count and
    `skipped_files` entries {file, reason}) so the build completes and the loss stays visible in the dataset.
    A missing file is not skipped: the caller checks existence first, because a label without an image is a
    broken download, not a bad image.
    """
    try:
        return to_jpeg_bytes(epath.Path(path).read_bytes(), name=name)
    except (ImageDecodeError, OSError) as e:
        reason = e.reason if isinstance(e, ImageDecodeError) else str(e)
        logger.warning("skipping unreadable image %s: %s", name, reason)
        metadata["skipped_images"] += 1
        metadata["skipped_files"].append({"file": name, "reason": reason})
        return None


def missing_images(root: epath.Path, relpaths: Iterable[str]) -> list[str]:
    """The entries of `relpaths` that have no file under `root`."""
    return [p for p in relpaths if not (root / p).is_file()]


def raise_if_missing_images(missing: Sequence[str], what: str, layout: str, shown: int = 20) -> None:
    """Raises naming the ids (first `shown`) whose image file does not exist."""
    if missing:
        head = ", ".join(missing[:shown]) + (f" ... ({len(missing)} in total)" if len(missing) > shown else "")
        raise DataLayoutError(f"{what} with no image file: {head}. Expected layout:\n{layout}")


def normalized_distribution(values: Sequence[float], where: str, tolerance: float = DIST_TOLERANCE) -> np.ndarray:
    """float32 distribution renormalised to sum exactly 1; raises naming `where` if it is negative or its
    sum is off by more than `tolerance` (a shifted column or a wrong file, not rounding)."""
    dist = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(dist)) or np.any(dist < 0):
        raise DataLayoutError(f"{where}: distribution {dist.tolist()} has negative or non-finite entries")
    total = dist.sum()
    if abs(total - 1.0) > tolerance:
        raise DataLayoutError(f"{where}: distribution {dist.tolist()} sums to {total:.6f}, not 1 (±{tolerance})")
    return (dist / total).astype(np.float32)


def _cut(items: Sequence, fractions: Sequence[float]) -> list[list]:
    """Cuts an ordered list into consecutive parts of the given fractions (rounded boundaries)."""
    bounds = np.round(np.cumsum(fractions) * len(items)).astype(int)
    bounds[-1] = len(items)
    starts = np.concatenate([[0], bounds[:-1]])
    return [list(items[s:e]) for s, e in zip(starts, bounds)]


def seeded_split(keys: Iterable, fractions: Mapping[str, float], seed: int) -> dict[str, list]:
    """Deterministic random split: sorts the keys, permutes them with `np.random.RandomState(seed)`, and cuts
    the permutation by `fractions` (in the mapping's order). Each part is returned sorted.

    Sorting first makes the result independent of listing order; RandomState (not `default_rng`) because NumPy
    freezes its stream across versions, so a published split stays the same on every install.
    """
    return stratified_split({None: keys}, fractions, seed)


def stratified_split(strata: Mapping, fractions: Mapping[str, float], seed: int) -> dict[str, list]:
    """`seeded_split` within each stratum (strata visited in sorted order, one generator for all), so every
    stratum is divided in the same proportions."""
    if abs(sum(fractions.values()) - 1.0) > 1e-9:
        raise ValueError(f"split fractions {dict(fractions)} must sum to 1")
    rng = np.random.RandomState(seed)
    parts: dict[str, list] = {name: [] for name in fractions}
    for stratum in sorted(strata, key=lambda s: (s is not None, s)):
        keys = sorted(strata[stratum])
        permuted = [keys[i] for i in rng.permutation(len(keys))]
        for name, chunk in zip(fractions, _cut(permuted, list(fractions.values()))):
            parts[name].extend(chunk)
    return {name: sorted(keys) for name, keys in parts.items()}


# Flickr_LDL / Twitter_LDL ---------------------------------------------------------------------------------------

# Emotion order of the `vote` matrix in the published *_config.mat files: positives first.
LDL_FILE_ORDER = ("amusement", "awe", "contentment", "excitement", "anger", "disgust", "fear", "sadness")
LDL_SPLIT = {"train": 0.8, "test": 0.2}
LDL_SPLIT_SEED = 0


def ldl_to_mikels8(votes: np.ndarray, file_order: Sequence[str] = LDL_FILE_ORDER) -> np.ndarray:
    """Reorders (N, 8) votes from the file's emotion order to MIKELS8 order, matching by name."""
    column = [list(file_order).index(name) for name in MIKELS8_NAMES]
    return np.asarray(votes)[:, column]


def read_ldl_votes(mat_path: epath.PathLike, key: str = "vote") -> np.ndarray:
    """(N, 8) float64 vote counts in the file's emotion order, row i for image `i+1`.jpg.

    MATLAB v7.3 files are HDF5 and store arrays column-major: MATLAB's 8×N `vote` appears to h5py as (N, 8).
    An (8, N) dataset (written by something other than MATLAB) is transposed; other shapes are an error.
    """
    path = epath.Path(mat_path)
    with path.open("rb") as f, h5py.File(f, "r") as mat:
        if key not in mat:
            raise DataLayoutError(f"{path}: no variable {key!r} (found {sorted(mat.keys())})")
        votes = np.asarray(mat[key][()], dtype=np.float64)
    if votes.ndim == 2 and votes.shape[1] == 8:
        return votes
    if votes.ndim == 2 and votes.shape[0] == 8:
        return votes.T
    raise DataLayoutError(f"{path}: {key!r} has shape {votes.shape}; expected MATLAB 8×N (h5py (N, 8))")


def ldl_examples(votes_mikels: np.ndarray, where: str) -> list[dict]:
    """Per-image label fields from (N, 8) MIKELS8-ordered votes: the votes normalised to a distribution, and the
    dominant emotion (ties go to the first in MIKELS8 order). An image without votes is an error naming it."""
    rows = []
    for i, row in enumerate(votes_mikels):
        total = row.sum()
        if not np.isfinite(total) or total <= 0 or np.any(row < 0):
            raise DataLayoutError(f"{where}: image {i + 1}.jpg (column {i + 1}) has votes {row.tolist()}; "
                                  "cannot form a distribution")
        dist = (row / total).astype(np.float32)
        rows.append({"image_id": i + 1, "votes": row.astype(np.float32), "distribution": dist,
                     "label": int(np.argmax(dist))})
    return rows


LDL_LAYOUT = """\
<manual_dir>/
  {mat}
      MATLAB v7.3 file with variable `vote`: 8 x N vote counts, rows amusement, awe, contentment,
      excitement, anger, disgust, fear, sadness
  images/1.jpg ... images/N.jpg
      image i is column i of `vote`"""


class LdlBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Base of the Flickr_LDL and Twitter_LDL builders; a subclass sets `MAT_FILE` and the TFDS class fields."""

    MAT_FILE: str = ""
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}

    @classmethod
    def layout(cls) -> str:
        """The expected manual-dir layout, for error messages."""
        return LDL_LAYOUT.format(mat=cls.MAT_FILE)

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
                "image_id": np.int32,
                "votes": tfds.features.Tensor(shape=(8,), dtype=np.float32),
                "distribution": tfds.features.Tensor(shape=(8,), dtype=np.float32),
                "label": tfds.features.ClassLabel(names=MIKELS8_NAMES),
            }),
            supervised_keys=("image", "distribution"),
            metadata=new_metadata(emotions=list(MIKELS8_NAMES), split_seed=LDL_SPLIT_SEED),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        root = require(dl_manager.manual_dir, [self.MAT_FILE, "images"], self.layout())
        votes = ldl_to_mikels8(read_ldl_votes(root / self.MAT_FILE))
        rows = ldl_examples(votes, self.MAT_FILE)
        raise_if_missing_images(
            missing_images(root / "images", [f"{r['image_id']}.jpg" for r in rows]), "vote columns", self.layout()
        )
        reset_skipped(self.info.metadata)
        by_id = {r["image_id"]: r for r in rows}
        parts = seeded_split(by_id, LDL_SPLIT, LDL_SPLIT_SEED)
        return {
            split: self._generate_examples(root / "images", [by_id[i] for i in ids])
            for split, ids in parts.items()
        }

    def _generate_examples(self, images: epath.Path, rows: list[dict]):
        for row in rows:
            name = f"images/{row['image_id']}.jpg"
            image = load_jpeg(images / f"{row['image_id']}.jpg", name, self.info.metadata)
            if image is not None:
                yield row["image_id"], {"image": image, **row}


def dummy_jpeg(rng):
    """A tiny (8–16 px) gradient JPEG for builders' dummy data; deterministic for the generator's state."""
    h, w = rng.integers(8, 17, size=2)
    image = rng.integers(0, 200, size=3) + np.linspace(0, 55, w)[None, :, None] + np.zeros((h, w, 3))
    return encode_jpeg(image.astype(np.uint8), quality=70)


def write_ldl_dummy_data(out, mat_file, num_images, raters, seed, truncated, empty):
    """Dummy data for an LDL builder's test (both LDL builders share the layout): images/1.jpg … N.jpg, of which
    ``truncated`` is cut in half and ``empty`` has zero bytes, and a MATLAB v7.3-style ``mat_file`` (HDF5 behind
    the 512-byte MAT header) whose ``vote`` holds made-up counts of ``raters`` votes per image (h5py shape N×8,
    as MATLAB's 8×N matrix reads). Deterministic for a seed; ``out`` is rewritten."""
    out = pathlib.Path(out)
    rng = np.random.default_rng(seed)
    shutil.rmtree(out, ignore_errors=True)
    (out / "images").mkdir(parents=True)
    for n in range(1, num_images + 1):
        data = dummy_jpeg(rng)
        data = {truncated: data[: len(data) // 2], empty: b""}.get(n, data)
        (out / "images" / f"{n}.jpg").write_bytes(data)
    votes = np.stack([np.bincount(rng.integers(0, 8, raters), minlength=8) for _ in range(num_images)])
    with h5py.File(out / mat_file, "w", userblock_size=512) as f:
        f.create_dataset("vote", data=votes.astype(np.float64)).attrs["MATLAB_class"] = np.bytes_("double")
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Thu Jan  1 00:00:00 2017 HDF5 schema 1.00 ."
    with open(out / mat_file, "r+b") as f:
        f.write(header.ljust(116) + b"\0" * 8 + b"\x00\x02" + b"IM")
