import numpy as np

from nucseg.data import ingest, is_color, normalize, prepare_image, resize, select, to_gray
from nucseg.io import RawSource
from nucseg.otsu import otsu_segment


def test_to_gray_weights_and_scales():
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255]]], np.uint8)
    np.testing.assert_allclose(to_gray(rgb)[0], [0.299, 0.587, 0.114], atol=1e-6)
    rgba = np.concatenate([rgb, np.zeros((1, 3, 1), np.uint8)], -1)  # alpha is ignored
    np.testing.assert_allclose(to_gray(rgba), to_gray(rgb))
    np.testing.assert_allclose(to_gray(np.array([[0, 65535, 32768]], np.uint16)), [[0, 1, 32768 / 65535]])
    np.testing.assert_allclose(to_gray(np.array([[0, 255, 51]], np.uint8)), [[0, 1, 0.2]])
    gray_alpha = np.stack([np.array([[0, 51], [255, 102]], np.uint8), np.full((2, 2), 255, np.uint8)], -1)
    np.testing.assert_allclose(to_gray(gray_alpha), [[0, 0.2], [1, 0.4]], atol=1e-6)   # alpha is ignored


def test_is_color():
    gray_rgb = np.repeat(np.arange(9, dtype=np.uint8).reshape(3, 3, 1), 3, -1)
    assert not is_color(gray_rgb)
    purple = gray_rgb.copy()
    purple[..., 1] //= 2
    purple[1, 1] = (200, 40, 180)
    assert is_color(purple)
    assert not is_color(np.zeros((3, 3), np.uint8))


def test_normalize_percentiles_and_flat():
    x = np.linspace(0.2, 0.4, 1001, dtype=np.float32)
    y = normalize(x, low=0, high=100)
    assert y.min() == 0 and y.max() == 1
    np.testing.assert_allclose(y[500], 0.5, atol=1e-5)
    assert not normalize(np.full((4, 4), 0.3)).any()
    np.testing.assert_array_equal(normalize(x, "none"), x)


def test_normalize_keeps_a_few_small_nuclei_on_an_even_background():
    # 9 of 10,000 pixels bright: the 99.8th percentile is the background's, as is the 1st
    x = np.full((100, 100), 12.0)
    x[40:43, 50:53] = 200.0
    y = normalize(x)
    assert y[40:43, 50:53].min() == 1 and y.sum() == 9
    assert otsu_segment(y).sum() == 9


def test_resize_averages_when_shrinking():
    x = np.kron(np.array([[0, 1], [1, 0]], np.float32), np.ones((4, 4), np.float32))
    small = resize(x, 2)
    np.testing.assert_allclose(small, [[0, 1], [1, 0]], atol=1e-6)


def test_dim_16bit_and_bright_8bit_look_alike_after_preparation():
    rng = np.random.default_rng(0)
    base = rng.random((64, 64)).astype(np.float32)
    a = prepare_image((base * 4095).astype(np.uint16), 32)   # 12-bit data in 16-bit PNG
    b = prepare_image((base * 255).astype(np.uint8), 32)
    assert a.shape == b.shape == (32, 32) and a.dtype == np.float32
    assert np.abs(a - b).max() < 0.02 and a.min() == 0 and a.max() == 1


def test_ingest_synthetic(kaggle_zip, samples):
    source = RawSource(kaggle_zip)
    images, meta = ingest(source, img_size=32, jobs=2)
    assert images.shape == (len(samples), 32, 32) and images.dtype == np.float32
    assert 0 <= images.min() and images.max() <= 1
    assert meta["id"].tolist() == sorted(samples)
    first = samples[meta["id"][0]][0]
    assert (meta["height"][0], meta["width"][0]) == first.shape[:2]
    assert meta.set_index("id")["color"].to_dict() == {
        i: samples[i][0].ndim == 3 for i in samples}
    for i, image_id in enumerate(meta["id"]):       # each image's own, in the table's order
        np.testing.assert_array_equal(images[i], prepare_image(samples[image_id][0], 32))
    serial, _ = ingest(source, img_size=32, jobs=1)
    np.testing.assert_array_equal(images, serial)
    unnormalised, _ = ingest(source, img_size=32, normalization="none", jobs=1)
    assert not np.allclose(unnormalised, images)


def test_select_orders_by_requested_ids():
    arr = np.arange(4)
    assert select(arr, ["a", "b", "c", "d"], ["c", "a"]).tolist() == [2, 0]
