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


def params_at_scale(instance_params, scale):
    """`nucseg.instances.instances` params given in native pixels, for images resized by `scale`:
    areas by its square, distances by it."""
    return {**instance_params, "min_size": round(instance_params["min_size"] * scale ** 2),
            "split_depth": instance_params["split_depth"] * scale, "smooth": instance_params["smooth"] * scale}


def robustness(predict, images, masks, labels, degradations, threshold=0.5, invert_above=0.5,
               instance_params=None, seed=0, example=0, normalization="percentile"):
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
    normalization : str
        How each degraded image is normalised again (`nucseg.degrade.degrade`), as ingest would.

    Returns
    -------
    results : dict name -> list of {"severity", "unet": {...}, "otsu": {...}} (mean dice, and dsb)
    examples : dict name -> (degraded image, truth, Otsu mask, U-Net mask) at the worst severity
    per_image : dict name -> list, per severity, of {method: {"dice": [...], "dsb": [...]}}, one
        value per image (for paired comparisons, `worst_case_table`)
    """
    results, examples, per_image = {}, {}, {}
    scored = {}   # images already scored, by content: every degradation's clean level is the same
    for name, severities in degradations.items():
        results[name], per_image[name] = [], []
        for level, severity in enumerate(severities):
            degraded = [degrade(im, name, severity, seed=seed * 1_000_003 + i, method=normalization)
                        for i, im in enumerate(images)]
            key = hashlib.blake2b(b"".join(d.tobytes() for d in degraded)).digest()
            if key not in scored:
                scored[key] = _score(degraded, predict, masks, labels, threshold, invert_above, instance_params,
                                     example)
            row, each, (otsu_example, unet_example) = scored[key]
            results[name].append({"severity": float(severity), **row})
            per_image[name].append(each)
            if level == len(severities) - 1:
                examples[name] = (degraded[example], masks[example], otsu_example, unet_example)
    return results, examples, per_image


def _score(degraded, predict, masks, labels, threshold, invert_above, instance_params, example):
    """Both methods' mean Dice (and DSB score) on `degraded` against the truth, the same per image,
    and their masks of image `example`."""
    preds = {"otsu": [otsu_segment(im, invert_above) for im in degraded],
             "unet": [(p > threshold).astype(np.uint8) for p in predict(degraded)]}
    row, each = {}, {}
    for method, pred in preds.items():
        counts = np.array([confusion(t, p) for t, p in zip(masks, pred)])
        dice = scores(*counts.T)["dice"]
        row[method], each[method] = {"dice": float(np.mean(dice))}, {"dice": [float(d) for d in dice]}
        if labels is not None:
            inst, rows = instance_metrics(labels, [instances(p, **(instance_params or {})) for p in pred])
            row[method]["dsb"], each[method]["dsb"] = inst["dsb"], [float(r["dsb"]) for r in rows]
    return row, each, (preds["otsu"][example], preds["unet"][example])


def paired_interval(a, b, seed=0, resamples=10_000, level=0.95):
    """Percentile bootstrap interval of mean(a - b) over paired per-image scores: images drawn
    with replacement, `resamples` times."""
    diff = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    draws = np.random.default_rng(seed).integers(0, len(diff), size=(resamples, len(diff)))
    means = diff[draws].mean(axis=1)
    tail = (1 - level) / 2 * 100
    return [float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))]


def worst_case_table(results, per_image=None, seed=0):
    """Per degradation, both methods' Dice at the worst severity and the U-Net's margin; with
    `per_image`, the margin's 95% interval (paired bootstrap over the images) and on how many
    images Otsu scores higher."""
    table = {}
    for name, rows in results.items():
        worst = rows[-1]
        table[name] = {"severity": worst["severity"], "unet_dice": worst["unet"]["dice"],
                       "otsu_dice": worst["otsu"]["dice"],
                       "margin": worst["unet"]["dice"] - worst["otsu"]["dice"]}
        if per_image is not None:
            unet, otsu = per_image[name][-1]["unet"]["dice"], per_image[name][-1]["otsu"]["dice"]
            table[name]["margin_ci95_low"], table[name]["margin_ci95_high"] = paired_interval(unet, otsu, seed)
            table[name]["otsu_better"] = int(np.sum(np.asarray(otsu) > np.asarray(unet)))
    return table


def curve_rows(results):
    """The severity curves as a table for `dvc plots` (one panel per degradation, the top-level
    plot `robustness_dice`): a row per degradation, level (0 the undamaged images, then the
    severities in order, so that Poisson noise's falling photon counts read left to right as
    worse), method, with the severity and the mean Dice and DSB."""
    return [{"degradation": name, "level": level, "severity": row["severity"], "method": method,
             "dice": row[method]["dice"], "dsb": row[method]["dsb"]}
            for name, rows in results.items() for level, row in enumerate(rows) for method in ("unet", "otsu")]


def as_metrics(results, table, n_images):
    """The robustness stage's metrics file: the worst-case table and every severity's scores.

    Severities are keys (``curves.blur.3.unet.dice``) rather than list items, and the interval
    two numbers rather than a pair, because `dvc metrics show/diff` and `dvc exp show` read
    numbers in nested objects and skip lists."""
    curves = {}
    for name, rows in results.items():
        keys = [f"{row['severity']:g}" for row in rows]
        if len(set(keys)) < len(keys):
            raise ValueError(f"{name}: severities {keys} repeat a value")
        curves[name] = {key: {method: row[method] for method in ("otsu", "unet")} for key, row in zip(keys, rows)}
    return {"n_images": n_images, "worst": table, "curves": curves}
