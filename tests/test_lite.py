"""The LiteRT model computes what the Keras model computes, for every batch size."""
import re

import numpy as np
import pytest

from conftest import ROOT
from nucseg.evaluate import forward, load_model, predict_probs
from nucseg.io import NucsegError
from nucseg.lite import BATCH, LiteModel, convert
from nucseg.model import get_model
from nucseg.predict import iter_native_probs


@pytest.fixture(scope="module")
def models():
    """A small U-Net with random weights (decoder BatchNorm statistics moved off their defaults,
    so that folding them into the convolutions is exercised) and its conversion."""
    import keras

    keras.utils.set_random_seed(0)   # the int8 agreement tests below depend on these weights
    keras_model = get_model(64, encoder_weights="none", freeze_encoder=False)
    rng = np.random.default_rng(3)
    for layer in keras_model.layers:
        if layer.name.startswith("up_"):
            bn = layer.layers[1]
            bn.moving_mean.assign(rng.normal(0, 0.1, bn.moving_mean.shape))
            bn.moving_variance.assign(rng.uniform(0.5, 2.0, bn.moving_variance.shape))
    content = convert(keras_model)
    return keras_model, LiteModel(content), content


@pytest.fixture(scope="module")
def quantised(models):
    """The small U-Net quantised to int8, calibrated on 8 random images."""
    keras_model, _, _ = models
    calibration = np.random.default_rng(5).random((8, 64, 64, 1), dtype=np.float32)
    return calibration, convert(keras_model, calibration)


@pytest.fixture(scope="module")
def converted(models):
    """`convert`, remembering its results: a conversion costs up to a minute here, and it gives
    the same bytes for the same model and calibration (tested below), so the export stage tests
    share them."""
    keras_model, _, content = models
    weights = lambda model: b"".join(np.ascontiguousarray(w).tobytes() for w in model.get_weights())
    done = {(weights(keras_model), None): content}

    def cached(model, calibration=None):   # the stage loads the model from its file: known by its weights
        key = (weights(model), None if calibration is None else np.ascontiguousarray(calibration).tobytes())
        if key not in done:
            done[key] = convert(model, calibration)
        return done[key]
    return cached


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, BATCH, BATCH + 1, 2 * BATCH + 3, 3 * BATCH + 6])
def test_lite_matches_keras_for_every_batch_size(models, n):
    keras_model, lite, content = models
    images = np.random.default_rng(n).random((n, 64, 64, 1), dtype=np.float32)
    expected = forward(keras_model)(images)
    got = lite(images)
    assert got.shape == (n, 64, 64, 1) and got.dtype == np.float32
    assert np.abs(got - expected).max() < 1e-4
    assert expected.std() > 1e-3  # the comparison is not between two constant maps


def test_lite_each_image_independent_of_its_batch(models):
    _, lite, _ = models
    images = np.random.default_rng(0).random((BATCH + 2, 64, 64, 1), dtype=np.float32)
    together = lite(images)
    alone = np.concatenate([lite(images[i:i + 1]) for i in range(len(images))])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_lite_through_predict_and_windows(models, tmp_path):
    keras_model, lite, content = models
    path = tmp_path / "unet.tflite"
    path.write_bytes(content)
    loaded = load_model(path)
    assert isinstance(loaded, LiteModel) and loaded.input_shape == (None, 64, 64, 1)
    images = np.random.default_rng(1).random((7, 64, 64), dtype=np.float32)
    np.testing.assert_allclose(predict_probs(loaded, images, tta=True), predict_probs(keras_model, images, tta=True),
                               atol=1e-4)
    grays = [np.random.default_rng(2).random(shape, dtype=np.float32) for shape in [(100, 150), (64, 64)]]
    for a, b in zip(iter_native_probs(loaded, grays, tile=64, overlap=16),
                    iter_native_probs(keras_model, grays, tile=64, overlap=16)):
        assert a.shape == b.shape and np.abs(a - b).max() < 1e-4


def test_lite_rejects_wrong_input_size(models):
    _, lite, _ = models
    with pytest.raises(ValueError, match="64, 64, 1"):
        lite(np.zeros((2, 128, 128, 1), np.float32))


def test_not_a_model_file_is_one_clear_error(tmp_path):
    path = tmp_path / "unet.tflite"
    path.write_bytes(b"this is not a flatbuffer")
    with pytest.raises(NucsegError, match="unet.tflite: not a nucseg LiteRT model.*dvc repro export"):
        load_model(path)


