import math

import numpy as np
import pytest

from conftest import synthetic_sample
from nucseg.data import prepare_image
from nucseg.evaluate import load_model, predict_probs
from nucseg.train import lr_schedule, make_dataset, train


def _data(n, seed=0):
    rng = np.random.default_rng(seed)
    pairs = [synthetic_sample(rng, (32, 32), 2, "gray8", radius=(3, 6)) for _ in range(n)]
    images = np.stack([prepare_image(im, 32) for im, _ in pairs])
    masks = np.stack([np.any(m, 0) for _, m in pairs]).astype(np.uint8)
    return images, masks


def test_lr_schedule():
    s = lr_schedule(1e-3, 0.1)
    assert s(0) == pytest.approx(1e-3)
    assert s(1) == pytest.approx(1e-3 * math.exp(-0.1))
    assert s(5) == pytest.approx(1e-3 * math.exp(-0.5))


def test_make_dataset_shapes():
    x, y = _data(5)
    batches = list(make_dataset(x, y, batch_size=2))
    assert [b[0].shape[0] for b in batches] == [2, 2, 1]
    assert batches[0][0].shape[1:] == (32, 32, 1) and batches[0][1].dtype == "float32"


def _epochs(ds, n):
    """The windows drawn in `n` epochs, each window told by its constant value."""
    return [[int(round(v * 100)) for b in ds for v in b[0][:, 0, 0, 0].numpy()] for _ in range(n)]


def test_make_dataset_draws_one_window_per_group_each_epoch():
    groups = np.array([0, 0, 0, 1, 2, 2])
    x = np.broadcast_to(np.arange(6, dtype=np.float32)[:, None, None] / 100, (6, 8, 8))
    y = (x > 0.025).astype(np.uint8)          # windows 3..5 are "nucleus"
    epochs = _epochs(make_dataset(x, y, batch_size=4, shuffle=True, seed=1, groups=groups), 12)
    for drawn in epochs:
        assert sorted(groups[drawn].tolist()) == [0, 1, 2]        # one window of each image
    assert {w for drawn in epochs for w in drawn} == set(range(6))   # every window comes up
    assert len({tuple(d) for d in epochs}) > 1                     # drawn anew each epoch
    again = _epochs(make_dataset(x, y, batch_size=4, shuffle=True, seed=1, groups=groups), 12)
    assert again == epochs                                          # and the same for a seed
    images, masks = next(iter(make_dataset(x, y, batch_size=6, seed=2, groups=groups)))
    assert np.array_equal(masks.numpy(), (images.numpy() > 0.025).astype(np.float32))  # masks follow
    with pytest.raises(ValueError, match="sorted group"):
        make_dataset(x, y, groups=[1, 0, 0, 1, 2, 2])


def _train(tmp_path, name, **kw):
    x, y = _data(4)
    return train(x, y, x[:2], y[:2], tmp_path / name, encoder_weights="none", epochs=1,
                 batch_size=2, seed=3, verbose=0, **kw)


# every augmentation, the degradations and window groups included: the seeded draws most at risk
AUGMENT = dict(brightness=(-0.1, 0.1), contrast=(0.8, 1.2), shift=0.1, blur_sigma=1.0, flip=True, degrade=0.5,
               degrade_levels={"gaussian_noise": [0.0, 0.1], "blur": [0.0, 1.0]})


def _train_augmented(folder):
    x, y = _data(6)
    return train(x, y, x[:2], y[:2], folder / "m.keras", train_groups=np.array([0, 0, 1, 2, 2, 3]),
                 encoder_weights="none", epochs=1, batch_size=2, seed=3, verbose=0, augment=AUGMENT)


@pytest.fixture(scope="module")
def augmented(tmp_path_factory):
    folder = tmp_path_factory.mktemp("augmented")
    return folder, *_train_augmented(folder)


def _hard_dice(model, x, y):
    """Mean Dice of the saved model's masks (probability above one half), as `val_dice` counts it."""
    pred = predict_probs(model, x) > 0.5
    return np.mean([2 * (p & t).sum() / (p.sum() + t.sum() + 1e-6) for p, t in zip(pred, y.astype(bool))])


