import numpy as np
import pandas as pd
import pytest
from PIL import Image

from nucseg.plots import PANELS, gallery, metric_bars, otsu_vs_unet, severity_curves, training_curves


def _is_png(path, min_size=(200, 200)):
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size[0] >= min_size[0] and img.size[1] >= min_size[1]


@pytest.fixture
def saved(monkeypatch):
    """What each figure holds when it is saved: its axes, by the file's stem."""
    import nucseg.plots

    figures = {}
    real_save = nucseg.plots._save

    def keep(fig, path):
        figures[path.stem] = fig.axes
        real_save(fig, path)

    monkeypatch.setattr(nucseg.plots, "_save", keep)
    return figures


def test_training_curves(tmp_path, saved):
    history = pd.DataFrame({"epoch": [1, 2, 3], "loss": [1, 0.5, 0.4], "val_loss": [1.1, 0.6, 0.65],
                            "dice": [0.3, 0.6, 0.7], "val_dice": [0.3, 0.55, 0.6]})
    training_curves(history, tmp_path / "c.png")
    _is_png(tmp_path / "c.png")
    for ax, key in zip(saved["c"], ("loss", "dice")):
        train, val, best = ax.lines
        assert ax.get_title() == key and list(train.get_ydata()) == list(history[key])
        assert list(val.get_ydata()) == list(history[f"val_{key}"])
        assert list(best.get_xdata()) == [2, 2]   # the lowest val_loss, in both panels
        assert ax.get_ylabel()
    # two phases: a line between the last epoch of the first and the first of the second
    training_curves(history.assign(phase=[1, 1, 2]), tmp_path / "p.png")
    for ax in saved["p"]:
        assert list(ax.lines[3].get_xdata()) == [2.5, 2.5] and ax.lines[3].get_label() == "fine-tuning starts"


def test_otsu_vs_unet_draws_each_image_once_by_modality(tmp_path, saved):
    wide = pd.DataFrame({"id": list("abcd"), "modality": ["fluorescence", "histology", "fluorescence", "brightfield"],
                         "otsu_native_dice": [0.9, 0.5, 0.8, 0.1], "unet_native_dice": [0.85, 0.7, 0.9, 0.8],
                         "otsu_dsb": [0.5, 0.2, 0.4, 0.0], "unet_dsb": [0.6, 0.1, 0.5, 0.3]})
    otsu_vs_unet(wide, tmp_path / "s.png")
    _is_png(tmp_path / "s.png")
    dice, dsb = saved["s"]
    assert dice.get_title() == "U-Net higher on 3 of 4 images" and dsb.get_title() == "U-Net higher on 3 of 4 images"
    points = {c.get_label(): c.get_offsets().tolist() for c in dice.collections}
    assert points == {"fluorescence (2)": [[0.9, 0.85], [0.8, 0.9]], "histology (1)": [[0.5, 0.7]],
                      "brightfield (1)": [[0.1, 0.8]]}


def test_severity_curves_name_the_undamaged_level(tmp_path, saved):
    rows = [{"severity": s, "otsu": {"dice": d - 0.1}, "unet": {"dice": d}} for s, d in ((1, 0.9), (0.05, 0.8))]
    severity_curves(rows, "low_contrast", tmp_path / "l.png")
    (ax,) = saved["l"]
    assert ax.get_xlabel() == "severity (1: none)" and [t.get_text() for t in ax.get_xticklabels()] == ["1", "0.05"]
    assert list(ax.lines[1].get_ydata()) == [0.9, 0.8]   # the U-Net's, after Otsu's


def test_metric_bars_with_and_without_instance_panels(tmp_path, saved):
    def pixel(shift):
        return {"precision": 0.8 - shift, "recall": 0.7 - shift, "dice": 0.75 - shift, "iou": 0.6 - shift}

    summary = {m: {"mean": pixel(k / 10), "pooled": pixel(k / 10 + 0.05)} for k, m in enumerate(("otsu", "unet"))}
    metric_bars(summary, tmp_path / "a.png")
    for k, m in enumerate(summary):
        summary[m] |= {"native": pixel(k / 10 + 0.02), "instance": {"dsb": 0.4 + k / 10, "f1_iou50": 0.6, "count_mae": 3}}
    metric_bars(summary, tmp_path / "b.png")
    with Image.open(tmp_path / "a.png") as a, Image.open(tmp_path / "b.png") as b:
        assert b.size[0] > a.size[0]   # two more panels
    assert len(saved["a"]) == 2 and len(saved["b"]) == 4
    assert [ax.get_title() for ax in saved["b"]] == [label for label, _ in PANELS.values()]
    # each panel: per method, a bar per metric of that panel, as high as its value (count_mae not drawn)
    for ax, panel in zip(saved["b"], ("mean", "pooled", "native", "instance")):
        bars = [[bar.get_height() for bar in container] for container in ax.containers]
        metrics = ["dsb", "f1_iou50"] if panel == "instance" else ["precision", "recall", "dice", "iou"]
        assert bars == [[summary[m][panel][k] for k in metrics] for m in ("otsu", "unet")]
        assert [c.get_label() for c in ax.containers] == ["otsu", "unet"]


def test_gallery(tmp_path, saved):
    images = [np.random.default_rng(i).random((16, 16)) for i in range(3)]
    truth, pred = [im > 0.5 for im in images], [im > 0.7 for im in images]
    gallery(images, {"truth": truth, "pred": pred}, tmp_path / "g.png", titles=["a", "b", "c"])
    _is_png(tmp_path / "g.png")
    axes = np.array(saved["g"]).reshape(3, 3)   # a row per image: the image, then each mask column
    assert [ax.get_title() for ax in axes[0]] == ["image", "truth", "pred"]
    for r, row in enumerate(axes):
        assert row[0].get_ylabel() == "abc"[r]
        for ax, shown in zip(row, (images[r], truth[r], pred[r])):
            np.testing.assert_array_equal(ax.images[0].get_array().data, shown)


def test_augmentation_galleries_show_the_strengths_their_panels_name(tmp_path, saved):
    """The blur panels titled sigma 2, 4 and 6 are blurred at those sigmas (drawn from [0, sigma],
    as training does, they showed 0.66, 3.86 and 2.07); contrast panels at their factors."""
    import runpy

    import nucseg.plots
    from conftest import ROOT
    from nucseg.augment import blur

    strengths = runpy.run_path(str(ROOT / "stages" / "augmentations.py"))["STRENGTHS"]
    image = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    mask = (image > 0.5).astype(np.float32)
    for name in ("blur", "contrast"):
        nucseg.plots.augmentation_gallery(image, mask, strengths[name], tmp_path / f"{name}.png")
    shown = {name: [ax.images[0].get_array().data for ax in saved[name] if ax.images][1:len(strengths[name]) + 1]
             for name in ("blur", "contrast")}
    assert [label for label, _ in strengths["blur"]] == ["sigma 2", "sigma 4", "sigma 6"]
    for panel, s in zip(shown["blur"], (2.0, 4.0, 6.0)):
        np.testing.assert_allclose(panel, blur(image[..., None], s, s).numpy()[..., 0], atol=1e-6)
    assert np.std(shown["blur"][0]) > np.std(shown["blur"][1]) > np.std(shown["blur"][2])
    for panel, f in zip(shown["contrast"], (1.0, 0.6, 0.2)):
        np.testing.assert_allclose(panel - panel.mean(), f * (image - image.mean()), atol=1e-5)
