import numpy as np
import pandas as pd
import pytest

from conftest import synthetic_sample
from nucseg.data import prepare_image
from nucseg.degrade import degrade
from nucseg.instances import instances
from nucseg.masks import resize_mask
from nucseg.robustness import (as_metrics, curve_rows, labels_at, paired_interval, params_at_scale, robustness,
                               worst_case_table)


def test_robustness_scores_every_severity():
    rng = np.random.default_rng(0)
    pairs = [synthetic_sample(rng, (64, 64), 4, "gray8") for _ in range(3)]
    images = np.stack([prepare_image(im, 64) for im, _ in pairs])
    masks = np.stack([np.any(n, 0) for _, n in pairs]).astype(np.uint8)
    labels = [instances(m) for m in masks]
    seen = []                                               # what the U-Net is given, call by call
    perfect = lambda xs: seen.append(xs) or [m.astype(np.float32) for m in masks]   # degradations cannot hurt it
    levels = {"gaussian_noise": [0.0, 0.3, 0.6], "blur": [0.0, 3.0]}
    results, examples, per_image = robustness(perfect, images, masks, labels, levels, seed=1)
    assert [r["severity"] for r in results["gaussian_noise"]] == [0.0, 0.3, 0.6]
    assert all(r["unet"]["dice"] == 1 and r["unet"]["dsb"] == 1 for rows in results.values() for r in rows)
    otsu = [r["otsu"]["dice"] for r in results["gaussian_noise"]]
    assert otsu[0] > 0.95 and otsu[-1] < otsu[0]         # Otsu does suffer from noise
    assert examples["blur"][0].shape == (64, 64) and len(examples["blur"]) == 4
    for name, rows in results.items():   # the means are of the per-image scores, image by image
        for row, each in zip(rows, per_image[name]):
            for method in ("unet", "otsu"):
                assert len(each[method]["dice"]) == len(each[method]["dsb"]) == 3
                assert row[method]["dice"] == pytest.approx(np.mean(each[method]["dice"]))
                assert row[method]["dsb"] == pytest.approx(np.mean(each[method]["dsb"]))
    assert per_image["gaussian_noise"][0]["unet"]["dice"] == [1.0, 1.0, 1.0]

    # the U-Net is given the degraded images, each degraded with its own seed, at every severity
    # (both clean levels are the same images: one call may serve both)
    degraded = {(name, s): [degrade(im, name, s, seed=1 * 1_000_003 + i) for i, im in enumerate(images)]
                for name, severities in levels.items() for s in severities}
    same = lambda a, b: len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))
    for level, expected in degraded.items():
        assert any(same(given, expected) for given in seen), level
    assert all(any(same(given, expected) for expected in degraded.values()) for given in seen)
    np.testing.assert_array_equal(examples["blur"][0], degraded["blur", 3.0][0])
    # every degradation's clean level is the same images: predicted and scored once, not per degradation
    assert len(seen) == len(degraded) - 1 == 4


def test_robustness_uses_its_otsu_and_instance_settings():
    """`otsu.invert_above`, the `instances` params and `example` reach the scoring: with every
    Otsu mask inverted and every nucleus under `min_size`, a perfect U-Net still scores DSB 0."""
    from nucseg.otsu import otsu_segment

    rng = np.random.default_rng(0)
    pairs = [synthetic_sample(rng, (64, 64), 4, "gray8") for _ in range(2)]
    images = [prepare_image(im, 64) for im, _ in pairs]
    masks = [np.any(n, 0).astype(np.uint8) for _, n in pairs]
    labels = [instances(m) for m in masks]
    perfect = lambda xs: [m.astype(np.float32) for m in masks]
    results, examples, _ = robustness(perfect, images, masks, labels, {"blur": [0.0, 1.0]}, invert_above=0.0,
                                      instance_params={"min_size": 10 ** 6}, example=1)
    assert results["blur"][0]["otsu"]["dice"] < 0.2          # the background segmented: inverted
    assert results["blur"][0]["unet"]["dice"] == 1 and results["blur"][0]["unet"]["dsb"] == 0
    degraded, truth, otsu_mask, unet_mask = examples["blur"]
    np.testing.assert_array_equal(truth, masks[1])            # the second image, as asked
    np.testing.assert_array_equal(unet_mask, masks[1])
    np.testing.assert_array_equal(otsu_mask, otsu_segment(degraded, 0.0))


