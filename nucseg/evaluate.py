"""Predicting with a trained model and scoring methods side by side."""
from __future__ import annotations

import errno
import weakref
from pathlib import Path

import numpy as np
import pandas as pd

from .io import NucsegError
from .metrics import METRICS, confusion, pixel_metrics, scores


def load_model(path, fix=None):
    """A saved U-Net for inference: a ``.tflite`` file (`nucseg.lite`, the fast way on a CPU)
    or a Keras model (uncompiled). With `fix` (what to do about it), a file that is there but
    does not load raises `NucsegError` naming it, why, and the fix."""
    if not Path(path).is_file():
        raise FileNotFoundError(errno.ENOENT, "no such file", str(path))
    try:
        if str(path).endswith(".tflite"):
            from .lite import LiteModel

            return LiteModel.load(path)
        import keras

        return keras.models.load_model(path, compile=False)
    except Exception as exc:   # Keras and LiteRT raise many types for a damaged file
        if fix is None or isinstance(exc, NucsegError):
            raise
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise NucsegError(f"{path}: not a readable model ({reason}); {fix}") from None


FLIPS = ((), (1,), (2,), (1, 2))   # identity, up-down, left-right, both (axes of (N, H, W))
_FORWARD = weakref.WeakKeyDictionary()


def forward(model):
    """The model's probabilities as a function of a numpy batch (N, H, W, 1), returning numpy.

    A `nucseg.lite.LiteModel` is such a function already. For a Keras model, a graph compiled
    once per model (traced for any batch size): Keras' `model.predict` costs tens of
    milliseconds per call before any work, which dominates when images are predicted one at a
    time, as at native resolution.
    """
    from .lite import LiteModel

    if isinstance(model, LiteModel):
        return model
    if model not in _FORWARD:
        import tensorflow as tf

        @tf.function(input_signature=[tf.TensorSpec([None, *model.input_shape[1:]], tf.float32)])
        def probabilities(x):
            return tf.sigmoid(model(x, training=False))

        _FORWARD[model] = lambda x: probabilities(x).numpy()
    return _FORWARD[model]


def predict_probs(model, images, batch_size=32, tta=False):
    """Nucleus probabilities (N, H, W) float32 for grayscale images (N, H, W) in [0, 1].

    With `tta`, the probabilities are averaged over the four flips of each image (test-time
    augmentation: four times the compute, smoother and usually slightly better masks).
    """
    images = np.asarray(images, dtype=np.float32)
    probabilities = forward(model)
    total = np.zeros(images.shape, np.float32)
    for axes in FLIPS if tta else ((),):
        flipped = np.flip(images, axes) if axes else images
        probs = np.concatenate([probabilities(flipped[i:i + batch_size, ..., None])[..., 0]
                                for i in range(0, len(images), batch_size)] or [total[:0]])
        total += np.flip(probs, axes) if axes else probs
    return total / (len(FLIPS) if tta else 1)


def compare(y_true, predictions, ids):
    """Score several methods' binary masks against the same truth.

    Parameters
    ----------
    y_true : ndarray (N, H, W)
    predictions : dict of method name -> ndarray (N, H, W) binary
    ids : list of str, the N image ids

    Returns
    -------
    summary : dict of method -> {"mean": {...}, "pooled": {...}}
    per_image : DataFrame with columns id, method, and each metric
    """
    summary, frames = {}, []
    for method, y_pred in predictions.items():
        summary[method], per = pixel_metrics(y_true, y_pred)
        frames.append(pd.DataFrame({"id": ids, "method": method, **{m: per[m] for m in METRICS}}))
    return summary, pd.concat(frames, ignore_index=True)


def side_by_side(per_image, labels, metrics=("native_dice", "dsb")):
    """One row per image: its modality and each method's `metrics` as ``<method>_<metric>``.

    The per-image table has a row per image and method; this is its wide form, for plotting one
    method against the other image by image (`dvc plots show`'s scatter plots).

    Parameters
    ----------
    per_image : DataFrame with columns id, method and the metrics
    labels : Series id -> modality
    """
    methods = dict.fromkeys(per_image["method"])   # in their order in the table
    wide = per_image.pivot(index="id", columns="method", values=list(metrics))
    wide.columns = [f"{method}_{metric}" for metric, method in wide.columns]
    wide = wide.reindex(list(dict.fromkeys(per_image["id"])))[[f"{m}_{metric}" for metric in metrics for m in methods]]
    wide.insert(0, "modality", wide.index.map(labels))
    return wide.rename_axis("id").reset_index()


def pick_gallery(per_image, n=6, method="unet"):
    """Ids spread evenly from the worst to the best image of `method` by Dice."""
    ranked = per_image[per_image["method"] == method].sort_values("dice")["id"].tolist()
    if n >= len(ranked):
        return ranked
    return [ranked[i] for i in np.linspace(0, len(ranked) - 1, n).round().astype(int)]


def score_native(truth_labels, pred_labels, ids):
    """Pixel and instance metrics of label images of any sizes, image by image.

    Returns
    -------
    summary : dict with ``pixel`` ({"mean", "pooled"}) and ``instance`` (dsb, f1_iou50, count_mae)
    rows : DataFrame, one row per image: id, pixel metrics, dsb, f1, n_true, n_pred, count_error
    """
    from .matching import instance_metrics

    counts = np.array([confusion(t > 0, p > 0) for t, p in zip(truth_labels, pred_labels)]).reshape(-1, 3)
    per_image = scores(counts[:, 0], counts[:, 1], counts[:, 2])
    pooled = scores(*counts.sum(0))
    instance, inst_rows = instance_metrics(truth_labels, pred_labels)
    summary = {
        "pixel": {"mean": {k: float(np.mean(v)) for k, v in per_image.items()},
                  "pooled": {k: float(v) for k, v in pooled.items()}},
        "instance": instance,
    }
    rows = pd.DataFrame({"id": ids, **per_image,
                         **{k: [r[k] for r in inst_rows] for k in ("dsb", "f1", "n_true", "n_pred", "count_error")}})
    return summary, rows
