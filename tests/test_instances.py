import numpy as np
import pytest

from conftest import disk
from nucseg.instances import instances


def _touching(n, radius=8, gap=-3, shape=(40, 120)):
    """`n` disks in a row, overlapping by `-gap` pixels: one connected blob."""
    mask = np.zeros(shape, bool)
    for i in range(n):
        mask |= disk(shape, (20, 12 + i * (2 * radius + gap)), radius)
    return mask


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_touching_disks_are_split(n):
    mask = _touching(n)
    from scipy import ndimage as ndi

    assert ndi.label(mask)[1] == 1          # one blob to the eye of connected components
    labels = instances(mask)
    assert labels.max() == n
    assert (labels > 0).sum() == mask.sum()  # nothing lost to the watershed


def test_without_splitting_touching_disks_stay_one():
    assert instances(_touching(3), split_touching=False).max() == 1


def test_separate_disks_of_many_sizes_are_counted():
    shape = (100, 100)
    centres = [(15, 15, 5), (15, 60, 10), (60, 20, 7), (70, 70, 14), (40, 40, 3)]
    mask = np.zeros(shape, bool)
    for y, x, r in centres:
        mask |= disk(shape, (y, x), r)
    assert instances(mask).max() == len(centres)


def test_holes_filled_and_specks_removed():
    shape = (50, 50)
    ring = disk(shape, (20, 20), 10) & ~disk(shape, (20, 20), 4)
    speck = disk(shape, (45, 45), 1)       # 5 pixels
    labels = instances(ring | speck, min_size=10)
    assert labels.max() == 1
    assert labels[20, 20] == 1             # the hole belongs to the nucleus
    assert labels[45, 45] == 0
    assert instances(ring, fill_holes=False)[20, 20] == 0


def test_empty_mask():
    assert instances(np.zeros((8, 8))).max() == 0
