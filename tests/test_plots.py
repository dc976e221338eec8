import numpy as np
import pandas as pd
from PIL import Image

from nucseg.plots import gallery, metric_bars, training_curves


def _is_png(path, min_size=(200, 200)):
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size[0] >= min_size[0] and img.size[1] >= min_size[1]


def test_training_curves(tmp_path):
    history = pd.DataFrame({"epoch": [1, 2, 3], "loss": [1, 0.5, 0.4], "val_loss": [1.1, 0.6, 0.65],
                            "dice": [0.3, 0.6, 0.7], "val_dice": [0.3, 0.55, 0.6]})
    training_curves(history, tmp_path / "c.png")
    _is_png(tmp_path / "c.png")


def test_metric_bars_with_and_without_instance_panels(tmp_path):
    pixel = {"precision": 0.8, "recall": 0.7, "dice": 0.75, "iou": 0.6}
    summary = {m: {"mean": pixel, "pooled": pixel} for m in ("otsu", "unet")}
    metric_bars(summary, tmp_path / "a.png")
    for m in summary:
        summary[m] |= {"native": pixel, "instance": {"dsb": 0.4, "f1_iou50": 0.6, "count_mae": 3}}
    metric_bars(summary, tmp_path / "b.png")
    with Image.open(tmp_path / "a.png") as a, Image.open(tmp_path / "b.png") as b:
        assert b.size[0] > a.size[0]   # two more panels


def test_gallery(tmp_path):
    images = [np.random.default_rng(i).random((16, 16)) for i in range(3)]
    masks = [im > 0.5 for im in images]
    gallery(images, {"truth": masks, "pred": masks}, tmp_path / "g.png", titles=["a", "b", "c"])
    _is_png(tmp_path / "g.png")
