"""Scoring on any labelled set at native resolution: Kaggle-layout masks or an RLE solution CSV."""
from __future__ import annotations

import sys

import numpy as np
import pandas as pd

from .evaluate import score_native


def truth_from_rle(solution, image_id, shape, name="solution CSV"):
    """The instance label image of `image_id` from an RLE table (ImageId, EncodedPixels[, Height, Width]).

    A bad row raises `NucsegError` naming `name` (the CSV) and the ImageId.
    """
    from .io import NucsegError
    from .rle import rle_decode

    rows = solution[solution["ImageId"] == image_id]
    try:
        if "Height" in rows and "Width" in rows and len(rows):
            shape = (int(rows["Height"].iloc[0]), int(rows["Width"].iloc[0]))
        labels = np.zeros(shape, np.int32)
        for k, rle in enumerate(rows["EncodedPixels"].dropna(), start=1):
            labels[rle_decode(rle, shape) > 0] = k
    except (ValueError, TypeError) as exc:
        raise NucsegError(f"{name}: ImageId {image_id}: {exc}; correct that row (EncodedPixels: 1-based "
                          "column-major 'start length' pairs within Height x Width) or remove it") from None
    return labels


def evaluate_labelled(data, segmenters, solution=None, progress=True):
    """Score segmenters on a labelled set at native resolution.

    Parameters
    ----------
    data : path
        A Kaggle-layout folder or zip. Truth comes from its ``masks/``, or, with `solution`, from
        a run-length CSV (``ImageId, EncodedPixels[, Height, Width]``, as BBBC038's
        ``stage1_solution.csv``); then the images need no masks.
    segmenters : dict of name -> `nucseg.predict.Segmenter`

    Returns
    -------
    summary : dict of name -> score_native summary, plus ``n_images``
    rows : DataFrame of per-image rows with a ``method`` column
    """
    from tqdm import tqdm

    from .io import NucsegError, RawSource
    from .masks import read_labels

    source = RawSource(data, require_masks=solution is None, user_data=True)
    ids = source.ids
    if solution is not None:
        solution_name = str(solution)
        try:
            solution = pd.read_csv(solution, dtype={"ImageId": str})   # "001" stays text
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise NucsegError(f"{solution_name}: not a readable CSV ({str(exc).strip().splitlines()[0]}); expected "
                              "columns ImageId, EncodedPixels[, Height, Width]") from None
        missing = {"ImageId", "EncodedPixels"} - set(solution.columns)
        if missing:
            raise NucsegError(f"{solution_name}: lacks column(s) {', '.join(sorted(missing))}; expected "
                              "ImageId, EncodedPixels[, Height, Width]")
        named = set(solution["ImageId"])
        left_out = [i for i in ids if i not in named]
        ids = [i for i in ids if i in named]
        if not ids:
            raise NucsegError(f"no image of {data} is named in the solution CSV's ImageId column")
        if left_out:
            print(f"note: {len(left_out)} of the {len(ids) + len(left_out)} images have no row in {solution_name} "
                  f"and are not scored (e.g. {left_out[0]})", file=sys.stderr)
    truths, preds = [], {name: [] for name in segmenters}
    for image_id in tqdm(ids, desc="evaluate", unit="img", disable=not progress):
        raw = source.read_image(image_id)
        if solution is not None:
            truth = truth_from_rle(solution, image_id, raw.shape[:2], solution_name)
            if truth.shape != raw.shape[:2]:
                raise NucsegError(f"{solution_name}: ImageId {image_id} is {truth.shape[1]}x{truth.shape[0]} "
                                  f"(Width x Height) but its image is {raw.shape[1]}x{raw.shape[0]}; "
                                  "correct its Height and Width")
            truths.append(truth)
        else:
            truths.append(read_labels(source, image_id))
        for name, seg in segmenters.items():
            preds[name].append(seg.labels(seg.mask(raw)))
    summary, frames = {"n_images": len(ids)}, []
    for name in segmenters:
        summary[name], rows = score_native(truths, preds[name], ids)
        frames.append(rows.assign(method=name))
    return summary, pd.concat(frames, ignore_index=True)
