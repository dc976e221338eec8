import pandas as pd
import pytest

from nucseg.modality import by_modality, modalities, modality


def test_rule():
    assert modality(True, 0.8) == "histology"
    assert modality(False, 0.8) == "brightfield"
    assert modality(False, 0.05) == "fluorescence"


def test_on_the_synthetic_kinds(kaggle_zip):
    from nucseg.data import ingest
    from nucseg.io import RawSource

    _, meta = ingest(RawSource(kaggle_zip), img_size=32, jobs=1)
    labels = modalities(meta).to_numpy()
    # gray samples are bright nuclei on black; rgb/rgba samples are purple on white
    assert set(labels[(meta["channels"] == 1).to_numpy()]) == {"fluorescence"}
    assert set(labels[meta["color"].to_numpy()]) == {"histology"}


def test_means_per_method_and_modality():
    per_image = pd.DataFrame({"id": ["a", "b", "c", "a", "b", "c"], "method": ["unet"] * 3 + ["otsu"] * 3,
                              "dice": [0.9, 0.7, 0.5, 0.8, 0.2, 0.4], "dsb": [0.6, 0.4, 0.2, 0.5, 0.1, 0.3]})
    labels = pd.Series({"a": "fluorescence", "b": "fluorescence", "c": "histology"})
    out = by_modality(per_image, labels)
    assert out["unet"]["fluorescence"] == {"n_images": 2, "dice": pytest.approx(0.8), "dsb": pytest.approx(0.5)}
    assert out["otsu"]["histology"]["dice"] == pytest.approx(0.4)
