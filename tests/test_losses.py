import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from nucseg import losses
from nucseg.losses import accuracy, dice, dice_loss, get_loss, soft_dice, weighted_bce
from nucseg.train import compile_model

Y = np.array([[[1.0], [0.0]], [[1.0], [0.0]]], np.float32)[None]   # (1, 2, 2, 1)


def test_soft_dice_hand_computed():
    prob = np.array([[[0.5], [0.5]], [[1.0], [0.0]]], np.float32)[None]
    # intersection 1.5, |y| 2, |p| 2 -> (3 + 1) / (4 + 1)
    assert float(soft_dice(Y, prob)[0]) == pytest.approx(4 / 5)
    assert float(soft_dice(Y, prob, smooth=0)[0]) == pytest.approx(3 / 4)


def test_soft_dice_per_image_then_mean():
    prob = np.array([[[0.5], [0.5]], [[1.0], [0.0]]], np.float32)[None]
    y2, prob2 = np.concatenate([Y, Y]), np.concatenate([Y, prob])   # a perfect image, then the one above
    np.testing.assert_allclose(soft_dice(y2, prob2).numpy(), [1.0, 0.8], rtol=1e-6)
    # the loss averages the two: 1 - 0.9. Pooled over the batch it would be 1 - (7 + 1) / (8 + 1) = 1/9
    logits = 30 * (2 * prob2 - 1)   # probabilities 0, 0.5, 1 as logits -30, 0, 30
    assert float(dice_loss(y2, logits)) == pytest.approx(0.1, abs=1e-6)


def test_dice_loss_applies_the_sigmoid_once():
    logits = np.where(Y > 0, 20.0, -20.0).astype(np.float32)
    assert float(dice_loss(Y, logits)) == pytest.approx(0.0, abs=1e-6)
    # a sigmoid applied twice would squash every probability into [0.5, 0.73]: loss well above 0
    assert float(dice_loss(Y, tf.sigmoid(logits))) > 0.1


# BCE at logit -1: ln(1 + e) = 1.3132617 for a nucleus pixel (times w), ln(1 + 1/e) = 0.3132617
# for background; Y has two of each, so (2w * 1.3132617 + 2 * 0.3132617) / (2w + 2)
@pytest.mark.parametrize("w, at_minus_one", [(1.0, 0.8132617), (10.0, 1.2223526), (1e-4, 0.3133617)])
def test_weighted_bce_hand_computed(w, at_minus_one):
    zeros = np.zeros(Y.shape, np.float32)
    # at logit 0 every pixel costs w * ln 2 or ln 2: divided by the weights, ln 2 whatever w is
    assert float(weighted_bce(Y, zeros, w)) == pytest.approx(math.log(2), rel=1e-6)
    assert float(weighted_bce(Y, zeros - 1, w)) == pytest.approx(at_minus_one, rel=1e-6)


def test_weighted_bce_of_one_is_keras_bce():
    logits = np.random.default_rng(0).normal(size=Y.shape).astype(np.float32)
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


# predicts one of the two nuclei, with a logit in (0, 0.5]: a nucleus at 0, not at 0.5
LOGITS = np.array([[[0.3], [-2.0]], [[-0.5], [-4.0]]], np.float32)[None]


def test_metrics_threshold_logits_at_zero():
    # mask [[1, 0], [0, 0]] vs Y [[1, 0], [1, 0]]: 3 of 4 pixels right, Dice 2 * 1 / (1 + 2).
    # Thresholded at 0.5 it would be 2/4 and 0; logits compared with labels, accuracy 0.
    assert accuracy(Y, LOGITS).numpy() == pytest.approx([3 / 4])   # one value per image
    assert dice(Y, LOGITS).numpy() == pytest.approx([2 / 3], rel=1e-5)


@pytest.fixture(scope="module")
def compiled():
    """compile_model on a model that passes its input through, so the input plays the logits."""
    inputs = keras.Input((2, 2, 1))
    return compile_model(keras.Model(inputs, keras.layers.Identity()(inputs)), 1e-3, "bce", pos_weight=10.0)


def test_compile_model_uses_the_nucseg_metrics(compiled):
    result = compiled.evaluate(LOGITS, Y, verbose=0, return_dict=True)
    assert result["accuracy"] == pytest.approx(3 / 4)      # Keras' "accuracy" on logits: 2/4
    assert result["dice"] == pytest.approx(2 / 3, rel=1e-5)
    wrapped = [m for m in compiled.metrics if m.name == "compile_metrics"][0]   # built by evaluate
    assert [(m.name, m._fn) for m in wrapped.metrics] == [("dice", losses.dice), ("accuracy", losses.accuracy)]


def test_epoch_metrics_are_means_over_images_not_batches(compiled):
    """Five images in batches of 4 and 1: four predicted exactly, the last one inverted. Over the
    images Dice and accuracy are 4/5; averaged per batch, as a metric returning one number per
    batch is, they would be (1 + 0) / 2."""
    truth = np.zeros((5, 2, 2, 1), np.float32)
    truth[:, 0, 0] = 1
    logits = np.where(truth > 0, 5.0, -5.0)
    logits[4] *= -1
    result = compiled.evaluate(logits, truth, batch_size=4, verbose=0, return_dict=True)
    assert result["dice"] == pytest.approx(4 / 5, rel=1e-5) and result["accuracy"] == pytest.approx(4 / 5)


def test_compile_model_passes_pos_weight_to_the_loss(compiled):
    # (20 * ln(1 + e) + 2 * ln(1 + 1/e)) / 22 = (26.26523 + 0.62652) / 22; with w = 1: 0.81326
    assert float(compiled.loss(Y, -np.ones_like(Y))) == pytest.approx(1.2223526, rel=1e-6)
    result = compiled.evaluate(-np.ones_like(Y), Y, verbose=0, return_dict=True)
    assert result["loss"] == pytest.approx(1.2223526, rel=1e-6)