def test_one_epoch_saves_the_trained_model(augmented):
    folder, history, info = augmented
    assert list(history["epoch"]) == [1] and {"loss", "val_loss", "val_dice", "lr"} <= set(history)
    assert info["best_epoch"] == 1 and info["epochs_run"] == 1
    x, y = _data(6)
    model = load_model(folder / "m.keras")
    assert predict_probs(model, _data(3, seed=9)[0]).shape == (3, 32, 32)
    # the file holds the weights that were validated, not a freshly built model
    assert _hard_dice(model, x[:2], y[:2]) == pytest.approx(history["val_dice"].iloc[0], abs=1e-3)
    assert sorted(p.name for p in folder.iterdir()) == ["m.keras"]   # no checkpoint debris


def test_finetune_phase_follows_and_the_best_epoch_is_saved(tmp_path):
    history, info = _train(tmp_path, "f.keras", finetune_epochs=1, freeze_encoder=True)
    assert list(history["phase"]) == [1, 2] and list(history["epoch"]) == [1, 2]
    model = load_model(tmp_path / "f.keras")
    assert model.output_shape == (None, 32, 32, 1)
    x, y = _data(4)
    best = history.set_index("epoch").loc[info["best_epoch"], "val_dice"]
    assert _hard_dice(model, x[:2], y[:2]) == pytest.approx(best, abs=1e-3)


# Two phases long enough to show the checkpoint, early stopping and the schedule at work. The model
# validates on training images with their masks inverted: the better it learns, the worse its val
# loss, whatever the seed. So phase 1 (encoder frozen) has its best epoch early and stops `patience`
# epochs later, phase 2 (fine-tuning, at a high rate) is far worse, and the best epoch is neither
# the last nor in phase 2.
LONG = dict(epochs=8, patience=2, learning_rate=1e-2, lr_decay=0.1, finetune_epochs=2,
            finetune_learning_rate=3e-2, freeze_encoder=True)


def _bn_and_other(encoder):
    """The encoder's BatchNorm layers and its other layers with weights."""
    import keras

    bn = [l for l in encoder.layers if isinstance(l, keras.layers.BatchNormalization)]
    return bn, [l for l in encoder.layers if l.weights and l not in bn]


