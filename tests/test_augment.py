import numpy as np
import pytest
import tensorflow as tf

from conftest import synthetic_sample
from nucseg.augment import augment, blur
from nucseg.train import make_dataset


def _pair(seed=0, size=32):
    image, nuclei = synthetic_sample(np.random.default_rng(seed), (size, size), 3, "gray8")
    mask = np.any(nuclei, 0).astype(np.float32)[..., None]
    # an image that is its mask, so that geometry can be checked after the transform
    return (mask * 0.6 + 0.2).astype(np.float32), mask


def test_no_options_is_identity():
    image, mask = _pair()
    out, out_mask = augment(image, mask, tf.constant([1, 2]))
    np.testing.assert_allclose(out, image, atol=1e-6)
    np.testing.assert_array_equal(out_mask, mask)


def test_geometry_moves_mask_with_image():
    image, mask = _pair()
    for s in range(10):
        out, out_mask = augment(image, mask, tf.constant([s, 7]), shift=0.2, flip=True)
        np.testing.assert_array_equal(out.numpy() > 0.5, out_mask.numpy() > 0.5)
        assert set(np.unique(out_mask)) <= {0.0, 1.0}
    moved = [not np.array_equal(augment(image, mask, tf.constant([s, 7]), shift=0.2)[1], mask)
             for s in range(10)]
    assert sum(moved) >= 8


def test_flips_draw_all_four_and_flip_the_mask_alike():
    image = np.arange(16, dtype=np.float32).reshape(4, 4, 1) / 16     # every flip of it differs
    mask = np.zeros((4, 4, 1), np.float32)
    mask[0, 1] = 1
    flips = {"none": lambda a: a, "left-right": lambda a: a[:, ::-1], "up-down": lambda a: a[::-1],
             "both": lambda a: a[::-1, ::-1]}
    seen = set()
    for s in range(16):
        out, out_mask = (t.numpy() for t in augment(image, mask, tf.constant([s, 0]), flip=True))
        (name,) = [name for name, flip in flips.items() if np.allclose(out, flip(image))]
        np.testing.assert_array_equal(out_mask, flips[name](mask))
        seen.add(name)
    assert seen == set(flips)


def test_seeded_and_varied():
    image, mask = _pair()
    kw = dict(brightness=(-0.1, 0.1), contrast=(0.5, 1.5), blur_sigma=2.0, shift=0.1, flip=True)
    a = augment(image, mask, tf.constant([3, 4]), **kw)[0].numpy()
    b = augment(image, mask, tf.constant([3, 4]), **kw)[0].numpy()
    c = augment(image, mask, tf.constant([5, 4]), **kw)[0].numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert 0 <= a.min() and a.max() <= 1


def test_brightness_offset_within_range():
    image, mask = _pair()
    for s in range(5):
        out = augment(image, mask, tf.constant([s, 0]), brightness=(0.05, 0.1))[0].numpy()
        offset = out - image   # values stay in [0.25, 0.9]: nothing is clipped
        assert 0.05 - 1e-6 <= offset.mean() <= 0.1 + 1e-6


def test_contrast_scales_the_deviation_from_the_image_mean():
    image = np.array([[0.2, 0.4], [0.2, 0.4]], np.float32)[..., None]   # mean 0.3, deviations -/+0.1
    mask = np.zeros_like(image)
    for factor, expected in ((2.0, [0.1, 0.5]), (0.5, [0.25, 0.35])):   # 0.3 -/+ 0.1 * factor
        out = augment(image, mask, tf.constant([1, 2]), contrast=(factor, factor))[0].numpy()[..., 0]
        np.testing.assert_allclose(out, [expected, expected], atol=1e-6)
    # at factor 2, scaling the image itself gives 0.4, 0.8 and scaling about mid-grey -0.1 (clipped to 0), 0.3


def test_blur_keeps_mean_and_smooths():
    image, _ = _pair()
    out = blur(tf.constant(image), tf.constant(1.5), 2.0).numpy()
    assert out.shape == image.shape
    assert abs(out.mean() - image.mean()) < 0.01
    assert np.abs(np.diff(out, axis=0)).mean() < np.abs(np.diff(image, axis=0)).mean()


def test_blur_of_a_point_is_the_sampled_gaussian():
    point = np.zeros((21, 21, 1), np.float32)
    point[10, 10] = 1
    for sigma in (0.5, 1.0, 2.0):
        out = blur(tf.constant(point), tf.constant(sigma), 2.0).numpy()[..., 0]
        assert out.sum() == pytest.approx(1.0, rel=1e-5)
        # exp(-d^2 / 2 sigma^2) relative to the centre, d the distance to the point
        assert out[10, 11] / out[10, 10] == pytest.approx(np.exp(-0.5 / sigma**2), rel=1e-4)
        assert out[12, 11] / out[10, 10] == pytest.approx(np.exp(-2.5 / sigma**2), rel=1e-4)
    # sigma 1 on a radius of 3 (max_sigma 1): centre 1 / S^2, S = sum of exp(-k^2 / 2), k in -3..3
    S = 1 + 2 * (np.exp(-0.5) + np.exp(-2) + np.exp(-4.5))
    out = blur(tf.constant(point), tf.constant(1.0), 1.0).numpy()[..., 0]
    assert out[10, 10] == pytest.approx(1 / S**2, rel=1e-5)
    assert out[10, 14] == 0                                # beyond the radius


