import numpy as np
import pandas as pd
import pytest

from nucseg.io import RawSource
from nucseg.rle import labels_to_rles, rle_decode, rle_encode


def test_hand_computed():
    # column-major, 1-based: column 0 is pixels 1..3 ([0, 1, 1]), column 1 is pixels 4..6
    # ([1, 1, 0]), so one run of 4 starting at pixel 2
    mask = np.array([[0, 1], [1, 1], [1, 0]])
    assert rle_encode(mask) == "2 4"
    np.testing.assert_array_equal(rle_decode("2 4", (3, 2)), mask)
    assert rle_encode(np.array([[1, 0], [0, 1]])) == "1 1 4 1"
    assert rle_encode(np.zeros((2, 2))) == ""
    np.testing.assert_array_equal(rle_decode("", (2, 2)), np.zeros((2, 2)))
    assert rle_encode(np.ones((2, 2))) == "1 4"


def test_round_trip_random():
    rng = np.random.default_rng(0)
    for _ in range(20):
        mask = rng.random((13, 7)) > 0.6
        np.testing.assert_array_equal(rle_decode(rle_encode(mask), mask.shape), mask)


def test_bad_strings():
    with pytest.raises(ValueError, match="odd"):
        rle_decode("1 2 3", (2, 2))
    with pytest.raises(ValueError, match="beyond"):
        rle_decode("3 5", (2, 2))
    with pytest.raises(ValueError, match="beyond"):   # starts are 1-based: 0 is before the first pixel
        rle_decode("0 1", (2, 2))


def test_labels_to_rles():
    labels = np.array([[1, 0], [2, 2]])
    assert labels_to_rles(labels) == ["1 1", "2 1 4 1"]
    labels = np.array([[0, 0, 3], [0, 3, 3], [5, 0, 0]], np.uint16)   # label numbers 1, 2 and 4 unused
    # column-major, 1-based: column 0 is pixels 1-3 [0, 0, 5], column 1 pixels 4-6 [0, 3, 0],
    # column 2 pixels 7-9 [3, 3, 0]: nucleus 3 is pixel 5 and the run 7-8, nucleus 5 pixel 3
    assert labels_to_rles(labels) == ["5 1 7 2", "3 1"]
    assert labels_to_rles(labels.astype(np.int64) * 10**12) == ["5 1 7 2", "3 1"]   # any label numbers
    assert labels_to_rles(labels > 0) == ["3 1 5 1 7 2"]                            # a mask: one object


def test_labels_to_rles_equals_encoding_each_nucleus_over_the_whole_image():
    from skimage.measure import label

    rng = np.random.default_rng(3)
    labels = label(rng.random((60, 70)) > 0.6).astype(np.uint32)   # dozens of ragged objects, some touching edges
    assert labels.max() > 50
    assert labels_to_rles(labels) == [rle_encode(labels == k) for k in range(1, labels.max() + 1)]


def test_reencoding_the_real_masks_matches_the_official_csv(shared_zip):
    from conftest import SHARED_CSV

    if not SHARED_CSV.exists():
        pytest.skip(f"{SHARED_CSV} absent")
    official = pd.read_csv(SHARED_CSV)
    source = RawSource(shared_zip)
    ids = source.ids[::15]   # 45 images, spread over the set
    expected = official[official["ImageId"].isin(ids)]
    ours = [(image_id, rle_encode(mask)) for image_id in ids for _, mask in source.read_masks(image_id)]
    assert len(ours) == len(expected) > 1000
    assert sorted(ours) == sorted(zip(expected["ImageId"], expected["EncodedPixels"]))
