"""Pixel metrics for binary masks, as pure numpy functions with (y_true, y_pred) order.

Conventions for empty masks: a ratio whose numerator and denominator are both zero is 1 when
truth and prediction are both empty (nothing to find, nothing found) and 0 otherwise.
"""
from __future__ import annotations

import numpy as np

METRICS = ("precision", "recall", "dice", "iou")


def confusion(y_true, y_pred):
    """True positives, false positives and false negatives per image.

    Parameters
    ----------
    y_true, y_pred : array_like, shape (H, W) or (N, H, W)
        Binary masks (nonzero is foreground).

    Returns
    -------
    tp, fp, fn : ndarray of int64, shape () or (N,)
    """
    t = np.asarray(y_true) > 0
    p = np.asarray(y_pred) > 0
    if t.shape != p.shape:
        raise ValueError(f"mask shapes differ: {t.shape} vs {p.shape}")
    axes = (-2, -1)
    tp = np.sum(t & p, axis=axes, dtype=np.int64)
    fp = np.sum(~t & p, axis=axes, dtype=np.int64)
    fn = np.sum(t & ~p, axis=axes, dtype=np.int64)
    return tp, fp, fn


def _ratio(num, den, both_empty):
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    out = np.where(both_empty, 1.0, 0.0)
    return np.divide(num, den, out=out, where=den > 0)


def scores(tp, fp, fn):
    """Precision, recall, Dice and IoU from confusion counts (scalars or arrays)."""
    both_empty = (np.asarray(tp) + np.asarray(fp) + np.asarray(fn)) == 0
    return {
        "precision": _ratio(tp, tp + fp, both_empty),
        "recall": _ratio(tp, tp + fn, both_empty),
        "dice": _ratio(2 * tp, 2 * tp + fp + fn, both_empty),
        "iou": _ratio(tp, tp + fp + fn, both_empty),
    }


def pixel_metrics(y_true, y_pred):
    """Scores of a stack of predictions, both ways of averaging.

    Returns
    -------
    summary : dict
        ``{"mean": {...}, "pooled": {...}}``: ``mean`` averages each image's score (every image
        counts the same); ``pooled`` scores all pixels of all images at once (large nuclei and
        large images weigh more).
    per_image : dict of ndarray
        Each metric per image, shape (N,).
    """
    tp, fp, fn = confusion(y_true, y_pred)
    per_image = scores(tp, fp, fn)
    pooled = scores(tp.sum(), fp.sum(), fn.sum())
    summary = {
        "mean": {k: float(np.mean(v)) for k, v in per_image.items()},
        "pooled": {k: float(v) for k, v in pooled.items()},
    }
    return summary, per_image
