"""UAE / IAE (Shen et al.): 22,086 images with an emotion category (Mikels' eight) and aesthetic ratings.

Ten raters scored each image Excellent/Good/Fair/Bad = 10/7/4/1; the aesthetic score is the mean of the votes
cast, and images scoring below 5 are "low" quality. The release's HDF5 layout is not public, so the vote
matrix's key, width and the list files' emotion order are BuilderConfig fields (see README.md), and the
aesthetic labels of the lists are cross-checked against the votes so that a wrong layout guess fails loudly.
"""
from __future__ import annotations

import dataclasses

import h5py
import numpy as np
import tensorflow_datasets as tfds
from etils import epath

import tfds_common as common

SPLITS = {"train": "train", "validation": "val", "test": "test"}  # TFDS split → list-file prefix
TASKS = ("aes", "emo")
SCORES_FILE = "scores.h5"
VOTE_LEVELS = (1, 4, 7, 10)  # Bad, Fair, Good, Excellent; 0 = no vote
LOW_BELOW = 5.0  # the authors' rule: mean < 5 → low, otherwise high
AESTHETIC_NAMES = ("low", "high")
SHOWN = 20

LAYOUT = """\
<manual_dir>/
  images/<id>.jpg                  id = 0 ... 22085
  {train,val,test}_aes_list.txt    rows `<id> <0|1>`   (0 = low, 1 = high aesthetic quality)
  {train,val,test}_emo_list.txt    rows `<id> <0-7>`   (emotion, in the config's list_emotion_order,
                                                        by default amusement, anger, awe, contentment,
                                                        disgust, excitement, fear, sadness)
  scores.h5                        dataset `scores` (config scores_key): N x R votes (R = num_raters),
                                   row = image id, values 10/7/4/1, 0 = no vote; R x N is accepted too"""


@dataclasses.dataclass(eq=False)
class UaeConfig(tfds.core.BuilderConfig):
    """Where the votes are and what the list labels mean, since the release's file layout is not published.

    scores_key: HDF5 dataset holding the vote matrix.
    num_raters: R, the width of the vote matrix (and of the `votes` feature).
    list_emotion_order: emotion names of the emo lists' labels 0-7 (mapped by name to MIKELS8).
    """

    scores_key: str = "scores"
    num_raters: int = 10
    list_emotion_order: tuple = common.MIKELS8_NAMES


def read_list(path: epath.PathLike, num_labels: int) -> dict[int, int]:
    """{image id: label} of one `<id> <label>` list; raises naming file and line for malformed rows."""
    path = epath.Path(path)
    rows: dict[int, int] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{path.name} line {number}"
        try:
            image_id, label = (int(x) for x in fields)
        except ValueError:
            raise common.DataLayoutError(f"{where}: {line!r} is not `<image id> <label>`") from None
        if not 0 <= label < num_labels:
            raise common.DataLayoutError(f"{where}: image {image_id} has label {label}, outside 0-{num_labels - 1}")
        if image_id in rows:
            raise common.DataLayoutError(f"{where}: image {image_id} is listed twice")
        rows[image_id] = label
    return rows


def read_votes(path: epath.PathLike, key: str, num_raters: int) -> np.ndarray:
    """(N, R) int32 vote matrix indexed by image id; an (R, N) matrix is transposed."""
    path = epath.Path(path)
    with path.open("rb") as f, h5py.File(f, "r") as h5:
        if key not in h5:
            raise common.DataLayoutError(
                f"{path}: no dataset {key!r} (found {sorted(h5.keys())}); set UaeConfig.scores_key. "
                f"Expected layout:\n{LAYOUT}"
            )
        votes = np.asarray(h5[key][()])
    if votes.ndim == 2 and votes.shape[0] == num_raters and votes.shape[1] != num_raters:
        votes = votes.T
    if votes.ndim != 2 or votes.shape[1] != num_raters:
        raise common.DataLayoutError(
            f"{path}: {key!r} has shape {votes.shape}; expected (N, {num_raters}) (UaeConfig.num_raters)"
        )
    bad = sorted({int(i) for i in np.argwhere(~np.isin(votes, (0,) + VOTE_LEVELS))[:, 0]})
    if bad:
        raise common.DataLayoutError(
            f"{path}: votes other than {VOTE_LEVELS} or 0 for image ids {bad[:SHOWN]}: e.g. {votes[bad[0]].tolist()}"
        )
    return votes.astype(np.int32)


