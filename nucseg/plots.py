"""PNG figures read from saved histories, metrics and predictions (no CDN, unlike dvc plots)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .io import atomic_path  # noqa: E402

COLORS = {"otsu": "tab:gray", "unet": "tab:blue"}


def _save(fig, path):
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, bbox_inches="tight", format="png")
    plt.close(fig)


def training_curves(history, path):
    """Loss and Dice per epoch, train and validation, from a history table; where it has a
    ``phase`` column, a line where fine-tuning (phase two) starts."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    labels = {"loss": "loss (training objective)", "dice": "Dice, thresholded, mean per window"}
    for ax, key in zip(axes, ("loss", "dice")):
        ax.plot(history["epoch"], history[key], label=f"train {key}")
        ax.plot(history["epoch"], history[f"val_{key}"], label=f"val {key}")
        best = history["val_loss"].idxmin()
        ax.axvline(history["epoch"][best], color="k", ls=":", lw=1, label="best checkpoint")
        if "phase" in history and (history["phase"] == 2).any():
            start = history["epoch"][history["phase"] == 2].iloc[0]
            ax.axvline(start - 0.5, color="tab:gray", ls="--", lw=1, label="fine-tuning starts")
        ax.set_xlabel("epoch")
        ax.set_ylabel(labels[key])
        ax.set_title(key)
        ax.legend(fontsize=8)
    _save(fig, path)


PANELS = {
    "mean": ("pixels at img_size, mean per image", ["precision", "recall", "dice", "iou"]),
    "pooled": ("pixels at img_size, pooled", ["precision", "recall", "dice", "iou"]),
    "native": ("pixels at native size, mean per image", ["precision", "recall", "dice", "iou"]),
    "instance": ("nuclei at native size", ["dsb", "f1_iou50"]),
}


def metric_bars(summary, path, title="test split"):
    """Bars of each metric per method, one panel per way of scoring found in `summary`
    (``mean``, ``pooled``, and where present ``native`` and ``instance``)."""
    methods = list(summary)
    panels = [k for k in PANELS if k in summary[methods[0]]]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.8), sharey=True, squeeze=False)
    width = 0.8 / len(methods)
    for ax, panel in zip(axes[0], panels):
        label, metrics = PANELS[panel]
        for i, method in enumerate(methods):
            values = [summary[method][panel][m] for m in metrics]
            xs = [j + (i - (len(methods) - 1) / 2) * width for j in range(len(metrics))]
            bars = ax.bar(xs, values, width, label=method, color=COLORS.get(method))
            ax.bar_label(bars, fmt="%.3f", fontsize=7)
        ax.set_xticks(range(len(metrics)), metrics)
        ax.set_ylim(0, 1.08)
        ax.set_title(label, fontsize=10)
    axes[0, 0].set_ylabel("score (1 = perfect)")
    # beside the panels, where no bar is under it
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.suptitle(title)
    _save(fig, path)


MODALITY_COLORS = {"fluorescence": "tab:green", "histology": "tab:purple", "brightfield": "tab:orange"}


