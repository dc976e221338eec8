"""Training losses and metrics on logits, (y_true, y_pred) order, as Keras accepts them.

The model ends in logits. Each function applies the sigmoid exactly once (the original notebook
applied it twice inside its Dice) and uses one smoothing constant, small enough not to swamp the
nuclei of a 128 px image (the notebook added 100).
"""
from __future__ import annotations

import tensorflow as tf

SMOOTH = 1.0
LOSSES = ("bce", "dice", "bce_dice")


def soft_dice(y_true, y_prob, smooth=SMOOTH):
    """Soft Dice per image, shape (batch,), from probabilities."""
    y_true = tf.cast(y_true, y_prob.dtype)
    axes = tf.range(1, tf.rank(y_prob))
    intersection = tf.reduce_sum(y_true * y_prob, axis=axes)
    total = tf.reduce_sum(y_true, axis=axes) + tf.reduce_sum(y_prob, axis=axes)
    return (2.0 * intersection + smooth) / (total + smooth)


def dice_loss(y_true, logits):
    """1 - soft Dice, averaged over the batch."""
    return 1.0 - tf.reduce_mean(soft_dice(y_true, tf.sigmoid(logits)))


def weighted_bce(y_true, logits, pos_weight=1.0):
    """Binary cross-entropy on logits with nucleus pixels weighted by `pos_weight`.

    Keras 3's ``class_weight`` does not apply to per-pixel targets, so the weighting lives here.
    The weighted sum is divided by the mean weight, so that changing `pos_weight` changes the
    balance between classes, not the scale of the loss (and thus the effective learning rate).
    """
    y_true = tf.cast(y_true, logits.dtype)
    bce = tf.nn.weighted_cross_entropy_with_logits(labels=y_true, logits=logits, pos_weight=pos_weight)
    weights = 1.0 + (pos_weight - 1.0) * y_true
    return tf.reduce_sum(bce) / tf.reduce_sum(weights)


def get_loss(name="bce_dice", pos_weight=1.0):
    """The training loss by name: ``bce``, ``dice`` or ``bce_dice`` (their sum)."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}: use one of {', '.join(LOSSES)}")

    def loss(y_true, logits):
        logits = tf.cast(logits, tf.float32)
        value = 0.0
        if name in ("bce", "bce_dice"):
            value += weighted_bce(y_true, logits, pos_weight)
        if name in ("dice", "bce_dice"):
            value += dice_loss(y_true, logits)
        return value

    loss.__name__ = name
    return loss


# The two metrics return one value per image, shape (batch,): Keras averages a metric over the
# values it returns, so an epoch's figure is the mean over its images. A scalar per batch would
# count a short last batch as much as a full one.


def dice(y_true, logits):
    """Hard Dice of the thresholded prediction (probability above one half), per image."""
    y_pred = tf.cast(logits > 0.0, tf.float32)
    return soft_dice(y_true, y_pred, smooth=1e-6)


def accuracy(y_true, logits):
    """Pixel accuracy of the thresholded prediction, per image (the notebook compared logits with
    labels)."""
    y_pred = tf.cast(logits > 0.0, tf.float32)
    correct = tf.cast(tf.equal(tf.cast(y_true, tf.float32), y_pred), tf.float32)
    return tf.reduce_mean(correct, axis=tf.range(1, tf.rank(correct)))