def test_worst_case_margin_hand_computed():
    image = np.array([[1, 1], [1, 1], [0, 0], [0, 0]], np.float32)
    truth = image.astype(np.uint8)
    # linear_gradient 0.8 over two columns: the left one times 0.2, the right one plus 0.4 (clipped),
    # [[0.2, 1], [0.2, 1], [0, 0.4], [0, 0.4]]: multiples of 1/255 spanning [0, 1], which quantising
    # and stretching keep. Otsu splits {0, 0.2, 0.4} | {1}: between-class variance (3/4)(1/4)(1 - 0.2)^2
    # = 0.12, against 0.09 for {0, 0.2} | {0.4, 1} and 0.053 for {0} | {0.2, 0.4, 1}. Its mask, the
    # right column's top half, has TP 2, FN 2: Dice 2/3. The stand-in U-Net (the image as probability,
    # above 0.3) takes the whole right column, TP 2, FP 2, FN 2: Dice 1/2. Both are right on the clean image.
    results, _, per_image = robustness(lambda xs: list(xs), [image], [truth], None, {"linear_gradient": [0.0, 0.8]},
                            threshold=0.3)
    assert [r["otsu"]["dice"] for r in results["linear_gradient"]] == pytest.approx([1, 2 / 3])
    assert [r["unet"]["dice"] for r in results["linear_gradient"]] == pytest.approx([1, 1 / 2])
    assert worst_case_table(results)["linear_gradient"] == pytest.approx(
        {"severity": 0.8, "unet_dice": 1 / 2, "otsu_dice": 2 / 3, "margin": 1 / 2 - 2 / 3})   # U-Net minus Otsu
    # one image: every resample is that image, the interval is the margin itself; Otsu better on it
    row = worst_case_table(results, per_image)["linear_gradient"]
    assert [row["margin_ci95_low"], row["margin_ci95_high"]] == pytest.approx([-1 / 6, -1 / 6])
    assert row["otsu_better"] == 1


def test_otsu_better_does_not_count_ties():
    """Both methods often score the same on an image (0 or 1 alike): a tie is not Otsu better."""
    results = {"blur": [{"severity": 3.0, "unet": {"dice": 0.6}, "otsu": {"dice": 0.5}}]}
    per_image = {"blur": [{"unet": {"dice": [0.5, 0.8, 0.4]}, "otsu": {"dice": [0.5, 1.0, 0.2]}}]}
    assert worst_case_table(results, per_image)["blur"]["otsu_better"] == 1


def test_metrics_file_keeps_every_number_where_dvc_reads_it():
    """`dvc metrics diff` compares numbers in nested objects and skips lists: every score of the
    robustness metrics file is a number reached through keys alone (the severity as a key)."""
    results = {"blur": [{"severity": 0.0, "otsu": {"dice": 0.8, "dsb": 0.4}, "unet": {"dice": 0.9, "dsb": 0.5}},
                        {"severity": 0.5, "otsu": {"dice": 0.7, "dsb": 0.3}, "unet": {"dice": 0.85, "dsb": 0.45}}],
               "low_contrast": [{"severity": 1.0, "otsu": {"dice": 0.8}, "unet": {"dice": 0.9}},
                                {"severity": 0.05, "otsu": {"dice": 0.75}, "unet": {"dice": 0.8}}]}
    per_image = {name: [{m: {"dice": [row[m]["dice"]] * 2} for m in ("otsu", "unet")} for row in rows]
                 for name, rows in results.items()}
    data = as_metrics(results, worst_case_table(results, per_image), n_images=2)

    def leaves(node, path=()):
        assert not isinstance(node, list), f"a list at {'.'.join(path)}"
        if isinstance(node, dict):
            for key, value in node.items():
                yield from leaves(value, (*path, key))
        else:
            yield ".".join(path), node

    flat = dict(leaves(data))
    assert flat["curves.blur.0.5.unet.dice"] == 0.85 and flat["curves.low_contrast.1.otsu.dice"] == 0.8
    assert flat["worst.blur.margin_ci95_low"] == pytest.approx(0.15) == flat["worst.blur.margin_ci95_high"]
    assert len(flat) == 1 + 2 * 7 + 2 * 2 * 2 + 2 * 2 * 1   # n_images, two worst rows of 7, blur and low_contrast
    with pytest.raises(ValueError, match="repeat"):
        as_metrics({"blur": results["blur"] * 2}, {}, 2)


