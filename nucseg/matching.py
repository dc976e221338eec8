"""Instance metrics: matching predicted nuclei to true ones by IoU (pure numpy).

The Data Science Bowl score: for each IoU threshold t in 0.5, 0.55, ..., 0.95, a predicted
nucleus matches a true one when their IoU is above t (above 0.5 a match is necessarily one to
one); the image's score at t is TP / (TP + FP + FN); the image's DSB score is the mean over t.
"""
from __future__ import annotations

import numpy as np
from skimage.segmentation import relabel_sequential

THRESHOLDS = np.round(np.arange(0.5, 1.0, 0.05), 2)


def iou_matrix(y_true, y_pred):
    """IoU of every true nucleus (rows) with every predicted one (columns)."""
    t = relabel_sequential(np.asarray(y_true).astype(np.int64))[0].ravel()
    p = relabel_sequential(np.asarray(y_pred).astype(np.int64))[0].ravel()
    if t.shape != p.shape:
        raise ValueError(f"label image shapes differ: {np.shape(y_true)} vs {np.shape(y_pred)}")
    n_t, n_p = int(t.max()), int(p.max())
    overlap = np.bincount(t * (n_p + 1) + p, minlength=(n_t + 1) * (n_p + 1)).reshape(n_t + 1, n_p + 1)
    area_t, area_p = overlap.sum(1)[1:], overlap.sum(0)[1:]
    inter = overlap[1:, 1:].astype(np.float64)
    union = area_t[:, None] + area_p[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def match(y_true, y_pred, thresholds=THRESHOLDS):
    """Instance scores of one image.

    Returns
    -------
    dict
        ``dsb`` (mean over thresholds of TP/(TP+FP+FN)), ``f1`` at IoU 0.5, ``n_true``,
        ``n_pred``, ``count_error`` (absolute), and ``tp`` per threshold. An image with no true and
        no predicted nuclei scores 1.
    """
    iou = iou_matrix(y_true, y_pred)
    n_true, n_pred = iou.shape
    tp = np.array([(iou > t).sum() for t in thresholds], dtype=np.int64)
    fp, fn = n_pred - tp, n_true - tp
    denom = tp + fp + fn
    per_t = np.divide(tp, denom, out=np.ones(len(thresholds)), where=denom > 0)
    tp50 = (iou > 0.5).sum()
    f1_den = 2 * tp50 + (n_pred - tp50) + (n_true - tp50)
    return {
        "dsb": float(per_t.mean()),
        "f1": float(2 * tp50 / f1_den) if f1_den else 1.0,
        "n_true": int(n_true),
        "n_pred": int(n_pred),
        "count_error": int(abs(n_pred - n_true)),
        "tp": tp.tolist(),
    }


def instance_metrics(truths, predictions):
    """`match` over a list of images; returns the means and the per-image rows."""
    rows = [match(t, p) for t, p in zip(truths, predictions)]
    summary = {
        "dsb": float(np.mean([r["dsb"] for r in rows])),
        "f1_iou50": float(np.mean([r["f1"] for r in rows])),
        "count_mae": float(np.mean([r["count_error"] for r in rows])),
    }
    return summary, rows