@pytest.fixture(scope="module")
def long_run(tmp_path_factory):
    """`train` with LONG, spied on: what each `compile_model` call got, and, from a callback added to
    each `fit`, the optimizer's learning rate at every step and the weights after every epoch."""
    import inspect

    import keras

    import nucseg.train as module
    from nucseg.model import encoder_of

    x, y = _data(6)
    rec = {"compiled": [], "fits": [], "lr": {}, "weights": {}}
    real_compile, real_fit = module.compile_model, keras.Model.fit

    def compile_model(*args, **kwargs):
        bound = inspect.signature(real_compile).bind(*args, **kwargs)
        bound.apply_defaults()
        model, encoder = bound.arguments["model"], encoder_of(bound.arguments["model"])
        bn, other = _bn_and_other(encoder)
        rec["compiled"].append({**bound.arguments, "weights": model.get_weights(),
                                "encoder_trainable": encoder.trainable,
                                "bn_trainable": [l.trainable for l in bn],
                                "other_trainable": [l.trainable for l in other]})
        return real_compile(*args, **kwargs)

    class Recorder(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
            rec["lr"].setdefault(self.epoch, []).append(lr)

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch + 1

        def on_epoch_end(self, epoch, logs=None):
            rec["weights"][epoch + 1] = self.model.get_weights()

    def fit(model, *args, **kwargs):
        def encoder_weights():
            bn, other = _bn_and_other(encoder_of(model))
            return [l.get_weights() for l in bn], [l.get_weights() for l in other]

        before = encoder_weights()
        kwargs["callbacks"] = [*kwargs["callbacks"], Recorder()]
        result = real_fit(model, *args, **kwargs)
        rec["fits"].append((before, encoder_weights()))
        return result

    folder = tmp_path_factory.mktemp("long")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(module, "compile_model", compile_model)
        mp.setattr(keras.Model, "fit", fit)
        history, info = train(x[:4], y[:4], x[:2], 1 - y[:2], folder / "m.keras", encoder_weights="none",
                              batch_size=2, seed=3, verbose=0, **LONG)
    return folder / "m.keras", (x[:2], 1 - y[:2]), history, info, rec


def _same(a, b):
    return len(a) == len(b) and all(np.array_equal(u, v) for u, v in zip(a, b))


def test_saves_the_best_epoch_not_the_last(long_run):
    import keras

    from nucseg.losses import get_loss

    path, (xv, yv), history, info, rec = long_run
    val = history["val_loss"].to_numpy()
    best = int(np.argmin(val))
    assert info["best_epoch"] == history["epoch"][best] and info["best_val_loss"] == pytest.approx(val[best])
    # the setting makes the last epoch, and every fine-tune epoch, clearly worse than the best:
    # saving the last epoch, or the best of phase 2 alone, would give a loss far from best_val_loss
    assert info["best_epoch"] < history["epoch"].iloc[-1], f"the setting no longer works:\n{history}"
    assert (history.loc[history["phase"] == 2, "val_loss"] > 2 * info["best_val_loss"]).all(), \
        f"the setting no longer makes phase 2 worse:\n{history}"
    model = keras.models.load_model(path, compile=False)
    logits = model(xv[..., None], training=False)
    assert float(get_loss("bce_dice")(yv[..., None], logits)) == pytest.approx(info["best_val_loss"], rel=1e-4)
    assert _same(model.get_weights(), rec["weights"][info["best_epoch"]])   # the very weights of that epoch


def test_training_stops_after_patience_epochs_without_improvement(long_run):
    _, _, history, info, rec = long_run
    patience, epochs = LONG["patience"], LONG["epochs"]
    assert list(history["epoch"]) == list(range(1, len(history) + 1)) == sorted(rec["weights"])
    phase1 = history.loc[history["phase"] == 1, "val_loss"].to_numpy()
    assert np.argmin(phase1) + 1 + patience < epochs, f"the setting no longer stops phase 1 early:\n{history}"
    assert len(phase1) == np.argmin(phase1) + 1 + patience   # stopped `patience` epochs after its best
    assert list(history["phase"]) == [1] * len(phase1) + [2] * LONG["finetune_epochs"]
    assert info["epochs_run"] == len(history) < epochs + LONG["finetune_epochs"]


def test_finetune_unfreezes_the_encoder_but_not_its_batchnorm(long_run):
    _, _, history, _, rec = long_run
    first, second = rec["compiled"]
    assert first["learning_rate"] == LONG["learning_rate"] and not first["encoder_trainable"]
    assert second["learning_rate"] == LONG["finetune_learning_rate"]
    assert second["encoder_trainable"] and all(second["other_trainable"])
    assert second["bn_trainable"] and not any(second["bn_trainable"])
    # phase 2 starts from the best phase-1 weights, not the last
    phase1 = history[history["phase"] == 1]
    best1 = int(phase1["epoch"][phase1["val_loss"].idxmin()])
    assert best1 < phase1["epoch"].iloc[-1], f"the setting no longer works:\n{history}"
    assert _same(second["weights"], rec["weights"][best1])
    assert not _same(second["weights"], rec["weights"][int(phase1["epoch"].iloc[-1])])
    # and as trained: phase 1 leaves the whole encoder alone; phase 2 changes its convolutions,
    # while its BatchNorm (scale, offset and moving statistics) stays as it was
    (bn_before1, other_before1), (bn_after1, other_after1) = rec["fits"][0]
    assert all(_same(a, b) for a, b in zip(bn_before1 + other_before1, bn_after1 + other_after1))
    (bn_before, other_before), (bn_after, other_after) = rec["fits"][1]
    assert all(_same(a, b) for a, b in zip(bn_before, bn_after))
    assert sum(not _same(a, b) for a, b in zip(other_before, other_after)) > len(other_before) // 2


def test_history_lr_is_the_rate_the_optimizer_used(long_run):
    _, _, history, _, rec = long_run
    used = []
    for epoch in history["epoch"]:
        steps = rec["lr"][epoch]
        assert len(steps) == 2 and len(set(steps)) == 1      # 4 images, batch 2; one rate per epoch
        used.append(steps[0])
    assert history["lr"].tolist() == pytest.approx(used, rel=1e-6)
    # constant for the first epoch of each phase, then decayed by exp(-lr_decay) an epoch
    n1 = int((history["phase"] == 1).sum())
    expected = [LONG["learning_rate"] * math.exp(-0.1 * k) for k in range(n1)] + \
        [LONG["finetune_learning_rate"] * math.exp(-0.1 * k) for k in range(LONG["finetune_epochs"])]
    assert used == pytest.approx(expected, rel=1e-6)


class _Stop(Exception):
    """Raised by a stand-in for `fit` once it has seen what `train` gives it."""


def test_pos_weight_reaches_the_loss_fit_minimises(tmp_path, monkeypatch):
    import inspect

    import keras

    import nucseg.train as module

    compiled, fitted = [], {}
    real_compile = module.compile_model

    def compile_model(*args, **kwargs):
        bound = inspect.signature(real_compile).bind(*args, **kwargs)
        bound.apply_defaults()
        compiled.append(bound.arguments)
        return real_compile(*args, **kwargs)

    def fit(model, *args, **kwargs):   # the epoch itself is not needed (and costs ~40 s here)
        fitted.update(kwargs, model=model)
        raise _Stop

    monkeypatch.setattr(module, "compile_model", compile_model)
    monkeypatch.setattr(keras.Model, "fit", fit)
    with pytest.raises(_Stop):
        _train(tmp_path, "w.keras", loss="bce", pos_weight=10.0)
    assert [c["pos_weight"] for c in compiled] == [10.0]
    assert "class_weight" not in fitted and "sample_weight" not in fitted   # Keras 3 ignores it per pixel
    y = np.array([[[1.0], [0.0]], [[1.0], [0.0]]], np.float32)[None]
    # BCE at logit -1, two nucleus pixels weighing 10 and two background:
    # (20 * ln(1 + e) + 2 * ln(1 + 1/e)) / 22 = (26.26523 + 0.62652) / 22; unweighted 0.81326
    assert float(fitted["model"].loss(y, -np.ones_like(y))) == pytest.approx(1.2223526, rel=1e-6)


def test_same_seed_same_model(augmented, tmp_path):
    """Trained again with the same seed (augmentation, degradations and window draws included):
    the same weights, to the bit."""
    folder, history, _ = augmented
    again, _ = _train_augmented(tmp_path)
    assert again["loss"].tolist() == history["loss"].tolist()
    a, b = load_model(folder / "m.keras"), load_model(tmp_path / "m.keras")
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)


