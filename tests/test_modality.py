import pandas as pd
import pytest

from nucseg.modality import by_modality, modalities, modality


def test_rule():
    assert modality(True, 0.8) == "histology"
    assert modality(False, 0.8) == "brightfield"
    assert modality(False, 0.05) == "fluorescence"
    # the boundary: a mean gray value above one half is a light background
    assert modality(False, 0.5) == "fluorescence" and modality(False, 0.51) == "brightfield"
    assert modality(False, 0.45, bright=0.4) == "brightfield"


def test_on_the_synthetic_kinds(kaggle_zip):
    from nucseg.data import ingest
    from nucseg.io import RawSource

    _, meta = ingest(RawSource(kaggle_zip), img_size=32, jobs=1)
    labels = modalities(meta).to_numpy()
    # gray samples are bright nuclei on black; rgb/rgba samples are purple on white
    assert set(labels[(meta["channels"] == 1).to_numpy()]) == {"fluorescence"}
    assert set(labels[meta["color"].to_numpy()]) == {"histology"}


def test_brightfield_through_ingest(tmp_path):
    """A gray image with dark nuclei on a light background, as DSB2018's brightfield fields are,
    saved as the RGBA PNG they come in: no colour, a bright mean."""
    import numpy as np

    from conftest import synthetic_sample, write_kaggle_zip
    from nucseg.data import ingest
    from nucseg.io import RawSource

    image, masks = synthetic_sample(np.random.default_rng(4), (48, 64), 3, "gray8")
    dark_on_light = np.repeat((255 - image)[..., None], 3, -1)
    rgba = np.concatenate([dark_on_light, np.full((*image.shape, 1), 255, np.uint8)], -1)
    _, meta = ingest(RawSource(write_kaggle_zip(tmp_path / "bf.zip", {"bf": (rgba, masks)})), img_size=32, jobs=1)
    assert not meta["color"][0] and meta["mean"][0] > 0.5
    assert modalities(meta).to_dict() == {"bf": "brightfield"}


def test_means_per_method_and_modality():
    per_image = pd.DataFrame({"id": ["a", "b", "c", "a", "b", "c"], "method": ["unet"] * 3 + ["otsu"] * 3,
                              "dice": [0.9, 0.7, 0.5, 0.8, 0.2, 0.4], "dsb": [0.6, 0.4, 0.2, 0.5, 0.1, 0.3]})
    labels = pd.Series({"a": "fluorescence", "b": "fluorescence", "c": "histology"})
    out = by_modality(per_image, labels)
    assert out["unet"]["fluorescence"] == {"n_images": 2, "dice": pytest.approx(0.8), "dsb": pytest.approx(0.5)}
    assert out["otsu"]["histology"]["dice"] == pytest.approx(0.4)
    # no brightfield image: its keys are there all the same, empty
    assert out["unet"]["brightfield"] == out["otsu"]["brightfield"] == {"n_images": 0, "dice": None, "dsb": None}
    assert list(out["unet"]) == ["brightfield", "fluorescence", "histology"]
