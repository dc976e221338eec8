import numpy as np
import pytest

from nucseg.metrics import confusion, pixel_metrics, scores

GT = np.array([[1, 1], [0, 0]])
PR = np.array([[1, 0], [1, 0]])
EMPTY = np.zeros((2, 2), int)
FULL = np.ones((2, 2), int)


@pytest.mark.parametrize("y_true, y_pred, expected", [
    # tp=1 fp=1 fn=1: precision 1/2, recall 1/2, Dice 2/4, IoU 1/3
    (GT, PR, dict(precision=0.5, recall=0.5, dice=0.5, iou=1 / 3)),
    (GT, GT, dict(precision=1, recall=1, dice=1, iou=1)),
    # tp=2 fp=2 fn=0
    (GT, FULL, dict(precision=0.5, recall=1, dice=4 / 6, iou=0.5)),
    (EMPTY, EMPTY, dict(precision=1, recall=1, dice=1, iou=1)),   # nothing to find, nothing found
    (GT, EMPTY, dict(precision=0, recall=0, dice=0, iou=0)),      # everything missed
    (EMPTY, PR, dict(precision=0, recall=0, dice=0, iou=0)),      # only false alarms
])
def test_hand_computed(y_true, y_pred, expected):
    result = scores(*confusion(y_true, y_pred))
    for k, v in expected.items():
        assert result[k] == pytest.approx(v), k


def test_mean_per_image_versus_pooled():
    # image 1: tp=1 fp=1 fn=1 (Dice 1/2); image 2: tp=2 fp=0 fn=0 (Dice 1)
    y_true = np.stack([GT, GT])
    y_pred = np.stack([PR, GT])
    summary, per_image = pixel_metrics(y_true, y_pred)
    np.testing.assert_allclose(per_image["dice"], [0.5, 1.0])
    assert summary["mean"]["dice"] == pytest.approx(0.75)
    # pooled: tp=3 fp=1 fn=1 -> Dice 6/8, precision 3/4, IoU 3/5
    assert summary["pooled"]["dice"] == pytest.approx(0.75)
    assert summary["pooled"]["precision"] == pytest.approx(0.75)
    assert summary["pooled"]["iou"] == pytest.approx(0.6)
    assert summary["mean"]["iou"] == pytest.approx((1 / 3 + 1) / 2)


def test_shape_mismatch():
    # (2, 2) against (2, 1) would broadcast: scored silently without the check
    with pytest.raises(ValueError, match=r"mask shapes differ: \(2, 2\) vs \(2, 1\)"):
        confusion(np.ones((2, 2)), np.ones((2, 1)))