def test_falls_back_to_tensorflows_interpreter_without_ai_edge_litert(models, monkeypatch):
    import sys

    keras_model, lite, content = models
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)       # import fails as if not installed
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    fallback = LiteModel(content)
    assert "tensorflow" in type(fallback._interpreter).__module__
    images = np.random.default_rng(4).random((BATCH + 1, 64, 64, 1), dtype=np.float32)
    assert np.abs(fallback(images) - lite(images)).max() < 1e-5


def _has_int8_tensors(content):
    return np.int8 in {t["dtype"] for t in LiteModel(content)._interpreter.get_tensor_details()}


def _run_export_stage(monkeypatch, project, keras_model, precision="float32", min_agreement=0.95, n_val=8):
    """The export stage as `dvc repro` runs it, in `project`: the model saved there, 24 random
    images (16 training, `n_val` validation; `base.tile: 0`, so the model sees them whole) and
    params.yaml's sections."""
    import runpy

    import pandas as pd
    import yaml

    keras_model.save(project / "unet.keras")
    ids = [f"img{i:02d}" for i in range(24)]
    np.save(project / "images.npy", np.random.default_rng(6).random((24, 64, 64), dtype=np.float32))
    pd.DataFrame({"id": ids}).to_csv(project / "meta.csv", index=False)
    (project / "split").mkdir(exist_ok=True)
    (project / "split" / "train.txt").write_text("".join(f"{i}\n" for i in ids[:16]))
    (project / "split" / "val.txt").write_text("".join(f"{i}\n" for i in ids[16:16 + n_val]))
    (project / "params.yaml").write_text(yaml.safe_dump({
        **yaml.safe_load((ROOT / "params.yaml").read_text()),
        "base": {"seed": 0, "img_size": 64, "tile": 0}, "ingest": {"normalization": "percentile"},
        "export": {"precision": precision, "min_agreement": min_agreement}}))
    monkeypatch.chdir(project)
    monkeypatch.setattr("sys.argv", ["export.py", "--model", "unet.keras", "--out", "unet.tflite",
                                     "--images", "images.npy", "--meta", "meta.csv", "--raw", "raw",
                                     "--labels", "labels.npz", "--split", "split"])
    runpy.run_path(str(ROOT / "stages" / "export.py"), run_name="__main__")


def _assert_refused(capsys, project, message):
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"error: {message}"), error
    assert "\n" not in error
    assert (project / "unet.tflite").read_bytes() == b"previous"


def test_int8_calibrates_every_entry_point_from_fewer_images_than_a_batch(models):
    """Two calibration images still quantise the batch-8 entry point (repeated to fill it):
    the file is as small as with a full batch, not partly float."""
    keras_model, _, content = models
    few = convert(keras_model, np.random.default_rng(7).random((2, 64, 64, 1), dtype=np.float32))
    assert len(few) < 0.4 * len(content)
    with pytest.raises(ValueError, match="needs calibration images"):
        convert(keras_model, np.zeros((0, 64, 64, 1), np.float32))


def test_export_stage_writes_a_model_that_matches(models, converted, tmp_path, monkeypatch, capsys):
    keras_model, _, _ = models
    monkeypatch.setattr("nucseg.lite.convert", converted)
    _run_export_stage(monkeypatch, tmp_path, keras_model)
    images = np.random.default_rng(5).random((3, 64, 64, 1), dtype=np.float32)
    assert np.abs(load_model(tmp_path / "unet.tflite")(images) - forward(keras_model)(images)).max() < 1e-4
    assert "(float32, " in capsys.readouterr().out


def test_export_stage_refuses_a_conversion_that_differs_and_keeps_the_old_file(models, quantised, tmp_path,
                                                                               monkeypatch, capsys):
    keras_model, _, content = models
    (tmp_path / "unet.tflite").write_bytes(b"previous")
    # a float32 export that came out as something else: here int8's arithmetic, off by up to ~0.05
    monkeypatch.setattr("nucseg.lite.convert", lambda model, calibration=None: quantised[1])
    with pytest.raises(SystemExit):
        _run_export_stage(monkeypatch, tmp_path, keras_model)
    _assert_refused(capsys, tmp_path, "unet.tflite: the converted model differs from unet.keras by")


def test_export_stage_int8_writes_a_quantised_model_and_reports_agreement(models, converted, tmp_path, monkeypatch,
                                                                          capsys):
    """This random-weight model's probabilities all lie within about 0.03 of 0.5, where int8's
    rounding flips many pixels: its masks agree with the float model's at Dice about 0.8,
    reported (min_agreement 0 lets it through)."""
    keras_model, _, content = models
    monkeypatch.setattr("nucseg.lite.convert", converted)
    _run_export_stage(monkeypatch, tmp_path, keras_model, precision="int8", min_agreement=0.0)
    written = (tmp_path / "unet.tflite").read_bytes()
    assert len(written) < 0.4 * len(content) and _has_int8_tensors(written)
    agreement = float(re.search(r"masks agree at Dice ([0-9.]+) on 8 validation windows", capsys.readouterr().out)[1])
    assert 0.5 < agreement < 0.99   # int8 flips pixels near 0.5 (and the refusal test below relies on < 0.99)