def split_membership(lists: dict[tuple[str, str], dict[int, int]]) -> dict[int, str]:
    """{image id: list-file split}, requiring each id in exactly one split and the same one for both tasks."""
    where: dict[int, dict[str, list[str]]] = {}
    for (split, task), rows in lists.items():
        for image_id in rows:
            where.setdefault(image_id, {t: [] for t in TASKS})[task].append(split)
    conflicts = [
        f"{image_id} (aes: {'/'.join(w['aes']) or '-'}, emo: {'/'.join(w['emo']) or '-'})"
        for image_id, w in sorted(where.items())
        if len(w["aes"]) != 1 or w["aes"] != w["emo"]
    ]
    if conflicts:
        raise common.DataLayoutError(
            f"aesthetic and emotion lists disagree on the split of {len(conflicts)} images: "
            + ", ".join(conflicts[:SHOWN])
        )
    return {image_id: w["aes"][0] for image_id, w in where.items()}


class Builder(tfds.core.GeneratorBasedBuilder):
    """UAE with both tasks on every image and the raters' raw votes."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = [UaeConfig(name="default", description="scores.h5 dataset `scores`, 10 raters.")]
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
Request the UAE (IAE) release from the authors of Shen et al. and arrange it as:
{LAYOUT}
A different HDF5 key, rater count or emotion order: pass a config, e.g.
  tfds build tfds_builders/uae --config '{{"name": "mine", "scores_key": "votes"}}' ...
"""

    def _info(self) -> tfds.core.DatasetInfo:
        config = self.builder_config
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
                "image_id": np.int32,
                "emotion": tfds.features.ClassLabel(names=common.MIKELS8_NAMES),
                "aesthetic": tfds.features.ClassLabel(names=AESTHETIC_NAMES),
                "aesthetic_score": np.float32,
                "votes": tfds.features.Tensor(shape=(config.num_raters,), dtype=np.int32),
            }),
            supervised_keys=None,
            metadata=common.new_metadata(),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        config = self.builder_config
        if sorted(config.list_emotion_order) != sorted(common.MIKELS8_NAMES):
            raise ValueError(f"list_emotion_order {config.list_emotion_order} must name each of {common.MIKELS8_NAMES}")
        list_files = {(s, t): f"{s}_{t}_list.txt" for s in SPLITS.values() for t in TASKS}
        root = common.require(dl_manager.manual_dir, ["images", SCORES_FILE, *list_files.values()], LAYOUT)
        lists = {key: read_list(root / name, 2 if key[1] == "aes" else 8) for key, name in list_files.items()}
        membership = split_membership(lists)
        aesthetic = {i: label for (_, task), rows in lists.items() if task == "aes" for i, label in rows.items()}
        emotion = {i: label for (_, task), rows in lists.items() if task == "emo" for i, label in rows.items()}
        votes = read_votes(root / SCORES_FILE, config.scores_key, config.num_raters)
        beyond = sorted(i for i in membership if not 0 <= i < len(votes))
        if beyond:
            raise common.DataLayoutError(
                f"image ids without a row in {SCORES_FILE} ({len(votes)} rows): {beyond[:SHOWN]}"
            )
        to_mikels = [common.MIKELS8_NAMES.index(name) for name in config.list_emotion_order]
        records = {i: self._record(i, votes[i], aesthetic[i], to_mikels[emotion[i]]) for i in sorted(membership)}
        contradicted = [
            f"{i} (mean {r['aesthetic_score']:.2f}, listed {AESTHETIC_NAMES[r['aesthetic']]})"
            for i, r in records.items()
            if (r["aesthetic_score"] < LOW_BELOW) != (r["aesthetic"] == 0) and r["aesthetic_score"] != LOW_BELOW
        ]
        if contradicted:
            raise common.DataLayoutError(
                f"aesthetic labels contradict the mean vote (< {LOW_BELOW} is low) for {len(contradicted)} images: "
                f"{', '.join(contradicted[:SHOWN])}. Check that {SCORES_FILE} rows are image ids and that "
                f"UaeConfig.scores_key/num_raters are right."
            )
        common.raise_if_missing_images(
            common.missing_images(root / "images", [f"{i}.jpg" for i in records]), "listed ids", LAYOUT
        )
        common.reset_skipped(self.info.metadata)
        return {
            split: self._generate_examples(root / "images", [r for i, r in records.items() if membership[i] == part])
            for split, part in SPLITS.items()
        }

    @staticmethod
    def _record(image_id: int, votes: np.ndarray, aesthetic: int, emotion: int) -> dict:
        cast = votes[votes > 0]
        if cast.size == 0:
            raise common.DataLayoutError(f"image {image_id} has no aesthetic votes in {SCORES_FILE}")
        return {"image_id": image_id, "emotion": emotion, "aesthetic": aesthetic,
                "aesthetic_score": float(cast.mean()), "votes": votes}

    def _generate_examples(self, images: epath.Path, records: list[dict]):
        for record in records:
            image = common.load_jpeg(images / f"{record['image_id']}.jpg", f"images/{record['image_id']}.jpg",
                                     self.info.metadata)
            if image is not None:
                yield record["image_id"], {"image": image, **record}
