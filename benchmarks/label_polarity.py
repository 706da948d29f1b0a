"""How often the shipped Emotion6 entries' emotion_label and emotion_polarity disagree, and how sure the label is
then: the figures behind the README's "Label and polarity can disagree" paragraph (issue 13).

A disagreement: a positive label (joy, surprise) with polarity -1, or a negative one with +1; neutral labels
have no side and are left out. Images: every 33rd file of ../shared/data/emotion6/images (sorted), 50 in all.
Prints a table and writes benchmarks/results/label_polarity.json.
"""
import glob
import json
import pathlib

import numpy as np

from affect_zoo import zoo
from affect_zoo.emotion import EMOTION6, soft_polarity

HERE = pathlib.Path(__file__).resolve().parent
IMAGES = HERE.parent.parent / "shared" / "data" / "emotion6" / "images"


def main():
    paths = sorted(glob.glob(str(IMAGES / "*" / "*.jpg")))[::33][:50]
    if not paths:
        raise SystemExit(f"no Emotion6 images under {IMAGES}")
    rows = []
    for name in zoo.list_models("*emotion6", pretrained=True):
        out = zoo.predict(name, paths)
        dist, labels, polarity = out["emotion"].astype(float), out["emotion_label"], out["emotion_polarity"]
        sided = labels != "neutral"
        positive = np.array([label in EMOTION6.positive for label in labels])
        split = sided & (positive != (polarity > 0))
        rows.append({"entry": name, "images": len(paths), "neutral_labels": int((~sided).sum()),
                     "disagree": int(split.sum()), "joy_and_negative": int(((labels == "joy") & (polarity < 0)).sum()),
                     "median_label_p_when_disagree": float(np.median(dist.max(1)[split])) if split.any() else None,
                     "soft_polarity_sign_differs": int((np.sign(soft_polarity(dist, EMOTION6)) != polarity).sum())})
    print(f"{'entry':34s} {'images':>6s} {'neutral':>7s} {'disagree':>8s} {'joy&-1':>6s} {'median p':>8s}")
    for r in rows:
        p = "-" if r["median_label_p_when_disagree"] is None else f"{r['median_label_p_when_disagree']:.3f}"
        print(f"{r['entry']:34s} {r['images']:6d} {r['neutral_labels']:7d} {r['disagree']:8d} "
              f"{r['joy_and_negative']:6d} {p:>8s}")
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "label_polarity.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
