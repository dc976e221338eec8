import keras
import numpy as np
import pytest

from conftest import SHARED_WEIGHTS
from nucseg.model import SKIP_LAYERS, encoder_of, get_model, upsample

# the brief's architecture, written out rather than read from the module under test
BRIEF_SKIPS = ("block_1_expand_relu", "block_3_expand_relu", "block_6_expand_relu", "block_13_expand_relu",
               "block_16_project")
BRIEF_FILTERS = [512, 256, 128, 64]


def test_shapes_and_skips():
    model = get_model(64, encoder_weights="none")
    assert model.input_shape == (None, 64, 64, 1)
    assert model.output_shape == (None, 64, 64, 1)
    encoder = encoder_of(model)
    assert SKIP_LAYERS == BRIEF_SKIPS
    assert [t.shape[1] for t in encoder.outputs] == [32, 16, 8, 4, 2]
    assert len(encoder.outputs) == len(BRIEF_SKIPS)
    for output, name in zip(encoder.outputs, BRIEF_SKIPS):
        assert output is encoder.get_layer(name).output
    assert encoder.trainable   # random encoder: trained
    assert len(encoder.trainable_weights) > 100


def test_upsample_block_is_pix2pix():
    block = upsample(256, 3, dropout=0.5)
    block.build((None, 4, 4, 8))
    conv, bn, drop, relu = block.layers
    assert isinstance(conv, keras.layers.Conv2DTranspose) and not conv.use_bias
    assert conv.strides == (2, 2) and conv.filters == 256
    init = conv.kernel_initializer
    assert isinstance(init, keras.initializers.RandomNormal) and init.stddev == 0.02 and init.mean == 0.0
    assert isinstance(bn, keras.layers.BatchNormalization)
    assert isinstance(drop, keras.layers.Dropout) and drop.rate == 0.5
    assert isinstance(relu, keras.layers.ReLU)
    assert len(upsample(64).layers) == 3   # no dropout by default


def test_decoder_filters_and_input_range():
    model = get_model(32, encoder_weights="none", dropout=0.3)
    filters = [model.get_layer(f"up_{i}").layers[0].filters for i in range(4)]
    assert filters == BRIEF_FILTERS
    assert [model.get_layer(f"up_{i}").layers[2].rate for i in range(4)] == [0.3] * 4
    assert model.get_layer("logits").filters == 1
    # grayscale [0, 1] in, MobileNetV2's [-1, 1] out
    scaled = model.get_layer("to_mobilenet_range")(np.array([0.0, 0.5, 1.0], np.float32))
    np.testing.assert_allclose(np.asarray(scaled), [-1.0, 0.0, 1.0])


def test_bad_size_and_missing_weights():
    with pytest.raises(ValueError, match="multiple of 32"):
        get_model(100, encoder_weights="none")
    with pytest.raises(FileNotFoundError, match="encoder weights not found"):
        get_model(32, encoder_weights="/nonexistent/w.h5")


@pytest.fixture
def weights_file():
    if not SHARED_WEIGHTS.exists():
        pytest.skip(f"{SHARED_WEIGHTS} absent")
    return SHARED_WEIGHTS


def test_pretrained_encoder_from_h5_is_frozen(weights_file):
    model = get_model(128, encoder_weights=str(weights_file))
    encoder = encoder_of(model)
    assert not encoder.trainable
    reference = keras.applications.MobileNetV2(input_shape=(128, 128, 3), include_top=False,
                                               weights=str(weights_file))
    np.testing.assert_array_equal(encoder.get_layer("Conv1").get_weights()[0],
                                  reference.get_layer("Conv1").get_weights()[0])
    assert encoder.trainable_weights == []
    decoder = [w for n in ("up_0", "up_1", "up_2", "up_3", "logits") for w in model.get_layer(n).trainable_weights]
    assert len(model.trainable_weights) == len(decoder)   # only the decoder learns


def test_weights_that_cannot_be_had_stop_in_one_line(tmp_path, monkeypatch):
    """Offline, Keras' download fails with a bare Exception; a file that is not weights, with
    h5py's message alone. Both name the file and the fix."""
    import urllib.error

    from nucseg.io import NucsegError

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr("keras.src.utils.file_utils.urlretrieve", offline)
    monkeypatch.setattr("keras.src.backend.config.keras_home", lambda: str(tmp_path / "keras"))
    with pytest.raises(NucsegError) as error:
        get_model(96, encoder_weights="imagenet")
    cache = tmp_path / "keras" / "models" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_96_no_top.h5"
    assert str(error.value).startswith(f"{cache}: Keras could not download MobileNetV2's ImageNet weights")
    assert "train.encoder_weights" in str(error.value) and "\n" not in str(error.value)

    cache.parent.mkdir(parents=True)
    cache.write_bytes(b"<html>proxy error</html>")   # a bad copy in Keras' cache
    with pytest.raises(NucsegError, match=f"^{cache}: not MobileNetV2 no-top weights Keras can load .*delete it"):
        get_model(96, encoder_weights="imagenet")

    junk = tmp_path / "weights.h5"
    junk.write_bytes(b"not an HDF5 file")
    with pytest.raises(NucsegError, match=f"^{junk}: not MobileNetV2 no-top weights Keras can load"):
        get_model(32, encoder_weights=str(junk))


def test_weights_file_names_what_keras_loads(tmp_path, monkeypatch):
    """For the training configuration: Keras keeps ImageNet weights for input sizes 96 to 224 and
    uses the 224 px file for any other."""
    from nucseg.model import weights_file

    monkeypatch.setattr("keras.src.backend.config.keras_home", lambda: str(tmp_path))
    name = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{}_no_top.h5"
    assert weights_file("imagenet", 128) == tmp_path / "models" / name.format(128)
    assert weights_file("imagenet", 256) == tmp_path / "models" / name.format(224)
    assert weights_file("none", 128) is None
    own = tmp_path / "w.h5"
    own.write_bytes(b"h5")
    assert weights_file(str(own), 128) == own