def test_export_stage_refuses_int8_below_min_agreement(models, converted, tmp_path, monkeypatch, capsys):
    keras_model, _, _ = models
    (tmp_path / "unet.tflite").write_bytes(b"previous")
    monkeypatch.setattr("nucseg.lite.convert", converted)   # the conversion of the test above
    with pytest.raises(SystemExit):
        _run_export_stage(monkeypatch, tmp_path, keras_model, precision="int8", min_agreement=0.99)
    _assert_refused(capsys, tmp_path, "unet.tflite: the int8 model's masks agree with unet.keras's at Dice 0.")


@pytest.mark.parametrize("export, message", [
    ({"precision": "fp16"}, "params.yaml: export.precision is 'fp16'; use one of float32, int8"),
    ({"min_agreement": "high"}, "params.yaml: export.min_agreement is 'high'; use a Dice from 0 to 1 (e.g. 0.95)"),
    ({"min_agreement": True}, "params.yaml: export.min_agreement is True; use a Dice from 0 to 1 (e.g. 0.95)"),
    ({"min_agreement": 1.5}, "params.yaml: export.min_agreement is 1.5; use a Dice from 0 to 1 (e.g. 0.95)"),
])
def test_export_stage_rejects_bad_params_before_converting(models, tmp_path, monkeypatch, capsys, export, message):
    keras_model, _, _ = models
    (tmp_path / "unet.tflite").write_bytes(b"previous")
    monkeypatch.setattr("nucseg.lite.convert", lambda *a: pytest.fail("converted despite bad params"))
    with pytest.raises(SystemExit):
        _run_export_stage(monkeypatch, tmp_path, keras_model, **{"precision": "int8", **export})
    _assert_refused(capsys, tmp_path, message)


def test_export_stage_int8_refuses_an_empty_split(models, tmp_path, monkeypatch, capsys):
    """With no validation images nothing would check the int8 model: refused before converting."""
    keras_model, _, _ = models
    (tmp_path / "unet.tflite").write_bytes(b"previous")
    monkeypatch.setattr("nucseg.lite.convert", lambda *a: pytest.fail("converted with nothing to check on"))
    with pytest.raises(SystemExit):
        _run_export_stage(monkeypatch, tmp_path, keras_model, precision="int8", n_val=0)
    _assert_refused(capsys, tmp_path, "split/val.txt: no ids in it; restore it")


def test_export_stage_int8_names_an_id_the_data_lacks(models, tmp_path, monkeypatch, capsys):
    keras_model, _, _ = models
    (tmp_path / "unet.tflite").write_bytes(b"previous")
    monkeypatch.setattr("nucseg.lite.convert", lambda *a: pytest.fail("converted without its images"))
    real_read_ids = __import__("nucseg.io", fromlist=["read_ids"]).read_ids
    monkeypatch.setattr("nucseg.windows.read_ids", lambda path: real_read_ids(path) + ["not-ingested"])
    with pytest.raises(SystemExit):
        _run_export_stage(monkeypatch, tmp_path, keras_model, precision="int8")
    _assert_refused(capsys, tmp_path, "split/val.txt: 1 ids not in the data, e.g. not-ingested: the id lists and "
                                      "the arrays come from different runs; rebuild them with 'dvc repro'")


def test_int8_conversion_quantises_and_keeps_the_entry_points(models, quantised):
    """`convert(model, calibration)` quantises weights and activations to int8, float32 in and
    out: the same bytes from the same calibration, a file under 0.4x the size, int8 tensors
    inside, every entry point usable, probabilities near the float model's. (How close on the
    real model: bench/int8.py scores test Dice 0.9075 against 0.9082, the pipeline's evaluate
    0.9069 against 0.9075, README; a random-weight model's map varies too little here.)"""
    keras_model, _, content = models
    calibration, quantised = quantised
    rng = np.random.default_rng(6)
    assert convert(keras_model, calibration) == quantised   # reproducible, byte for byte
    assert len(quantised) < 0.4 * len(content) and _has_int8_tensors(quantised)
    lite8 = LiteModel(quantised)
    for n in (1, 3, BATCH, BATCH + 3):
        images = rng.random((n, 64, 64, 1), dtype=np.float32)
        expected, got = forward(keras_model)(images), lite8(images)
        assert got.shape == expected.shape and got.dtype == np.float32
        assert 0 < np.abs(got - expected).max() < 0.05   # quantised, not the float model again
