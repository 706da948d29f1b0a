"""AP / mAP against hand-computed values, the streaming metric against the NumPy one, and the masked BCE."""
import math

import keras
import numpy as np
import pytest

from affect_zoo.metrics_multilabel import (MaskedBinaryCrossentropy, MeanAveragePrecision, average_precision,
                                           ignore_targets, mean_average_precision)


def test_average_precision_by_hand():
    # ranking by score: + - + - -  → precision at the hits 1/1 and 2/3 → AP = (1 + 2/3) / 2
    assert average_precision([1, 0, 1, 0, 0], [0.9, 0.8, 0.7, 0.3, 0.1]) == pytest.approx((1 + 2 / 3) / 2)
    # ranking - + + : precisions 1/2, 2/3 → AP = (1/2 + 2/3) / 2
    assert average_precision([0, 1, 1], [0.9, 0.5, 0.4]) == pytest.approx((0.5 + 2 / 3) / 2)
    # a tie of one positive and one negative at the top is one threshold: P = 1/2 at R = 1/2, then 2/3 at R = 1
    assert average_precision([1, 0, 1], [0.8, 0.8, 0.5]) == pytest.approx(0.5 * 0.5 + 0.5 * 2 / 3)
    assert average_precision([1, 1, 0], [0.9, 0.8, 0.1]) == 1.0
    assert math.isnan(average_precision([0, 0, 0], [0.3, 0.2, 0.1]))


def test_ignored_entries_leave_the_ranking():
    # the -1 entry (score 0.95, ranked first) is dropped: ranking + - + → AP = (1 + 2/3) / 2
    assert average_precision([-1, 1, 0, 1], [0.95, 0.9, 0.8, 0.7]) == pytest.approx((1 + 2 / 3) / 2)
    # treated as a negative instead it would lower the AP
    assert average_precision([0, 1, 0, 1], [0.95, 0.9, 0.8, 0.7]) < (1 + 2 / 3) / 2


def test_eleven_point_ap_by_hand():
    # + - + : recall 1/2 at P 1, recall 1 at P 2/3 → t = 0..0.5 (6 points) max P = 1, t = 0.6..1 (5 points) 2/3
    ap = average_precision([1, 0, 1], [0.9, 0.8, 0.7], method="11point")
    assert ap == pytest.approx((6 * 1 + 5 * 2 / 3) / 11)


def devkit_11point(gt, out):
    """VOC2007 devkit, VOCevalcls.m, transcribed line by line (gt: 1 positive, -1 negative, 0 difficult):
    [so,si]=sort(-out); tp=gt(si)>0; fp=gt(si)<0; fp=cumsum(fp); tp=cumsum(tp); rec=tp/sum(gt>0);
    prec=tp./(fp+tp); ap=Σ_t max(prec(rec>=t))/11 (0 if empty) over t = 0:0.1:1, here k/10. MATLAB's sort is
    stable."""
    gt, out = np.asarray(gt), np.asarray(out, dtype=np.float64)
    si = sorted(range(len(out)), key=lambda i: -out[i])  # Python's sort is stable too
    tp = np.cumsum(gt[si] > 0)
    fp = np.cumsum(gt[si] < 0)
    rec, prec = tp / np.sum(gt > 0), tp / np.maximum(fp + tp, 1e-300)
    return sum(max(prec[rec >= k / 10], default=0.0) for k in range(11)) / 11