def test_mirrored_strategy_on_two_logical_cpus(tmp_path):
    """Data-parallel training over two logical CPU devices (a subprocess: devices are fixed at start)."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(f"""
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        import numpy as np
        import nucseg.train
        assert nucseg.train.get_strategy("mirrored").num_replicas_in_sync == 2
        built_under = []   # the replicas of the strategy the model's variables are made in
        get_model = nucseg.train.get_model
        def recording_get_model(*args, **kwargs):
            built_under.append(tf.distribute.get_strategy().num_replicas_in_sync)
            return get_model(*args, **kwargs)
        nucseg.train.get_model = recording_get_model
        rng = np.random.default_rng(0)
        x = rng.random((4, 32, 32)).astype("float32")
        y = (x > 0.5).astype("uint8")
        history, info = nucseg.train.train(x, y, x[:2], y[:2], r"{tmp_path / 'm.keras'}", encoder_weights="none",
                                           epochs=1, batch_size=2, verbose=0, strategy="mirrored")
        print("replicas", built_under, "epochs", info["epochs_run"])
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "replicas [2] epochs 1" in result.stdout, result.stderr[-2000:]
    assert (tmp_path / "m.keras").exists()


def test_unknown_strategy():
    from nucseg.train import get_strategy

    with pytest.raises(ValueError, match="unknown strategy"):
        get_strategy("tpu_pod")


