import numpy as np
import pytest

from conftest import disk
from nucseg.instances import instances


def _centres(n, radius=8, gap=-3):
    return [(20, 12 + i * (2 * radius + gap)) for i in range(n)]


def _touching(n, radius=8, gap=-3, shape=(40, 120)):
    """`n` disks in a row, overlapping by `-gap` pixels: one connected blob."""
    mask = np.zeros(shape, bool)
    for c in _centres(n, radius, gap):
        mask |= disk(shape, c, radius)
    return mask


def _assert_one_label_per_centre(labels, centres, tol):
    """Each label's centroid lies within `tol` pixels of a disk centre, each centre used once."""
    from scipy import ndimage as ndi

    found = np.array(ndi.center_of_mass(labels > 0, labels, range(1, labels.max() + 1)))
    dist = np.linalg.norm(found[:, None] - np.array(centres)[None], axis=2)
    assert sorted(dist.argmin(1).tolist()) == list(range(len(centres))), found.round(1)
    assert dist.min(1).max() <= tol, found.round(1)


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_touching_disks_are_split(n):
    mask = _touching(n)
    from scipy import ndimage as ndi

    assert ndi.label(mask)[1] == 1          # one blob to the eye of connected components
    labels = instances(mask)
    assert labels.max() == n
    assert (labels > 0).sum() == mask.sum()  # nothing lost to the watershed
    # and cut across the row, at the necks: a cut along it (or anywhere else) moves the centroids
    _assert_one_label_per_centre(labels, _centres(n), tol=2)


def test_without_splitting_touching_disks_stay_one():
    assert instances(_touching(3), split_touching=False).max() == 1


def test_separate_disks_of_many_sizes_are_counted():
    shape = (100, 100)
    centres = [(15, 15, 5), (15, 60, 10), (60, 20, 7), (70, 70, 14), (40, 40, 3)]
    mask = np.zeros(shape, bool)
    for y, x, r in centres:
        mask |= disk(shape, (y, x), r)
    labels = instances(mask)
    assert labels.max() == len(centres)
    _assert_one_label_per_centre(labels, [c[:2] for c in centres], tol=0.5)


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
