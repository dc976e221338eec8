import numpy as np
import pytest

from conftest import make_samples, write_kaggle_zip
from nucseg.data import native_gray, resize
from nucseg.io import NucsegError, RawSource, save_npz
from nucseg.masks import build_masks
from nucseg.robustness import robustness
from nucseg.windows import cut_windows, model_inputs, model_scale_shape, source_windows, windows


def test_windows_cover_the_image_at_one_scale():
    boxes = windows((512, 384), 256, 128)
    assert [(y, x) for y, x, _, _ in boxes] == [(0, 0), (0, 128), (128, 0), (128, 128), (256, 0), (256, 128)]
    assert {(h, w) for _, _, h, w in boxes} == {(256, 256)}
    assert windows((200, 320), 256, 64) == [(0, 0, 200, 256), (0, 64, 200, 256)]   # short side kept whole
    assert windows((512, 384), 0, 64) == [(0, 0, 512, 384)]                         # tile 0: the whole image


def test_cut_windows_by_hand():
    gray = np.random.default_rng(0).random((512, 384)).astype(np.float32)
    mask = np.zeros((512, 384), np.uint8)
    mask[10:12, 20:22] = 1          # a 2x2 nucleus: exactly one pixel at half scale, (5, 10)
    mask[300:301, 200:202] = 1      # 1x2: half of pixel (150, 100) -> still foreground (>= 1/2)
    mask[400, 300] = 1              # 1x1: a quarter of a pixel -> background
    images, masks = cut_windows(gray, mask, tile=256, size=128)
    assert images.shape == masks.shape == (6, 128, 128) and masks.dtype == np.uint8
    assert np.array_equal(images[3], resize(gray[128:384, 128:384], 128))
    # the block at (10..11, 20..21) of window (0, 0) is its pixel (5, 10), and in no other window
    assert masks[0].sum() == 1 and masks[0][5, 10] == 1
    # window (256, 128) holds (300, 200..201) at (22, 36) and (400, 300) at (72, 86)
    assert masks[5].sum() == 1 and masks[5][22, 36] == 1
    assert set(np.unique(masks)) <= {0, 1}


def test_an_image_smaller_than_the_tile_reaches_the_model_at_the_tile_scale():
    # a disk of radius 20 in a 200x320 image and in a 512x512 one: 10 px at half scale in both
    # (stretching the 200 px side to the model's 128 would make it an ellipse, 12.8 px tall)
    rng = np.random.default_rng(1)
    small, large = rng.random((200, 320)).astype(np.float32), rng.random((512, 512)).astype(np.float32)
    yy, xx = np.mgrid[:200, :320]
    disk_small = (yy - 100) ** 2 + (xx - 100) ** 2 <= 20 ** 2
    yy, xx = np.mgrid[:512, :512]
    disk_large = (yy - 100) ** 2 + (xx - 100) ** 2 <= 20 ** 2
    images, masks = cut_windows(small, disk_small, tile=256, size=128)
    _, masks_large = cut_windows(large, disk_large, tile=256, size=128)
    assert images.shape == (2, 128, 128)
    # the window's 200 rows are mirrored out to 256 at the bottom, then halved
    np.testing.assert_array_equal(images[0], resize(np.concatenate([small[:200, :256], small[199:143:-1, :256]]), 128))
    assert masks[0].sum() == masks_large[0].sum()
    rows, cols = np.nonzero(masks[0][:100])            # the disk itself, above its mirror image
    assert rows.max() - rows.min() == cols.max() - cols.min() < 22


def test_model_scale_shape():
    assert model_scale_shape((1024, 1024), 256, 128) == (512, 512)
    assert model_scale_shape((520, 696), 256, 128) == (260, 348)
    assert model_scale_shape((520, 696), 0, 128) == (128, 128)


def test_source_windows_match_native_images(tmp_path):
    samples = make_samples(3, shape=(96, 120))
    source = RawSource(write_kaggle_zip(tmp_path / "raw.zip", samples))
    _, labels = build_masks(source, 32, jobs=1)
    save_npz(tmp_path / "labels.npz", labels)
    ids = source.ids[1:]
    images, masks, groups = source_windows(source, tmp_path / "labels.npz", ids, tile=64, size=32, jobs=1)
    per_image = len(windows((96, 120), 64, 32))          # 2 x 3 windows
    assert per_image == 6 and images.shape == (2 * per_image, 32, 32)
    assert groups.tolist() == [0] * per_image + [1] * per_image
    gray = native_gray(source.read_image(ids[1]))
    expected_images, expected_masks = cut_windows(gray, labels[ids[1]], 64, 32)
    assert np.array_equal(images[per_image:], expected_images) and np.array_equal(masks[per_image:], expected_masks)
    assert masks.any()


def test_model_inputs_are_the_windows_evenly_thinned(tmp_path):
    samples = make_samples(3, shape=(96, 120))
    source = RawSource(write_kaggle_zip(tmp_path / "raw.zip", samples))
    save_npz(tmp_path / "labels.npz", build_masks(source, 32, jobs=1)[1])
    every, _, _ = source_windows(source, tmp_path / "labels.npz", source.ids, tile=64, size=32, jobs=1)
    assert len(every) == 18                                       # 3 images x 6 windows
    inputs = model_inputs(source, tmp_path / "labels.npz", source.ids, 64, 32, "percentile", jobs=1)
    assert inputs.shape == (18, 32, 32, 1) and inputs.dtype == np.float32
    assert np.array_equal(inputs[..., 0], every)
    four = model_inputs(source, tmp_path / "labels.npz", source.ids, 64, 32, "percentile", limit=4, jobs=1)
    assert np.array_equal(four[..., 0], every[[0, 6, 11, 17]])   # 17 * k / 3 rounded: every image


def test_source_windows_name_labels_of_the_wrong_size(tmp_path):
    samples = make_samples(1, shape=(96, 120))
    source = RawSource(write_kaggle_zip(tmp_path / "raw.zip", samples))
    save_npz(tmp_path / "labels.npz", {source.ids[0]: np.zeros((64, 64), np.uint16)})
    with pytest.raises(NucsegError, match="labels.npz.*dvc repro masks"):
        source_windows(source, tmp_path / "labels.npz", source.ids, tile=64, size=32, jobs=1)


def test_robustness_takes_images_of_different_sizes():
    rng = np.random.default_rng(0)
    images, masks = [], []
    for shape in ((40, 56), (64, 48)):
        mask = np.zeros(shape, np.uint8)
        mask[8:20, 10:24] = 1
        images.append(np.clip(0.2 + 0.6 * mask + rng.normal(0, 0.02, shape), 0, 1).astype(np.float32))
        masks.append(mask)
    oracle = lambda xs: [m.astype(np.float32) for m in masks]
    results, examples, _ = robustness(oracle, images, masks, None, {"gaussian_noise": [0.0, 0.5]}, seed=0)
    assert [r["unet"]["dice"] for r in results["gaussian_noise"]] == [1.0, 1.0]
    assert results["gaussian_noise"][0]["otsu"]["dice"] > 0.95 > results["gaussian_noise"][1]["otsu"]["dice"]
    assert examples["gaussian_noise"][0].shape == (40, 56)
