"""Writes dummy_data/ for the builder test: classes.txt (4 emotions), records.jsonl (23 posts with every pattern of
missing modality) and tiny JPEGs under images/.

Special records: `corrupt_only` has only an image, truncated (skipped and recorded, the record dropped);
`empty_image` has a zero-byte image and a text (the image is skipped and recorded, the record kept as text only);
`many_tags` has 13 tags, 12 distinct (truncated to 10); `long_text` has 170 words (truncated to 150); `by_index`
gives its label as an index; `oov` uses words and tags absent from train. Records `auto_*` have no split and are
placed by the builder's seeded split (one label: 8 train, 1 validation, 1 test).

python tfds_builders/affect_multimodal/make_dummy_data.py   (deterministic; rewrites dummy_data/)
"""
import json
import pathlib
import shutil
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # tfds_builders/: tfds_common

from tfds_common import dummy_jpeg  # noqa: E402

OUT = pathlib.Path(__file__).resolve().parent / "dummy_data"
CLASSES = ("amusement", "anger", "awe", "sadness")
TRUNCATED, EMPTY = "images/corrupt.jpg", "images/empty.jpg"


def records():
    long_text = " ".join(f"word{i % 7}" for i in range(170))
    many_tags = ["Sky", "sky ", "cloud", "blue", "sun", "light", "day", "summer", "warm", "bright", "calm", "sea",
                 "waves"]
    return [
        {"id": "all", "split": "train", "image": "images/p01.jpg", "text": "What a happy day at the beach!",
         "tags": ["beach", "sunset", "Fun"], "label": "amusement"},
        {"id": "image_text", "split": "train", "image": "images/p02.jpg", "text": "So angry about this traffic",
         "label": "anger"},
        {"id": "text_only", "split": "train", "text": "I can't believe how angry this makes me", "label": "anger"},
        {"id": "tags_only", "split": "train", "tags": ["storm", "dark"], "label": "sadness"},
        {"id": "many_tags", "split": "train", "image": "images/p03.jpg", "tags": many_tags, "label": "awe"},
        {"id": "long_text", "split": "train", "image": "images/p04.jpg", "text": long_text, "label": "awe"},
        {"id": "corrupt_only", "split": "train", "image": TRUNCATED, "label": "sadness"},
        {"id": "empty_image", "split": "train", "image": EMPTY, "text": "a sad rainy day", "label": "sadness"},
        {"id": "by_index", "split": "train", "text": "Émerveillé — café! naïve", "tags": ["Voyage"], "label": 2},
        {"id": "oov", "split": "validation", "image": "images/p05.jpg", "text": "completely unseen vocabulary",
         "tags": ["neverseen"], "label": "awe"},
        {"id": "val_image", "split": "validation", "image": "images/p06.jpg", "label": "amusement"},
        {"id": "test_text_tags", "split": "test", "text": "happy beach day", "tags": ["beach"], "label": "amusement"},
        {"id": "test_image_text", "split": "test", "image": "images/p07.jpg", "text": "angry storm",
         "text_ignored_key": 1, "label": "anger"},
        *({"id": f"auto_{i}", "image": f"images/p{8 + i:02d}.jpg" if i % 2 else None,
           "text": f"post number {i} feeling {CLASSES[i % 4]}", "tags": [CLASSES[i % 4]] if i % 3 else [],
           "label": "awe"} for i in range(10)),
    ]


def main():
    rng = np.random.default_rng(2019)
    shutil.rmtree(OUT, ignore_errors=True)
    (OUT / "images").mkdir(parents=True)
    (OUT / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    rows = records()
    for row in rows:
        image = row.get("image")
        if image:
            data = dummy_jpeg(rng)
            data = {TRUNCATED: data[: len(data) // 2], EMPTY: b""}.get(image, data)
            (OUT / image).write_bytes(data)
    lines = [json.dumps({k: v for k, v in row.items() if v is not None}, ensure_ascii=False) for row in rows]
    (OUT / "records.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
