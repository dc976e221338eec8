"""How the U-Net and Otsu hold up when the test images are degraded."""
from __future__ import annotations

import hashlib

import numpy as np

from .degrade import degrade
from .instances import instances
from .matching import instance_metrics
from .metrics import confusion, scores
from .otsu import otsu_segment


def labels_at(labels, size):
    """Nearest-neighbour resize of an instance label image to `size`: an int for (size, size),
    or (height, width)."""
    from PIL import Image

    height, width = (size, size) if np.isscalar(size) else size
    return np.asarray(Image.fromarray(labels.astype(np.int32), mode="I").resize((width, height), Image.NEAREST))


def robustness(predict, images, masks, labels, degradations, threshold=0.5, invert_above=0.5,
               instance_params=None, seed=0, example=0):
    """Score both methods on degraded copies of `images` at every severity.

    Parameters
    ----------
    predict : callable
        A list of images -> their U-Net probabilities, each of its image's shape.
    images, masks : sequences of (H, W) arrays (each pair of one shape; shapes may differ)
        Test images in [0, 1] and their binary masks.
    labels : list of (H, W) instance label images at the same sizes, or None (no DSB score).
    degradations : dict name -> severities, from none to worst (names of `nucseg.degrade.DEGRADATIONS`).
    example : int
        Index of the image kept, at each degradation's worst severity, for a gallery.

    Returns
    -------
    results : dict name -> list of {"severity", "unet": {...}, "otsu": {...}} (dice, and dsb)
    examples : dict name -> (degraded image, truth, Otsu mask, U-Net mask) at the worst severity
    """
    results, examples = {}, {}
    scored = {}   # images already scored, by content: every degradation's clean level is the same
    for name, severities in degradations.items():
        results[name] = []
        for level, severity in enumerate(severities):
            degraded = [degrade(im, name, severity, seed=seed * 1_000_003 + i) for i, im in enumerate(images)]
            key = hashlib.blake2b(b"".join(d.tobytes() for d in degraded)).digest()
            if key not in scored:
                scored[key] = _score(degraded, predict, masks, labels, threshold, invert_above, instance_params,
                                     example)
            row, (otsu_example, unet_example) = scored[key]
            results[name].append({"severity": float(severity), **row})
            if level == len(severities) - 1:
                examples[name] = (degraded[example], masks[example], otsu_example, unet_example)
    return results, examples


def _score(degraded, predict, masks, labels, threshold, invert_above, instance_params, example):
    """Both methods' Dice (and DSB score) on `degraded` against the truth, and their masks of
    image `example`."""
    preds = {"otsu": [otsu_segment(im, invert_above) for im in degraded],
             "unet": [(p > threshold).astype(np.uint8) for p in predict(degraded)]}
    row = {}
    for method, pred in preds.items():
        counts = np.array([confusion(t, p) for t, p in zip(masks, pred)])
        row[method] = {"dice": float(np.mean(scores(*counts.T)["dice"]))}
        if labels is not None:
            inst, _ = instance_metrics(labels, [instances(p, **(instance_params or {})) for p in pred])
            row[method]["dsb"] = inst["dsb"]
    return row, (preds["otsu"][example], preds["unet"][example])


def worst_case_table(results):
    """Per degradation, both methods' Dice at the worst severity and the U-Net's margin."""
    table = {}
    for name, rows in results.items():
        worst = rows[-1]
        table[name] = {"severity": worst["severity"], "unet_dice": worst["unet"]["dice"],
                       "otsu_dice": worst["otsu"]["dice"],
                       "margin": worst["unet"]["dice"] - worst["otsu"]["dice"]}
    return table