def test_eleven_point_ap_ranks_every_tied_sample_as_the_voc2007_devkit():
    """Ties: the devkit takes precision and recall after every sample in its sort order, not once per score."""
    # scores 0.8, 0.8, 0.8, 0.5 with labels + - - +: after each sample P = 1, 1/2, 1/3, 1/2 and R = 1/2, 1/2, 1/2, 1
    # → t = 0 … 0.5 (6 levels): max P = 1; t = 0.6 … 1 (5 levels): 1/2 → AP = (6 + 5/2) / 11.
    # (One threshold per tie would give P = 1/3 at R = 1/2, then 1/2 at R = 1, i.e. AP = 1/2.)
    ap = average_precision([1, 0, 0, 1], [0.8, 0.8, 0.8, 0.5], method="11point")
    assert ap == pytest.approx((6 + 5 / 2) / 11) and ap == pytest.approx(devkit_11point([1, -1, -1, 1],
                                                                                         [0.8, 0.8, 0.8, 0.5]))
    # the tied samples keep their order: - + at the top gives P = 0, 1/2 at R = 0, 1 → every level 1/2;
    # + - gives P = 1 at R = 1 → every level 1
    assert average_precision([0, 1], [0.7, 0.7], method="11point") == pytest.approx(1 / 2)
    assert average_precision([1, 0], [0.7, 0.7], method="11point") == pytest.approx(1.0)
    # the exact (non-interpolated) AP still treats a tie as one threshold, so the order does not matter
    assert average_precision([0, 1], [0.7, 0.7]) == average_precision([1, 0], [0.7, 0.7]) == pytest.approx(1 / 2)


def test_eleven_point_ap_matches_the_devkit_transcription_with_ties_and_difficult():
    """Random scores rounded to one decimal (many ties), difficult entries (-1 here, 0 in the devkit) included; a
    recall of exactly 3/10 and 7/10 occurs (10 positives), which must count at t = 0.3 and 0.7."""
    rng = np.random.default_rng(7)
    for _ in range(20):
        y = rng.choice([1, 0, -1], size=40, p=[0.25, 0.65, 0.1])
        y[:10] = 1
        y[10:] = np.where(y[10:] == 1, 0, y[10:])  # exactly 10 positives
        s = np.round(rng.random(40), 1)
        gt = np.where(y == 1, 1, np.where(y == 0, -1, 0))
        assert average_precision(y, s, method="11point") == pytest.approx(devkit_11point(gt, s), abs=1e-12)


def test_mean_over_classes_with_positives():
    y = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0]])
    s = np.array([[0.9, 0.2, 0.1], [0.3, 0.8, 0.5], [0.1, 0.4, 0.2]])
    # class 0: ranking + - + → (1 + 2/3)/2; class 1: ranking + + - → 1; class 2: no positive → left out
    value, per_class = mean_average_precision(y, s, per_class=True)
    assert per_class[0] == pytest.approx((1 + 2 / 3) / 2) and per_class[1] == 1.0 and math.isnan(per_class[2])
    assert value == pytest.approx(((1 + 2 / 3) / 2 + 1) / 2)


def test_streaming_metric_matches_numpy_over_batches():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, (40, 5)).astype("float32")
    y[rng.random((40, 5)) < 0.15] = -1
    y[:, 4] = np.where(y[:, 4] == 1, 0, y[:, 4])  # class 4: no positive
    s = (rng.permutation(200).reshape(40, 5) + 0.5) / 200  # one score per bin of 200
    metric = MeanAveragePrecision(num_labels=5, num_thresholds=200)
    for start in (0, 16, 32):
        metric.update_state(y[start:start + 16], s[start:start + 16])
    expected, per_class = mean_average_precision(y, s, per_class=True)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(metric.per_class_result()), per_class, rtol=1e-5)
    assert float(metric.result()) == pytest.approx(expected, rel=1e-5)
    metric.reset_state()
    assert float(metric.result()) == 0.0
    clone = MeanAveragePrecision.from_config(metric.get_config())
    assert clone.get_config() == metric.get_config()


def test_masked_bce_drops_ignored_labels_exactly():
    y = np.array([[1, -1, 0], [-1, -1, 1]], "float32")
    p = np.array([[0.8, 0.3, 0.4], [0.5, 0.9, 0.6]], "float32")
    loss = MaskedBinaryCrossentropy(reduction=None)(y, p)
    expected = [-(np.log(0.8) + np.log(0.6)) / 3, -np.log(0.6) / 3]
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loss), expected, rtol=1e-5)
    full = np.array([[1, 0, 0]], "float32")
    np.testing.assert_allclose(MaskedBinaryCrossentropy()(full, p[:1]), keras.losses.BinaryCrossentropy()(full, p[:1]),
                               rtol=1e-6)


def test_ignore_targets():
    out = ignore_targets(np.array([[True, False, True]]), np.array([[False, True, True]]))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(out), [[1, -1, -1]])
