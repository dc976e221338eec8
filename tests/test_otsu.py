import numpy as np

from conftest import synthetic_sample
from nucseg.data import prepare_image
from nucseg.metrics import pixel_metrics
from nucseg.otsu import otsu_batch, otsu_native, otsu_segment


def test_otsu_native_is_otsu_of_each_image_at_its_own_size(kaggle_zip, samples):
    from nucseg.data import native_gray
    from nucseg.io import RawSource

    source = RawSource(kaggle_zip)
    masks = otsu_native(source, source.ids, jobs=2)
    assert list(masks) == source.ids
    for image_id, (image, nuclei) in samples.items():
        np.testing.assert_array_equal(masks[image_id], otsu_segment(native_gray(image)))
        # bright nuclei on dark and dark (rgb) nuclei on light alike: the disks, nearly exactly
        summary, _ = pixel_metrics(np.any(nuclei, axis=0)[None], masks[image_id][None])
        assert summary["mean"]["dice"] > 0.95


def test_otsu_native_uses_its_normalization_and_inversion(kaggle_zip, samples):
    """The otsu stage's `normalization` and `invert_above` reach every image: never inverting
    changes the dark-on-light (rgb) samples' masks."""
    from nucseg.data import native_gray
    from nucseg.io import RawSource

    source = RawSource(kaggle_zip)
    masks = otsu_native(source, source.ids, normalization="none", invert_above=1.0, jobs=1)
    for image_id, (image, _) in samples.items():
        np.testing.assert_array_equal(masks[image_id], otsu_segment(native_gray(image, "none"), 1.0))
    default = otsu_native(source, source.ids, jobs=1)
    assert any(not np.array_equal(masks[i], default[i]) for i in source.ids)


def test_bright_nuclei_on_dark():
    image, nuclei = synthetic_sample(np.random.default_rng(1), (64, 64), 5, "gray8")
    pred = otsu_segment(image / 255.0)
    summary, _ = pixel_metrics(np.any(nuclei, 0)[None], pred[None])
    assert summary["mean"]["dice"] > 0.95


def test_dark_nuclei_on_light_are_inverted():
    image, nuclei = synthetic_sample(np.random.default_rng(2), (64, 64), 5, "rgb")
    gray = prepare_image(image, 64)
    raw = gray > 0.5
    assert raw.mean() > 0.5                  # the bright side is the background here
    pred = otsu_segment(gray)
    summary, _ = pixel_metrics(np.any(nuclei, 0)[None], pred[None])
    assert summary["mean"]["dice"] > 0.95


def test_flat_image_has_no_foreground():
    assert not otsu_segment(np.full((8, 8), 0.4)).any()
    assert otsu_batch(np.zeros((2, 8, 8))).shape == (2, 8, 8)


# Five pixels at 0 and one each at 0.25, 0.5 and 1 (mean 1.75 / 8). Between-class variance
# w0 * w1 * (mu1 - mu0)^2 of each split:
#   0 | 0.25:   (5/8)(3/8)(0.5833 - 0)^2      = 0.0798
#   0.25 | 0.5: (6/8)(2/8)(0.75 - 0.0417)^2   = 0.0941   <- Otsu's threshold
#   0.5 | 1:    (7/8)(1/8)(1 - 0.1071)^2      = 0.0872
# A mid-range threshold (0.5) would keep only the 1, the mean (0.22) the 0.25 as well.
X = np.array([[0, 0, 0, 0], [0, 0.25, 0.5, 1]])
OTSU_X = [[0, 0, 0, 0], [0, 0, 1, 1]]


def test_otsu_hand_computed():
    np.testing.assert_array_equal(otsu_segment(X), OTSU_X)


def test_inverted_where_the_bright_side_is_more_than_half():
    # 1 - X: the same split, with 6 of 8 pixels above the threshold, so the dark two are nuclei
    np.testing.assert_array_equal(otsu_segment(1 - X), OTSU_X)
    # X's bright side is 2/8 of the image: more than a limit of 0.2, so inverted
    np.testing.assert_array_equal(otsu_segment(X, invert_above=0.2), [[1, 1, 1, 1], [1, 1, 0, 0]])
    np.testing.assert_array_equal(otsu_batch(X[None], invert_above=0.2)[0], [[1, 1, 1, 1], [1, 1, 0, 0]])


def test_exactly_half_is_not_inverted():
    half = np.array([[0, 0, 0, 0], [1, 1, 1, 1]])
    np.testing.assert_array_equal(otsu_segment(half), half)
    np.testing.assert_array_equal(otsu_segment(1 - half), 1 - half)