def otsu_vs_unet(wide, path, metrics=(("native_dice", "Dice at native resolution"), ("dsb", "DSB score"))):
    """One point per image, Otsu's score across and the U-Net's up, coloured by modality: above
    the diagonal the U-Net scores higher. `wide`: `nucseg.evaluate.side_by_side`'s table."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.6 * len(metrics), 4.4), squeeze=False)
    for ax, (metric, label) in zip(axes[0], metrics):
        otsu, unet = wide[f"otsu_{metric}"], wide[f"unet_{metric}"]
        for modality, rows in wide.groupby("modality", sort=False):
            ax.scatter(otsu[rows.index], unet[rows.index], s=18, alpha=0.8, label=f"{modality} ({len(rows)})",
                       color=MODALITY_COLORS.get(modality))
        ax.plot([0, 1], [0, 1], color="k", lw=0.8, ls=":")
        ax.set_xlim(0, 1.02)
        ax.set_ylim(0, 1.02)
        ax.set_aspect("equal")
        ax.set_xlabel(f"Otsu, {label}")
        ax.set_ylabel(f"U-Net, {label}")
        ax.set_title(f"U-Net higher on {int((unet > otsu).sum())} of {len(wide)} images", fontsize=10)
        ax.legend(fontsize=8, loc="lower right")
    _save(fig, path)


def gallery(images, columns, path, titles=None):
    """A grid: one row per image, the image then each named mask column.

    Parameters
    ----------
    images : list of (H, W) arrays
    columns : dict of column name -> list of (H, W) masks, one per image
    titles : optional list of row labels
    """
    n, cols = len(images), 1 + len(columns)
    fig, axes = plt.subplots(n, cols, figsize=(2.2 * cols, 2.2 * n), squeeze=False)
    for r in range(n):
        axes[r, 0].imshow(images[r], cmap="gray", vmin=0, vmax=1)
        axes[r, 0].set_ylabel(titles[r] if titles else "", fontsize=7)
        for c, (name, masks) in enumerate(columns.items(), start=1):
            axes[r, c].imshow(masks[r], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            if r == 0:
                axes[r, c].set_title(name, fontsize=9)
        if r == 0:
            axes[r, 0].set_title("image", fontsize=9)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    _save(fig, path)


def severity_curves(rows, name, path, metrics=("dice", "dsb")):
    """Score against severity for one degradation, one line per method (and per metric)."""
    metrics = [m for m in metrics if m in rows[0]["unet"]]
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.6), squeeze=False)
    levels = range(len(rows))
    for ax, metric in zip(axes[0], metrics):
        for method in ("otsu", "unet"):
            ax.plot(levels, [r[method][metric] for r in rows], "o-", label=method, color=COLORS[method])
        ax.set_xticks(list(levels), [f"{r['severity']:g}" for r in rows])
        ax.set_xlabel(f"severity ({rows[0]['severity']:g}: none)")   # the first level is the undamaged image
        ax.set_ylabel(metric)
        ax.set_ylim(0, 1)
        ax.set_title(f"{name}: {metric}")
        ax.legend()
    _save(fig, path)


def augmentation_gallery(image, mask, settings, path, seed=0):
    """One augmentation at several strengths, in a row, the mask below where geometry changes.

    Parameters
    ----------
    image, mask : (H, W) arrays
    settings : list of (label, transform)
        `transform`: a dict of `nucseg.augment.augment` keyword arguments (drawn with seed
        ``[seed, panel]``), or a function of the (H, W, 1) image and mask tensors returning the
        pair (a fixed strength, where `augment` would draw one).
    """
    import tensorflow as tf

    from .augment import augment

    geometric = any(isinstance(kw, dict) and ("shift" in kw or "flip" in kw) for _, kw in settings)
    rows = 2 if geometric else 1
    fig, axes = plt.subplots(rows, len(settings) + 1, figsize=(2.2 * (len(settings) + 1), 2.3 * rows), squeeze=False)
    panels = [("original", image, mask)]
    pair = image[..., None].astype("float32"), mask[..., None].astype("float32")
    for i, (label, transform) in enumerate(settings):
        if isinstance(transform, dict):
            out, out_mask = augment(*pair, tf.constant([seed, i]), **transform)
        else:
            out, out_mask = transform(*(tf.constant(a) for a in pair))
        panels.append((label, np.asarray(out)[..., 0], np.asarray(out_mask)[..., 0]))
    for c, (label, im, m) in enumerate(panels):
        axes[0, c].imshow(im, cmap="gray", vmin=0, vmax=1)
        axes[0, c].set_title(label, fontsize=8)
        if geometric:
            axes[1, c].imshow(m, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        for ax in axes[:, c]:
            ax.set_xticks([])
            ax.set_yticks([])
    _save(fig, path)


def study_bars(table, path, title="study"):
    """Test precision, recall and Dice per setting of a study, Otsu's Dice as a line."""
    metrics = ["precision", "recall", "dice"]
    n = len(table)
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * n + 2), 4))
    width = 0.8 / len(metrics)
    for i, metric in enumerate(metrics):
        xs = [j + (i - 1) * width for j in range(n)]
        bars = ax.bar(xs, table[metric], width, label=f"U-Net {metric}")
        ax.bar_label(bars, fmt="%.3f", fontsize=6, rotation=90, padding=2)
    ax.axhline(table["otsu_dice"].mean(), color=COLORS["otsu"], ls="--", label="Otsu Dice")
    ax.set_xticks(range(n), table["setting"], rotation=30, ha="right", fontsize=8)
    # settings often differ by a hundredth: start the axis near the lowest value, not at zero
    low = min(table[metrics].min().min(), table["otsu_dice"].min())
    bottom = max(0.0, np.floor(low * 20) / 20 - 0.05)
    ax.set_ylim(bottom, 1 + 0.15 * (1 - bottom))   # room for the labels above bars near 1
    ax.set_ylabel("test split, mean per image (axis does not start at 0)", fontsize=7)
    ax.set_title(title)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))   # beside the bars, not over them
    _save(fig, path)
