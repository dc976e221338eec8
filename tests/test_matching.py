import numpy as np
import pytest

from nucseg.matching import THRESHOLDS, instance_metrics, iou_matrix, match


def _labels(*boxes, shape=(10, 10)):
    out = np.zeros(shape, np.int32)
    for k, (y0, y1, x0, x1) in enumerate(boxes, start=1):
        out[y0:y1, x0:x1] = k
    return out


def test_thresholds():
    np.testing.assert_allclose(THRESHOLDS, [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95])


def test_iou_matrix_hand_computed():
    truth = _labels((0, 2, 0, 2), (5, 7, 5, 7))          # two 2x2 nuclei
    pred = _labels((0, 2, 0, 3), (8, 10, 8, 10))          # 2x3 over the first; one elsewhere
    np.testing.assert_allclose(iou_matrix(truth, pred), [[4 / 6, 0], [0, 0]])
    # rows are the true nuclei, columns the predicted ones
    np.testing.assert_allclose(iou_matrix(truth, _labels((5, 7, 5, 8))), [[0], [4 / 6]])


def test_one_hit_one_miss_one_false_alarm():
    truth = _labels((0, 2, 0, 2), (5, 7, 5, 7))
    pred = _labels((0, 2, 0, 2), (8, 10, 8, 10))
    r = match(truth, pred)
    # TP 1, FP 1, FN 1 at every threshold: 1/3; F1 = 2/(2+1+1)
    assert r["dsb"] == pytest.approx(1 / 3)
    assert r["f1"] == pytest.approx(0.5)
    assert (r["n_true"], r["n_pred"], r["count_error"]) == (2, 2, 0)


def test_partial_overlap_hits_the_lower_thresholds_only():
    truth = _labels((0, 1, 0, 5))        # 5 pixels
    pred = _labels((0, 1, 0, 6))         # 6 pixels: IoU 5/6 = 0.833
    # above 0.5 ... 0.8 (7 thresholds): 1 each; above 0.85 ... 0.95: TP 0, FP 1, FN 1 -> 0
    assert match(truth, pred)["dsb"] == pytest.approx(0.7)


def test_iou_exactly_one_half_is_not_a_match():
    truth = _labels((0, 2, 0, 2))
    pred = _labels((0, 2, 0, 1))         # IoU 2/4
    r = match(truth, pred)
    assert r["dsb"] == 0 and r["f1"] == 0


def test_empty_cases():
    empty = np.zeros((4, 4), int)
    r = match(empty, empty)   # nothing to find and nothing found: a perfect score, by DSB and F1 alike
    assert (r["dsb"], r["f1"], r["n_true"], r["n_pred"], r["count_error"], r["tp"]) == (1, 1, 0, 0, 0, [0] * 10)
    assert match(_labels((0, 2, 0, 2), shape=(4, 4)), empty)["dsb"] == 0
    assert match(empty, _labels((0, 2, 0, 2), shape=(4, 4)))["count_error"] == 1


def test_label_values_need_not_be_consecutive():
    truth = _labels((0, 2, 0, 2), (5, 7, 5, 7)) * 7
    assert match(truth, truth)["dsb"] == 1


def test_means_over_images():
    truth = _labels((0, 2, 0, 2), (5, 7, 5, 7))
    summary, rows = instance_metrics([truth, truth], [truth, _labels((0, 2, 0, 2))])
    # image 2: TP 1, FN 1 -> 1/2 at every threshold; F1 2/3; count error 1
    assert summary["dsb"] == pytest.approx(0.75)
    assert summary["f1_iou50"] == pytest.approx((1 + 2 / 3) / 2)
    assert summary["count_mae"] == pytest.approx(0.5)
    assert (rows[1]["n_true"], rows[1]["n_pred"], rows[1]["count_error"]) == (2, 1, 1)
    assert rows[1]["f1"] == pytest.approx(2 / 3) and rows[1]["tp"] == [1] * 10


def test_label_images_of_other_shapes_are_refused_before_flattening():
    # (4, 6) and (6, 4) hold the same number of pixels: flattened first, they were scored
    truth, pred = np.zeros((4, 6), int), np.zeros((6, 4), int)
    truth[:2, :3] = pred[:2, :3] = 1
    with pytest.raises(ValueError, match=r"label image shapes differ: \(4, 6\) vs \(6, 4\)"):
        match(truth, pred)


def test_memory_grows_with_overlapping_pairs_not_with_all_pairs():
    """20,000 one-pixel nuclei a side, each prediction on its true nucleus or beside it: a table
    of every pair would take 3.2 GB; only the 20,000 pairs that overlap are kept."""
    import tracemalloc

    truth = np.zeros((600, 600), np.int64)
    truth.flat[::18] = np.arange(1, 20001)
    pred = truth.copy()
    pred.flat[1::36] = pred.flat[::36]       # every other nucleus also covers the pixel beside it:
    tracemalloc.start()                      # IoU 1/2, not above 0.5
    try:
        scores = match(truth, pred)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert scores["n_true"] == scores["n_pred"] == 20000
    assert scores["tp"][0] == 10000 and scores["dsb"] == pytest.approx(10000 / 30000)
    assert peak < 200e6, f"{peak / 1e6:.0f} MB"
