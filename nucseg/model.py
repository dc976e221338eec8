"""The U-Net: Keras' MobileNetV2 as encoder, pix2pix upsample blocks as decoder."""
from __future__ import annotations

from pathlib import Path

import keras
from keras import layers

from .io import NucsegError

SKIP_LAYERS = (
    "block_1_expand_relu",   # size / 2
    "block_3_expand_relu",   # size / 4
    "block_6_expand_relu",   # size / 8
    "block_13_expand_relu",  # size / 16
    "block_16_project",      # size / 32, the bottleneck
)
DECODER_FILTERS = (512, 256, 128, 64)


def upsample(filters, size=3, dropout=0.0, name=None):
    """The pix2pix upsample block: Conv2DTranspose (stride 2, no bias, N(0, 0.02) init),
    BatchNorm, optional Dropout, ReLU. (Written here: `tensorflow-examples` is not on PyPI.)"""
    block = keras.Sequential(name=name)
    block.add(layers.Conv2DTranspose(
        filters, size, strides=2, padding="same", use_bias=False,
        kernel_initializer=keras.initializers.RandomNormal(0.0, 0.02),
    ))
    block.add(layers.BatchNormalization())
    if dropout:
        block.add(layers.Dropout(dropout))
    block.add(layers.ReLU())
    return block


def resolve_weights(encoder_weights):
    """``imagenet`` (Keras' download or cache), ``none`` (either in any case), or a path to an
    ``.h5`` file."""
    if encoder_weights is None or str(encoder_weights).lower() == "none":
        return None
    if str(encoder_weights).lower() == "imagenet":
        return "imagenet"
    path = Path(encoder_weights)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: encoder weights not found; set train.encoder_weights in params.yaml to 'imagenet', 'none' "
            "or the path of a MobileNetV2 no-top .h5 file"
        )
    return str(path)


def weights_file(encoder_weights, img_size):
    """The file the encoder's weights come from: the given path, Keras' cache file for
    ``imagenet`` (which it downloads when absent), or None (``none``)."""
    weights = resolve_weights(encoder_weights)
    if weights != "imagenet":
        return None if weights is None else Path(weights)
    rows = img_size if img_size in (96, 128, 160, 192, 224) else 224   # the sizes Keras has weights for
    return Path(keras.src.backend.config.keras_home()) / "models" / \
        f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{rows}_no_top.h5"


def _weights_problem(weights, img_size, exc):
    """One line on why Keras could not load `weights` (a path or imagenet), or None if not that."""
    detail = " ".join(str(exc).split())
    fix = "set train.encoder_weights in params.yaml to a MobileNetV2 no-top .h5 file, imagenet or none"
    if weights != "imagenet":
        return f"{weights}: not MobileNetV2 no-top weights Keras can load ({detail}); {fix}"
    cache = weights_file("imagenet", img_size)
    if "URL fetch failure" in detail:
        return (f"{cache}: Keras could not download MobileNetV2's ImageNet weights ({detail}); put a no-top "
                f"MobileNetV2 .h5 there (README: Offline machines), or {fix}")
    if cache.exists():   # seeded by hand with a wrong or truncated file, say
        return (f"{cache}: not MobileNetV2 no-top weights Keras can load ({detail}); delete it (Keras downloads "
                f"it again) or replace it (README: Offline machines), or {fix}")
    return None


def get_model(img_size=128, encoder_weights="imagenet", freeze_encoder=None, dropout=0.0):
    """Build the U-Net.

    Parameters
    ----------
    img_size : int
        Square input size, a multiple of 32 (at least 32).
    encoder_weights : str or None
        ``imagenet``, ``none`` or an ``.h5`` path (see `resolve_weights`).
    freeze_encoder : bool or None
        Keep the encoder's weights fixed. ``None``: frozen when pretrained weights are loaded,
        trained when the encoder starts from random values.
    dropout : float
        Dropout rate in the upsample blocks (0: none).

    Returns
    -------
    keras.Model
        Input (img_size, img_size, 1) grayscale in [0, 1]; output (img_size, img_size, 1) logits.
        The model replicates the gray channel to RGB and rescales to [-1, 1] (what MobileNetV2's
        ImageNet weights expect) itself, so callers feed it the stored grayscale arrays.
    """
    if img_size % 32 or img_size < 32:
        raise ValueError(f"img_size must be a multiple of 32 and at least 32, not {img_size}")
    weights = resolve_weights(encoder_weights)
    if freeze_encoder is None:
        freeze_encoder = weights is not None

    inputs = keras.Input((img_size, img_size, 1), name="image")
    x = layers.Concatenate(name="gray_to_rgb")([inputs, inputs, inputs])
    x = layers.Rescaling(2.0, offset=-1.0, name="to_mobilenet_range")(x)

    try:
        base = keras.applications.MobileNetV2(input_shape=(img_size, img_size, 3), include_top=False, weights=weights)
    except Exception as exc:   # a bare Exception when Keras' download fails; h5py's OSError names no file
        problem = weights and _weights_problem(weights, img_size, exc)
        if not problem:
            raise
        raise NucsegError(problem) from None
    encoder = keras.Model(base.input, [base.get_layer(n).output for n in SKIP_LAYERS], name="encoder")
    encoder.trainable = not freeze_encoder

    *skips, x = encoder(x)
    for i, (filters, skip) in enumerate(zip(DECODER_FILTERS, reversed(skips))):
        x = upsample(filters, 3, dropout, name=f"up_{i}")(x)
        x = layers.Concatenate(name=f"skip_{i}")([x, skip])
    logits = layers.Conv2DTranspose(1, 3, strides=2, padding="same", name="logits")(x)
    return keras.Model(inputs, logits, name="unet_mobilenetv2")


def encoder_of(model):
    return model.get_layer("encoder")
