import json
import zipfile

import keras
import numpy as np
import pytest

from nucseg.lite import BATCH, LiteModel, convert
from nucseg.modelinfo import (add_to_keras, add_to_tflite, config_settings, embedded_settings, model_settings,
                              settings_of)

SETTINGS = model_settings(192, 32, "none")


@pytest.fixture(scope="module")
def keras_file(tmp_path_factory):
    """A small convolutional model, saved as Keras saves it."""
    inputs = keras.Input((32, 32, 1))
    hidden = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    model = keras.Model(inputs, keras.layers.Conv2DTranspose(1, 3, padding="same")(hidden))
    path = tmp_path_factory.mktemp("model") / "unet.keras"
    model.save(path)
    return path


@pytest.fixture(scope="module")
def tflite_content(keras_file):
    from nucseg.evaluate import load_model

    return convert(load_model(keras_file))


def test_keras_file_keeps_its_weights_and_carries_the_settings(tmp_path, keras_file):
    path = tmp_path / "unet.keras"
    path.write_bytes(keras_file.read_bytes())
    assert embedded_settings(path) is None
    add_to_keras(path, SETTINGS)
    assert embedded_settings(path) == {"tile": 192, "img_size": 32, "normalization": "none"}
    before, after = keras.models.load_model(keras_file), keras.models.load_model(path)
    assert all(np.array_equal(a, b) for a, b in zip(before.get_weights(), after.get_weights()))
    with zipfile.ZipFile(path) as archive:   # Keras' own members untouched
        with zipfile.ZipFile(keras_file) as original:
            assert all(archive.read(n) == original.read(n) for n in original.namelist())


def test_tflite_file_computes_the_same_and_carries_the_settings(tmp_path, tflite_content):
    path = tmp_path / "unet.tflite"
    path.write_bytes(tflite_content)
    assert embedded_settings(path) is None
    path.write_bytes(add_to_tflite(tflite_content, SETTINGS))
    assert embedded_settings(path) == SETTINGS
    images = np.random.default_rng(0).random((BATCH + 3, 32, 32, 1), dtype=np.float32)
    before, after = LiteModel(tflite_content), LiteModel.load(path)
    assert np.array_equal(before(images), after(images))        # every entry point (8 and 1) still there
    assert np.array_equal(before(images[:1]), after(images[:1]))
    again = add_to_tflite(path.read_bytes(), model_settings(0, 32, "percentile"))   # replaced, not added
    path.write_bytes(again)
    assert embedded_settings(path)["tile"] == 0 and again.count(b'"tile"') == 1


def test_settings_come_from_the_file_then_config_json_then_nowhere(tmp_path, keras_file):
    path = tmp_path / "unet.keras"
    path.write_bytes(keras_file.read_bytes())
    assert settings_of(path) == (None, None)
    config = {"tile": 128, "img_size": 32, "params": {"normalization": "percentile"}}   # as the train stage writes it
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert config_settings(path) == model_settings(128, 32, "percentile")
    assert settings_of(path) == (model_settings(128, 32, "percentile"), str(tmp_path / "config.json"))
    add_to_keras(path, SETTINGS)
    assert settings_of(path) == (SETTINGS, str(path))


@pytest.mark.parametrize("stored", [{"tile": -1, "img_size": 32, "normalization": "none"},
                                    {"tile": 64, "img_size": 32, "normalization": "zscore"},
                                    {"tile": 64}, [64], "garbage"])
def test_settings_that_are_not_a_models_are_ignored(tmp_path, keras_file, stored):
    path = tmp_path / "unet.keras"
    path.write_bytes(keras_file.read_bytes())
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("nucseg.json", json.dumps(stored))
    (tmp_path / "config.json").write_text(json.dumps(stored))
    assert settings_of(path) == (None, None)


def test_files_that_are_not_models_have_no_settings(tmp_path):
    for name, content in (("a.tflite", b"\x00" * 64), ("b.keras", b"not a zip"), ("c.tflite", b"")):
        (tmp_path / name).write_bytes(content)
        assert embedded_settings(tmp_path / name) is None
    assert embedded_settings(tmp_path / "missing.tflite") is None