def test_every_image_gets_its_own_draw():
    # the notebook's blur always hit the first training image; here each image draws its own
    images = np.stack([_pair(s)[0][..., 0] for s in range(4)])
    masks = np.stack([_pair(s)[1][..., 0] for s in range(4)])
    ds = make_dataset(images, masks, batch_size=4, augment=dict(blur_sigma=3.0), seed=0)
    first, second = [x.numpy() for x, _ in ds.take(1).repeat(2)]
    changed = [not np.allclose(first[i, ..., 0], images[i]) for i in range(4)]
    assert all(changed)
    assert not np.array_equal(first, second)   # new draws every epoch


def test_degradation_augmentation():
    image, mask = _pair()
    levels = {"gaussian_noise": [0.0, 0.2], "blur": [0.0, 2.0]}
    never = augment(image, mask, tf.constant([1, 1]), degrade=0.0, degrade_levels=levels)[0].numpy()
    np.testing.assert_allclose(never, image, atol=1e-6)
    outs = [augment(image, mask, tf.constant([s, 1]), degrade=1.0, degrade_levels=levels) for s in range(8)]
    for out, out_mask in outs:
        assert out.shape == image.shape and not np.allclose(out.numpy(), image)
        np.testing.assert_array_equal(out_mask, mask)          # photometric only
    # Second differences: noise raises them; blur at sigma 2 cuts a step's |second differences| from
    # 2h to about 2h / (2 sqrt(2 pi)) = 0.4h, more than degrade's stretch from [0.2, 0.8] to [0, 1] restores
    # (x 1.67). (First differences cannot tell: blur keeps a lone edge's total rise, the stretch raises it.)
    curvature = lambda x: np.abs(np.diff(x, 2, axis=1)).mean()
    noisy = [curvature(o.numpy()) > curvature(image) for o, _ in outs]
    assert 0 < sum(noisy) < 8                                  # both kinds drawn
    again = augment(image, mask, tf.constant([3, 1]), degrade=1.0, degrade_levels=levels)[0].numpy()
    np.testing.assert_array_equal(again, outs[3][0].numpy())   # seeded
    # at degrade 0.5 some images are degraded and some not (seeded draws: always the same ones)
    changed = [not np.allclose(augment(image, mask, tf.constant([s, 1]), degrade=0.5,
                                       degrade_levels={"gaussian_noise": [0.0, 0.2]})[0].numpy(), image)
               for s in range(20)]
    assert 0 < sum(changed) < 20


def test_held_out_severities_are_never_drawn():
    """With degrade_holdout 1 each kind's worst level is never applied: blur's only one (sigma 2)
    goes, so every draw adds noise and none smooths; without it the same 8 draws smooth some."""
    image, mask = _pair()
    levels = {"gaussian_noise": [0.0, 0.2, 0.4], "blur": [0.0, 2.0]}
    curvature = lambda x: np.abs(np.diff(x, 2, axis=1)).mean()
    draws = lambda **kw: [augment(image, mask, tf.constant([s, 1]), degrade=1.0, degrade_levels=levels, **kw)[0]
                          .numpy() for s in range(8)]
    assert all(curvature(o) > curvature(image) for o in draws(degrade_holdout=1))
    assert any(curvature(o) < 0.5 * curvature(image) for o in draws())


def test_excluded_degradations_are_never_drawn():
    """With blur excluded only the noise is ever applied, in the same 8 draws that bring up both
    kinds without the exclusion; excluding every kind draws nothing."""
    image, mask = _pair()
    levels = {"gaussian_noise": [0.0, 0.2], "blur": [0.0, 0.5, 2.0]}
    curvature = lambda x: np.abs(np.diff(x, 2, axis=1)).mean()
    draws = lambda **kw: [augment(image, mask, tf.constant([s, 1]), degrade=1.0, degrade_levels=levels, **kw)[0]
                          .numpy() for s in range(8)]
    assert all(curvature(o) > 0.5 * curvature(image) for o in draws(degrade_exclude=("blur",)))
    assert any(curvature(o) < 0.5 * curvature(image) for o in draws())
    np.testing.assert_array_equal(draws(degrade_exclude=("blur", "gaussian_noise")), [image] * 8)


def test_degrade_choices_are_sorted_by_name_and_leave_out_what_is_asked():
    """A seed picks a choice by its index: the order is pinned (names sorted, severities in order)."""
    from nucseg.augment import degrade_choices

    levels = {"gaussian_noise": [0.0, 0.1, 0.2], "blur": [0.0, 0.5, 2.0], "low_contrast": [1.0, 0.5]}
    assert degrade_choices(levels) == [("blur", 0.5), ("blur", 2.0), ("gaussian_noise", 0.1),
                                       ("gaussian_noise", 0.2), ("low_contrast", 0.5)]
    assert degrade_choices(levels, holdout=1, exclude=["blur"]) == [("gaussian_noise", 0.1)]
    with pytest.raises(TypeError, match="a sequence of names, not the string 'blur'"):
        degrade_choices(levels, exclude="blur")
