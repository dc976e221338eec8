import json

import keras
import numpy as np
import pandas as pd
import pytest

from conftest import write_kaggle_dir, write_kaggle_zip
from nucseg.cli import main
from nucseg.rle import rle_encode


@pytest.fixture
def gray(samples, tmp_path):
    """The gray samples (bright nuclei): what the stand-in model below can segment."""
    chosen = {k: v for k, v in samples.items() if v[0].ndim == 2}
    return chosen, write_kaggle_zip(tmp_path / "gray.zip", chosen)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """A stand-in for the U-Net: logits 20 * (x - 0.5), 'brighter than half is a nucleus'."""
    inputs = keras.Input((32, 32, 1))
    model = keras.Model(inputs, keras.layers.Rescaling(20.0, offset=-10.0)(inputs))
    path = tmp_path_factory.mktemp("model") / "stand_in.keras"
    model.save(path)
    return path


@pytest.fixture(scope="module")
def lite_file(model_file):
    """The stand-in exported as the export stage does."""
    from nucseg.evaluate import load_model
    from nucseg.lite import convert

    path = model_file.with_name("stand_in.tflite")
    path.write_bytes(convert(load_model(model_file)))
    return path


@pytest.mark.parametrize("which", ["keras", "tflite"])
def test_predict_command(tmp_path, gray, model_file, lite_file, capsys, which):
    samples, kaggle_zip = gray
    model = model_file if which == "keras" else lite_file
    assert main(["predict", str(kaggle_zip), "--model", str(model), "--out", str(tmp_path / "o"),
                 "--tile", "48", "--overlap", "8", "--rle", str(tmp_path / "r.csv")]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith(f"{len(samples)} of {len(samples)} images segmented, 0 failed")
    summary = pd.read_csv(tmp_path / "o" / "summary.csv")
    assert dict(zip(summary["id"], summary["nuclei"])) == {i: len(m) for i, (_, m) in samples.items()}


def test_predict_command_without_model(tmp_path, kaggle_zip, capsys):
    assert main(["predict", str(kaggle_zip), "--model", str(tmp_path / "none.keras"), "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "none.keras: no model there" in err and "\n" not in err


def test_evaluate_with_masks_and_with_solution_csv(tmp_path, gray, model_file, capsys):
    samples, kaggle_zip = gray
    assert main(["evaluate", str(kaggle_zip), "--model", str(model_file), "--out", str(tmp_path / "m.json")]) == 0
    with_masks = json.loads((tmp_path / "m.json").read_text())
    assert with_masks["n_images"] == len(samples)
    for method in ("unet", "otsu"):
        assert with_masks[method]["instance"]["dsb"] > 0.7
        assert with_masks[method]["pixel"]["mean"]["dice"] > 0.9
    assert (tmp_path / "m.per_image.csv").exists()

    # the same truth as images without masks plus an RLE solution (BBBC038's stage1_test layout)
    images_only = write_kaggle_dir(tmp_path / "test", samples)
    for masks in images_only.glob("*/masks"):
        for f in masks.iterdir():
            f.unlink()
        masks.rmdir()
    rows = [(i, rle_encode(m), im.shape[0], im.shape[1]) for i, (im, ms) in samples.items() for m in ms]
    pd.DataFrame(rows, columns=["ImageId", "EncodedPixels", "Height", "Width"]).to_csv(tmp_path / "sol.csv", index=False)
    assert main(["evaluate", str(images_only), "--solution", str(tmp_path / "sol.csv"), "--method", "otsu",
                 "--out", str(tmp_path / "s.json")]) == 0
    with_csv = json.loads((tmp_path / "s.json").read_text())
    assert with_csv["otsu"] == with_masks["otsu"]   # the same truth, whichever way it comes
    assert "otsu" in capsys.readouterr().out


def test_study_queue_dry_run_prints_one_command_per_setting(capsys):
    assert main(["study", "queue", "loss", "--dry-run"]) == 0
    lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith("dvc exp run")]
    assert len(lines) == 3 and all("--queue" in l and "train.epochs=10" in l for l in lines)
    assert "-S train.loss=dice" in lines[1]
