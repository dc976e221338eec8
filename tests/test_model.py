import keras
import numpy as np
import pytest

from conftest import SHARED_WEIGHTS
from nucseg.model import DECODER_FILTERS, SKIP_LAYERS, encoder_of, get_model, upsample


def test_shapes_and_skips():
    model = get_model(64, encoder_weights="none")
    assert model.input_shape == (None, 64, 64, 1)
    assert model.output_shape == (None, 64, 64, 1)
    encoder = encoder_of(model)
    assert [t.shape[1] for t in encoder.outputs] == [32, 16, 8, 4, 2]
    assert [encoder.get_layer(n).name for n in SKIP_LAYERS] == list(SKIP_LAYERS)
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
    assert isinstance(drop, keras.layers.Dropout) and isinstance(relu, keras.layers.ReLU)
    assert len(upsample(64).layers) == 3   # no dropout by default


def test_decoder_filters():
    model = get_model(32, encoder_weights="none")
    filters = [model.get_layer(f"up_{i}").layers[0].filters for i in range(4)]
    assert filters == list(DECODER_FILTERS)
    assert model.get_layer("logits").filters == 1


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
