"""Training the U-Net: tf.data input pipeline, schedule, checkpointing and early stopping."""
from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from .augment import augment as augment_pair
from .io import NucsegError, atomic_path
from .losses import accuracy, dice, get_loss
from .model import encoder_of, get_model
from .modelinfo import add_to_keras

AUTOTUNE = tf.data.AUTOTUNE


def set_seed(seed, deterministic=True):
    """Seed Python, numpy and TensorFlow; with `deterministic`, also ask for deterministic ops."""
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def get_strategy(name="default"):
    """The `tf.distribute` strategy by name.

    ``default``: one device. ``mirrored``: synchronous data parallelism over every GPU, or over
    every logical CPU device where there is no GPU. ``multi_worker``: the same across machines,
    each worker told the cluster by the ``TF_CONFIG`` environment variable.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"unknown strategy {name!r}: use default, mirrored or multi_worker")


def make_dataset(images, masks, batch_size=16, shuffle=False, augment=None, seed=0, groups=None):
    """A batched tf.data pipeline of (image, mask) pairs shaped (H, W, 1).

    `augment` is a dict of keyword arguments for `nucseg.augment.augment` (None: no augmentation).
    Each example draws its own seed from a seeded stream that changes every epoch.
    `groups` (one int per example, equal values contiguous, e.g. the source image of each
    window): an epoch then holds one example per group, drawn anew each epoch, so that an image
    cut into many windows weighs as much as one that fits a single window.
    """
    images = np.asarray(images, dtype=np.float32)[..., None]
    masks = np.asarray(masks, dtype=np.float32)[..., None]
    if groups is None:
        ds = tf.data.Dataset.from_tensor_slices((images, masks))
        n = len(images)
    else:
        groups = np.asarray(groups)
        if len(groups) != len(images) or np.any(np.diff(groups) < 0):
            raise ValueError("groups must give one sorted group number per example")
        starts, counts = np.unique(groups, return_index=True, return_counts=True)[1:]
        images, masks = tf.constant(images), tf.constant(masks)
        starts, counts = tf.constant(starts, tf.int64), tf.constant(counts, tf.int64)
        n = len(starts)
        picks = tf.data.Dataset.random(seed=seed + 1, rerandomize_each_iteration=True)
        ds = tf.data.Dataset.zip((tf.data.Dataset.range(n), picks)).map(
            lambda g, r: starts[g] + r % counts[g])
        ds = ds.map(lambda i: (tf.gather(images, i), tf.gather(masks, i)))
    if shuffle:
        ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    if augment:
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip((ds, seeds)).map(
            lambda pair, s: augment_pair(pair[0], pair[1], s, **augment), num_parallel_calls=AUTOTUNE
        )
    return ds.batch(batch_size).prefetch(AUTOTUNE)


def lr_schedule(learning_rate, decay=0.1, constant_epochs=1):
    """Constant for the first `constant_epochs`, then multiplied by exp(-decay) each epoch."""

    def schedule(epoch):
        return float(learning_rate * math.exp(-decay * max(0, epoch + 1 - constant_epochs)))

    return schedule


class EarlyStopping(keras.callbacks.EarlyStopping):
    """Keras' early stopping, with a NaN or infinite val loss counted as no improvement. Keras
    takes a NaN first epoch as the best so far, and then no loss compares below it: the phase
    would stop after `patience` epochs however much the later ones improve."""

    def get_monitor_value(self, logs):
        value = super().get_monitor_value(logs)
        return value if value is None or math.isfinite(value) else math.inf


def compile_model(model, learning_rate, loss="bce_dice", pos_weight=1.0):
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=get_loss(loss, pos_weight),
        metrics=[dice, accuracy],
        jit_compile=False,  # XLA is about 4x slower on these CPUs
    )
    return model


def train(images_train, masks_train, images_val, masks_val, out_model, *, encoder_weights="imagenet",
          freeze_encoder=None, dropout=0.0, loss="bce_dice", pos_weight=1.0, learning_rate=1e-3,
          lr_decay=0.1, epochs=40, patience=15, batch_size=16, augment=None, finetune_epochs=0,
          finetune_learning_rate=1e-4, seed=0, deterministic=True, strategy="default", verbose=2,
          train_groups=None, settings=None):
    """Train the U-Net and save its best checkpoint (lowest validation loss) to `out_model`.

    Phase one trains with the encoder frozen or not as `freeze_encoder` says (see `get_model`).
    If `finetune_epochs` > 0, phase two continues from the best phase-one weights at
    `finetune_learning_rate`, with the same decay, the encoder trainable: a frozen one is unfrozen
    but for its BatchNorm layers, whose statistics (the pretrained ones) stay fixed. Each phase
    stops early after `patience` epochs without a better val loss (NaN or inf is never better).
    `strategy` names a `tf.distribute` strategy (see `get_strategy`); `batch_size` is the global
    batch, split across its replicas. `settings` (`nucseg.modelinfo.model_settings`: how the
    images were windowed and normalised) are stored inside the saved model file.

    Returns
    -------
    history : DataFrame
        One row per epoch: epoch, phase, lr and every loss/metric, train and ``val_``.
    info : dict
        best_epoch, best_val_loss, best_val_dice, epochs_run and seconds.
    """
    set_seed(seed, deterministic)
    img_size = int(np.shape(images_train)[1])
    strategy = get_strategy(strategy)
    with strategy.scope():
        model = get_model(img_size, encoder_weights, freeze_encoder, dropout)
    frozen = not encoder_of(model).trainable   # in phase one
    train_ds = make_dataset(images_train, masks_train, batch_size, shuffle=True, augment=augment, seed=seed,
                            groups=train_groups)
    val_ds = make_dataset(images_val, masks_val, batch_size)

    out_model = Path(out_model)
    out_model.parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=".train-", dir=out_model.parent))
    checkpoint = workdir / "best.keras"
    # starting from +inf, a NaN val loss is never "best" (by default Keras saves the first epoch whatever it is)
    best = keras.callbacks.ModelCheckpoint(checkpoint, monitor="val_loss", save_best_only=True,
                                           initial_value_threshold=math.inf)
    phases = [(learning_rate, epochs)]
    if finetune_epochs > 0:
        phases.append((finetune_learning_rate, finetune_epochs))

    start, rows, offset = time.perf_counter(), [], 0
    try:
        for phase, (lr, n_epochs) in enumerate(phases, start=1):
            with strategy.scope():
                if phase == 2:
                    model = keras.models.load_model(checkpoint, compile=False)
                    encoder = encoder_of(model)
                    encoder.trainable = True
                    for layer in encoder.layers:   # statistics it did not learn here (pretrained) stay
                        if frozen and isinstance(layer, keras.layers.BatchNormalization):
                            layer.trainable = False
                compile_model(model, lr, loss, pos_weight)
            schedule = lr_schedule(lr, lr_decay)
            fit = model.fit(
                train_ds, validation_data=val_ds, initial_epoch=offset, epochs=offset + n_epochs,
                verbose=verbose,
                callbacks=[
                    best,
                    EarlyStopping(monitor="val_loss", patience=patience),
                    keras.callbacks.LearningRateScheduler(lambda e, _lr: schedule(e - offset)),
                ],
            )
            for i, epoch in enumerate(fit.epoch):
                rows.append({"epoch": epoch + 1, "phase": phase, "lr": schedule(epoch - offset),
                             **{k: float(v[i]) for k, v in fit.history.items() if k != "learning_rate"}})
            offset = rows[-1]["epoch"]
            if not checkpoint.is_file():   # phase two would have nothing to start from
                raise NucsegError("train: no epoch reached a finite validation loss (NaN or inf), so there is "
                                  "no model to save; lower train.learning_rate or check the data")
        if settings:
            add_to_keras(checkpoint, settings)
        with atomic_path(out_model) as tmp:   # lands with the stage's other outputs
            os.replace(checkpoint, tmp)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    history = pd.DataFrame(rows)
    best_row = history.loc[history["val_loss"].idxmin()]
    info = {
        "best_epoch": int(best_row["epoch"]),
        "best_val_loss": float(best_row["val_loss"]),
        "best_val_dice": float(best_row["val_dice"]),
        "epochs_run": int(len(history)),
        "seconds": round(time.perf_counter() - start, 1),
    }
    return history, info


def versions():
    """Library versions that shape a trained model, for its saved configuration."""
    import platform

    return {"python": platform.python_version(), "tensorflow": tf.__version__,
            "keras": keras.__version__, "numpy": np.__version__}