def test_curve_rows_number_the_levels_in_order_for_the_plot():
    """Poisson noise's photon counts fall as it worsens (0 is none): the plot's x is the level, 0
    for the undamaged images, so every panel reads left to right from none to worst."""
    results = {"poisson_noise": [{"severity": 0.0, "otsu": {"dice": 0.8, "dsb": 0.4}, "unet": {"dice": 0.9, "dsb": 0.5}},
                                 {"severity": 200.0, "otsu": {"dice": 0.7, "dsb": 0.3}, "unet": {"dice": 0.85, "dsb": 0.4}},
                                 {"severity": 5.0, "otsu": {"dice": 0.2, "dsb": 0.1}, "unet": {"dice": 0.6, "dsb": 0.2}}]}
    rows = pd.DataFrame(curve_rows(results))
    assert rows.columns.tolist() == ["degradation", "level", "severity", "method", "dice", "dsb"]
    unet = rows[rows["method"] == "unet"]
    assert unet["level"].tolist() == [0, 1, 2] and unet["severity"].tolist() == [0.0, 200.0, 5.0]
    assert unet["dice"].tolist() == [0.9, 0.85, 0.6] and rows[rows["method"] == "otsu"]["dsb"].tolist() == [0.4, 0.3, 0.1]


def test_paired_interval_hand_computed():
    """Two images with differences 0 and 1: a resample's mean is 0, 1/2 or 1 with chances 1/4,
    1/2, 1/4, so the 2.5th percentile is 0 and the 97.5th 1; a constant difference is its own
    interval; four times the images (same spread) halve the interval's width, as 1/sqrt(n)."""
    assert paired_interval([0.5, 1.0], [0.5, 0.0]) == [0.0, 1.0]
    assert paired_interval([0.9, 0.8, 0.7], [0.6, 0.5, 0.4]) == pytest.approx([0.3, 0.3])
    rng = np.random.default_rng(1)
    a, b = rng.random(50), rng.random(50)
    low, high = paired_interval(a, b, seed=2)
    assert low < np.mean(a - b) < high
    low4, high4 = paired_interval(np.tile(a, 4), np.tile(b, 4), seed=2)
    assert (high4 - low4) / (high - low) == pytest.approx(0.5, abs=0.05)


def test_instance_params_follow_the_images_to_model_scale():
    """A nucleus of 44 native pixels (above instances.min_size 30) is about 11 at half size: kept
    with the params scaled (min_size 8), lost with the native ones."""
    native = {"min_size": 30, "fill_holes": True, "split_touching": True, "split_depth": 1.0, "smooth": 1.0}
    assert params_at_scale(native, 0.5) == {**native, "min_size": 8, "split_depth": 0.5, "smooth": 0.5}
    yy, xx = np.mgrid[:64, :64]
    nucleus = ((yy - 20) ** 2 + (xx - 20) ** 2 <= 14).astype(np.uint8)   # a disk of 45 pixels
    assert 40 < nucleus.sum() < 50
    small = resize_mask(nucleus, (32, 32))
    assert 8 <= small.sum() < 30
    assert instances(small, **params_at_scale(native, 0.5)).max() == 1
    assert instances(small, **native).max() == 0


def test_labels_at_keeps_label_values():
    labels = np.zeros((8, 8), np.int32)
    labels[:4, :4], labels[4:, 4:] = 3, 7
    small = labels_at(labels, 4)
    assert set(np.unique(small)) == {0, 3, 7} and small.shape == (4, 4)


def test_labels_at_a_wider_size_takes_the_nearest_pixels():
    """Rows and columns are not swapped: (2, 3) from 4x6 takes the pixels at the centres, rows 1
    and 3, columns 1, 3 and 5."""
    np.testing.assert_array_equal(labels_at(np.arange(24).reshape(4, 6), (2, 3)), [[7, 9, 11], [19, 21, 23]])