def test_a_nan_first_epoch_is_not_kept_as_the_best(tmp_path, monkeypatch):
    """Validation images NaN on the first pass only: epoch 1's val loss is NaN, epoch 2's finite.
    The saved model is the reported best epoch's, 2 or 3 (Keras' checkpoint, left at its default,
    kept epoch 1's: no loss compares below NaN; and phase two started from it).

    Also, in the same run: from random weights the encoder trains in phase one, its BatchNorm
    statistics learnt on these images, and phase two (epoch 3) goes on training them; only
    ImageNet's, in a frozen encoder, are kept (`test_finetune_unfreezes_the_encoder_but_not_its_batchnorm`)."""
    import keras
    import tensorflow as tf

    import nucseg.train as module
    from nucseg.model import encoder_of

    x, y = _data(4)
    passes, weights, real = [], {}, module.make_dataset

    def make_dataset(images, masks, batch_size, shuffle=False, **kwargs):
        if shuffle:
            return real(images, masks, batch_size, shuffle=shuffle, **kwargs)

        def val_pass():
            passes.append(1)
            for i in range(len(images)):
                image = np.full_like(images[i], np.nan) if len(passes) == 1 else images[i]
                yield image[..., None], masks[i][..., None].astype(np.float32)

        spec = (tf.TensorSpec((32, 32, 1), tf.float32), tf.TensorSpec((32, 32, 1), tf.float32))
        return tf.data.Dataset.from_generator(val_pass, output_signature=spec).batch(batch_size)

    real_fit = keras.Model.fit

    def fit(model, *args, **kwargs):
        keep = keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: weights.setdefault(e + 1, model.get_weights()))
        return real_fit(model, *args, **{**kwargs, "callbacks": [*kwargs["callbacks"], keep]})

    batchnorm_trainable, real_compile = [], module.compile_model

    def compile_model(model, *args, **kwargs):
        batchnorm_trainable.append([layer.trainable for layer in _bn_and_other(encoder_of(model))[0]])
        return real_compile(model, *args, **kwargs)

    monkeypatch.setattr(module, "make_dataset", make_dataset)
    monkeypatch.setattr(keras.Model, "fit", fit)
    monkeypatch.setattr(module, "compile_model", compile_model)
    history, info = train(x, y, x[:2], y[:2], tmp_path / "m.keras", encoder_weights="none", epochs=2,
                          finetune_epochs=1, batch_size=2, seed=3, verbose=0)
    assert math.isnan(history["val_loss"].iloc[0]) and history["val_loss"].iloc[1:].notna().all()
    assert info["best_epoch"] in (2, 3)
    assert _same(load_model(tmp_path / "m.keras").get_weights(), weights[info["best_epoch"]])
    assert len(batchnorm_trainable) == 2 and all(batchnorm_trainable[0]) and all(batchnorm_trainable[1])


@pytest.mark.parametrize("losses, stops_after", [
    ([math.nan, 0.5, 0.4, 0.45, 0.46], 5),       # NaN first: better than nothing; 0.45 and 0.46 miss
    ([0.5, math.nan, math.inf, 0.3], 3),         # NaN and inf later are misses too
    ([0.5, 0.4, 0.3, 0.2], None),
])
def test_early_stopping_counts_nan_as_no_improvement(losses, stops_after):
    """Keras' own callback takes a NaN first epoch as the best and stops `patience` epochs later
    (here after the third) however the loss improves."""
    from types import SimpleNamespace

    from nucseg.train import EarlyStopping

    stop = EarlyStopping(monitor="val_loss", patience=2)
    stop._model = SimpleNamespace(stop_training=False)
    stop.on_train_begin()
    stopped = None
    for epoch, loss in enumerate(losses):
        stop.on_epoch_end(epoch, {"val_loss": loss})
        if stop.model.stop_training:
            stopped = epoch + 1
            break
    assert stopped == stops_after


def test_no_finite_validation_loss_means_no_model_and_one_line(tmp_path):
    """With no finite val loss there is no best model: nothing is written (Keras' checkpoint of
    the NaN epoch does not land as the model), and the error says what to change."""
    from nucseg.io import NucsegError

    x, y = _data(4)
    with pytest.raises(NucsegError, match="no epoch reached a finite validation loss .*; lower train.learning_rate"):
        train(x, y, np.full_like(x[:2], np.nan), y[:2], tmp_path / "m.keras", encoder_weights="none", epochs=1,
              batch_size=2, seed=3, verbose=0, settings={"tile": 0, "img_size": 32, "normalization": "none"})
    assert list(tmp_path.iterdir()) == []   # nor its temporary folder
