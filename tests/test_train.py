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


def test_one_epoch_saves_a_loadable_model(augmented):
    folder, history, info = augmented
    assert list(history["epoch"]) == [1] and {"loss", "val_loss", "val_dice", "lr"} <= set(history)
    assert info["best_epoch"] == 1 and info["epochs_run"] == 1
    probs = predict_probs(load_model(folder / "m.keras"), _data(3, seed=9)[0])
    assert probs.shape == (3, 32, 32) and 0 <= probs.min() and probs.max() <= 1
    assert sorted(p.name for p in folder.iterdir()) == ["m.keras"]   # no checkpoint debris


def test_finetune_phase_continues(tmp_path):
    history, info = _train(tmp_path, "f.keras", finetune_epochs=1, freeze_encoder=True)
    assert list(history["phase"]) == [1, 2] and list(history["epoch"]) == [1, 2]
    model = load_model(tmp_path / "f.keras")
    assert model.output_shape == (None, 32, 32, 1)


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
        from nucseg.train import get_strategy, train
        assert get_strategy("mirrored").num_replicas_in_sync == 2
        rng = np.random.default_rng(0)
        x = rng.random((4, 32, 32)).astype("float32")
        y = (x > 0.5).astype("uint8")
        history, info = train(x, y, x[:2], y[:2], r"{tmp_path / 'm.keras'}", encoder_weights="none", epochs=1,
                              batch_size=2, verbose=0, strategy="mirrored")
        print("replicas ok", info["epochs_run"])
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert "replicas ok 1" in result.stdout, result.stderr[-2000:]
    assert (tmp_path / "m.keras").exists()


def test_unknown_strategy():
    from nucseg.train import get_strategy

    with pytest.raises(ValueError, match="unknown strategy"):
        get_strategy("tpu_pod")
