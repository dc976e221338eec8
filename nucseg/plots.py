"""PNG figures read from saved histories, metrics and predictions (no CDN, unlike dvc plots)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .io import atomic_path  # noqa: E402

COLORS = {"otsu": "tab:gray", "unet": "tab:blue"}


def _save(fig, path):
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, bbox_inches="tight", format="png")
    plt.close(fig)


def training_curves(history, path):
    """Loss and Dice per epoch, train and validation, from a history table."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, key in zip(axes, ("loss", "dice")):
        ax.plot(history["epoch"], history[key], label=f"train {key}")
        ax.plot(history["epoch"], history[f"val_{key}"], label=f"val {key}")
        best = history["val_loss"].idxmin()
        ax.axvline(history["epoch"][best], color="k", ls=":", lw=1, label="best checkpoint")
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.legend()
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
    axes[0, 0].legend(loc="lower left")
    fig.suptitle(title)
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
