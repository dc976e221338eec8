import numpy as np
import pytest
import tensorflow as tf

from nucseg.losses import accuracy, dice, dice_loss, get_loss, soft_dice, weighted_bce

Y = np.array([[[1.0], [0.0]], [[1.0], [0.0]]], np.float32)[None]   # (1, 2, 2, 1)


def test_soft_dice_hand_computed():
    prob = np.array([[[0.5], [0.5]], [[1.0], [0.0]]], np.float32)[None]
    # intersection 1.5, |y| 2, |p| 2 -> (3 + 1) / (4 + 1)
    assert float(soft_dice(Y, prob)[0]) == pytest.approx(4 / 5)
    assert float(soft_dice(Y, prob, smooth=0)[0]) == pytest.approx(3 / 4)


def test_dice_loss_applies_the_sigmoid_once():
    logits = np.where(Y > 0, 20.0, -20.0).astype(np.float32)
    assert float(dice_loss(Y, logits)) == pytest.approx(0.0, abs=1e-6)
    # a sigmoid applied twice would squash every probability into [0.5, 0.73]: loss well above 0
    assert float(dice_loss(Y, tf.sigmoid(logits))) > 0.1


def test_weighted_bce_matches_numpy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=Y.shape).astype(np.float32)
    p = 1 / (1 + np.exp(-logits))
    for w in (1.0, 10.0, 1e-4):
        per_pixel = -(w * Y * np.log(p) + (1 - Y) * np.log(1 - p))
        expected = per_pixel.sum() / (1 + (w - 1) * Y).sum()
        assert float(weighted_bce(Y, logits, w)) == pytest.approx(expected, rel=1e-5)
    plain = tf.keras.losses.BinaryCrossentropy(from_logits=True)(Y, logits)
    assert float(weighted_bce(Y, logits, 1.0)) == pytest.approx(float(plain), rel=1e-5)


def test_pos_weight_shifts_the_balance():
    logits = np.zeros(Y.shape, np.float32)
    low, high = float(weighted_bce(Y, logits - 1, 100.0)), float(weighted_bce(Y, logits + 1, 100.0))
    assert low > high   # missing nuclei costs more than false alarms when nuclei weigh 100x


def test_get_loss_combines():
    logits = np.random.default_rng(1).normal(size=Y.shape).astype(np.float32)
    both = float(get_loss("bce_dice", 2.0)(Y, logits))
    assert both == pytest.approx(float(get_loss("bce", 2.0)(Y, logits)) + float(get_loss("dice")(Y, logits)))
    with pytest.raises(ValueError, match="unknown loss"):
        get_loss("focal")


def test_metrics_threshold_logits_at_zero():
    logits = np.array([[[3.0], [-2.0]], [[-0.5], [-4.0]]], np.float32)[None]   # predicts one of two nuclei
    assert float(accuracy(Y, logits)) == pytest.approx(3 / 4)
    assert float(dice(Y, logits)) == pytest.approx(2 / 3, rel=1e-5)
