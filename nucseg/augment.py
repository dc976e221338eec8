"""Training augmentation: one entry point transforming image and mask together.

Every random draw is a stateless op keyed by a per-example seed, so each image gets its own
transform at every step (the notebook's blur always hit the first image) and a run is
repeatable for a given seed.
"""
from __future__ import annotations

import math

import numpy as np
import tensorflow as tf


def gaussian_kernel(sigma, radius):
    """A normalised 2-D Gaussian of standard deviation `sigma` (a tensor) on a fixed grid."""
    x = tf.range(-radius, radius + 1, dtype=tf.float32)
    g = tf.exp(-0.5 * tf.square(x / tf.maximum(sigma, 1e-3)))
    g = g / tf.reduce_sum(g)
    return tf.tensordot(g, g, axes=0)


def blur(image, sigma, max_sigma):
    """Gaussian blur of an (H, W, 1) image, reflecting at the borders."""
    radius = max(1, math.ceil(3 * max_sigma))
    kernel = gaussian_kernel(sigma, radius)[:, :, None, None]
    padded = tf.pad(image[None], [[0, 0], [radius, radius], [radius, radius], [0, 0]], mode="REFLECT")
    return tf.nn.conv2d(padded, kernel, strides=1, padding="VALID")[0]


def _degrade_op(image, choices, index, seed, normalization="percentile"):
    """The robustness degradations (numpy) inside tf.data, for one (H, W, 1) image."""
    from .degrade import degrade

    def apply(img, i, s):
        name, severity = choices[int(i)]
        return degrade(img[..., 0], name, severity, seed=int(s), method=normalization)[..., None].astype(np.float32)

    out = tf.numpy_function(apply, [image, index, seed], tf.float32, stateful=False)
    out.set_shape(image.shape)
    return out


def degrade_choices(levels, holdout=0, exclude=()):
    """The (name, severity) pairs that training draws from, in a fixed order (a seed picks by index).

    Parameters
    ----------
    levels : dict name -> severities, the first of each list being no damage (skipped)
    holdout : int
        Each degradation's worst `holdout` severities left out.
    exclude : sequence of str
        Degradations left out altogether.

    Returns
    -------
    list of (str, float), sorted by name, each name's severities in their order
    """
    if isinstance(exclude, str):
        raise TypeError(f"degrade_exclude must be a sequence of names, not the string {exclude!r}")
    return [(name, float(s)) for name in sorted(set(levels) - set(exclude))
            for s in levels[name][1:len(levels[name]) - holdout]]


def augment(image, mask, seed, brightness=(0.0, 0.0), contrast=(1.0, 1.0), shift=0.0,
            blur_sigma=0.0, flip=False, degrade=0.0, degrade_levels=None, degrade_holdout=0,
            degrade_exclude=(), normalization="percentile"):
    """Randomly transform one (image, mask) pair.

    Parameters
    ----------
    image : Tensor (H, W, 1), float in [0, 1]
    mask : Tensor (H, W, 1), 0/1
    seed : Tensor of shape (2,), int
        Seed of this example's draws.
    brightness : (low, high)
        An offset drawn from this range is added to the image.
    contrast : (low, high)
        The image's deviation from its mean is scaled by a factor drawn from this range.
    shift : float
        Translation by up to this fraction of the size, in each axis, borders reflected;
        the mask moves with the image.
    blur_sigma : float
        Gaussian blur with a standard deviation drawn from [0, blur_sigma] pixels.
    flip : bool
        Random horizontal and vertical flips of image and mask.
    degrade : float
        Probability of also applying one of the robustness degradations (`nucseg.degrade`),
        drawn uniformly among the (name, severity) pairs of `degrade_levels` (severity "none",
        the first of each list, excluded).
    degrade_levels : dict name -> severities
    degrade_holdout : int
        The number of each degradation's worst severities never drawn, so that scoring at them
        (the robustness stage) measures strengths the model has not seen.
    degrade_exclude : sequence of str
        Degradations never drawn at all, so that scoring them measures kinds of damage the
        model has not seen.
    normalization : str
        How a degraded image is normalised again (`ingest.normalization`), as ingest would.

    Returns
    -------
    image, mask : the transformed pair, image clipped to [0, 1]
    """
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 9)
    size = tf.shape(image)[:2]
    pair = tf.concat([image, tf.cast(mask, image.dtype)], axis=-1)
    if flip:
        pair = tf.image.stateless_random_flip_left_right(pair, seeds[0])
        pair = tf.image.stateless_random_flip_up_down(pair, seeds[1])
    if shift > 0:
        pad = max(1, round(shift * int(image.shape[0])))
        padded = tf.pad(pair, [[pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
        pair = tf.image.stateless_random_crop(padded, tf.concat([size, [2]], 0), seeds[2])
    image, mask = pair[..., :1], pair[..., 1:]
    if brightness[1] > brightness[0] or brightness[0] != 0:
        image = image + tf.random.stateless_uniform([], seeds[3], brightness[0], brightness[1])
    if contrast[1] > contrast[0] or contrast[0] != 1:
        factor = tf.random.stateless_uniform([], seeds[4], contrast[0], contrast[1])
        mean = tf.reduce_mean(image)
        image = (image - mean) * factor + mean
    if blur_sigma > 0:
        image = blur(image, tf.random.stateless_uniform([], seeds[5], 0.0, blur_sigma), blur_sigma)
    image = tf.clip_by_value(image, 0.0, 1.0)
    choices = degrade_choices(degrade_levels or {}, degrade_holdout, degrade_exclude) if degrade > 0 else []
    if choices:
        index = tf.random.stateless_uniform([], seeds[6], 0, len(choices), dtype=tf.int32)
        op_seed = tf.random.stateless_uniform([], seeds[7], 0, 2**31 - 1, dtype=tf.int64)
        apply = tf.random.stateless_uniform([], seeds[8]) < degrade
        image = tf.cond(apply, lambda: _degrade_op(image, choices, index, op_seed, normalization), lambda: image)
    return image, mask
