"""Predicting with a trained model and scoring methods side by side."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .metrics import METRICS, pixel_metrics


def load_model(path):
    """A saved U-Net, uncompiled (for inference only)."""
    import keras

    return keras.models.load_model(path, compile=False)


def predict_probs(model, images, batch_size=32):
    """Nucleus probabilities (N, H, W) float32 for grayscale images (N, H, W) in [0, 1]."""
    import tensorflow as tf

    logits = model.predict(np.asarray(images, dtype=np.float32)[..., None], batch_size=batch_size, verbose=0)
    return tf.sigmoid(logits).numpy()[..., 0].astype(np.float32)


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


def pick_gallery(per_image, n=6, method="unet"):
    """Ids spread evenly from the worst to the best image of `method` by Dice."""
    ranked = per_image[per_image["method"] == method].sort_values("dice")["id"].tolist()
    if n >= len(ranked):
        return ranked
    return [ranked[i] for i in np.linspace(0, len(ranked) - 1, n).round().astype(int)]
