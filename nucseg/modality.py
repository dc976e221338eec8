"""Telling the DSB2018 imaging modalities apart, by a simple colour/intensity rule.

- **histology**: the RGB channels differ (stained tissue: `color` in ingest's meta.csv);
- **brightfield**: gray, and the mean gray value of the raw image is above `bright` (nuclei dark
  on a light background);
- **fluorescence**: gray and dark on average (bright nuclei on black).
"""
from __future__ import annotations

import numpy as np
import pandas as pd


MODALITIES = ("brightfield", "fluorescence", "histology")   # what `modality` returns


def modality(color, mean, bright=0.5):
    """The modality of one image from its colour flag and mean gray value in [0, 1]."""
    if color:
        return "histology"
    return "brightfield" if mean > bright else "fluorescence"


def modalities(meta, bright=0.5):
    """A Series id -> modality for ingest's meta table (columns id, color, mean)."""
    return pd.Series([modality(c, m, bright) for c, m in zip(meta["color"], meta["mean"])], index=meta["id"])


def by_modality(per_image, labels, metrics=("dice", "native_dice", "dsb")):
    """Mean of each metric per method and modality, with the image counts.

    Every modality of `MODALITIES` has an entry, one with no image a count of 0 and None for its
    means (null in the metrics file), so that the metrics' keys stay the same whatever the split
    holds and `dvc metrics diff` compares like with like.

    Parameters
    ----------
    per_image : DataFrame with columns id, method and the metrics
    labels : Series id -> modality
    """
    table = per_image.assign(modality=per_image["id"].map(labels))
    present = [m for m in metrics if m in table]
    out = {}
    for method, rows in table.groupby("method", sort=False):
        groups = dict(list(rows.groupby("modality")))
        out[method] = {
            mod: {"n_images": int(len(groups[mod])), **{m: float(np.mean(groups[mod][m])) for m in present}}
            if mod in groups else {"n_images": 0, **dict.fromkeys(present)}
            for mod in sorted(set(MODALITIES) | set(groups))}
    return out
