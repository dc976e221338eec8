"""Instance metrics: matching predicted nuclei to true ones by IoU (pure numpy).

The Data Science Bowl score: for each IoU threshold t in 0.5, 0.55, ..., 0.95, a predicted
nucleus matches a true one when their IoU is above t (above 0.5 a match is necessarily one to
one); the image's score at t is TP / (TP + FP + FN); the image's DSB score is the mean over t.
"""
from __future__ import annotations

import numpy as np
from skimage.segmentation import relabel_sequential

THRESHOLDS = np.round(np.arange(0.5, 1.0, 0.05), 2)


def overlaps(y_true, y_pred):
    """Every pair of a true and a predicted nucleus that overlap: (rows, cols, ious, n_true, n_pred),
    the pair's true nucleus (0..n_true - 1, in label order), predicted one and IoU. Pairs that do
    not overlap (IoU 0) are left out, so memory grows with the pairs that touch, not with
    n_true x n_pred (40,000 nuclei a side would be a 13 GB table)."""
    if np.shape(y_true) != np.shape(y_pred):
        raise ValueError(f"label image shapes differ: {np.shape(y_true)} vs {np.shape(y_pred)}")
    t = relabel_sequential(np.asarray(y_true).astype(np.int64))[0].ravel()
    p = relabel_sequential(np.asarray(y_pred).astype(np.int64))[0].ravel()
    n_t, n_p = int(t.max(initial=0)), int(p.max(initial=0))
    area_t, area_p = np.bincount(t, minlength=n_t + 1), np.bincount(p, minlength=n_p + 1)
    both = (t > 0) & (p > 0)
    pairs, inter = np.unique(t[both] * (n_p + 1) + p[both], return_counts=True)
    rows, cols = pairs // (n_p + 1), pairs % (n_p + 1)
    return rows - 1, cols - 1, inter / (area_t[rows] + area_p[cols] - inter), n_t, n_p


def iou_matrix(y_true, y_pred):
    """IoU of every true nucleus (rows) with every predicted one (columns): `overlaps` as a table."""
    rows, cols, ious, n_t, n_p = overlaps(y_true, y_pred)
    table = np.zeros((n_t, n_p))
    table[rows, cols] = ious
    return table


def match(y_true, y_pred, thresholds=THRESHOLDS):
    """Instance scores of one image.

    Returns
    -------
    dict
        ``dsb`` (mean over thresholds of TP/(TP+FP+FN)), ``f1`` at IoU 0.5, ``n_true``,
        ``n_pred``, ``count_error`` (absolute), and ``tp`` per threshold. An image with no true and
        no predicted nuclei scores 1.
    """
    _, _, iou, n_true, n_pred = overlaps(y_true, y_pred)
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
