import numpy as np
import pytest

from conftest import disk
from nucseg.instances import instances


def _centres(n, radius=8, gap=-3):
    return [(20, 12 + i * (2 * radius + gap)) for i in range(n)]


def _disks(shape, centres, radius):
    mask = np.zeros(shape, bool)
    for c in centres:
        mask |= disk(shape, c, radius)
    return mask


def _touching(n, radius=8, gap=-3, shape=(40, 120)):
    """`n` disks in a row, overlapping by `-gap` pixels: one connected blob."""
    return _disks(shape, _centres(n, radius, gap), radius)


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
    labels = instances(mask, min_size=10)
    assert labels.max() == len(centres)
    _assert_one_label_per_centre(labels, [c[:2] for c in centres], tol=0.5)
    # the default min_size is params.yaml's 30 pixels: the disk of radius 3 (29 pixels) goes
    assert int(mask[37:44, 37:44].sum()) == 29 and instances(mask).max() == len(centres) - 1


def test_min_size_keeps_a_nucleus_of_exactly_that_size():
    """Smaller than `min_size` goes; exactly `min_size` pixels stays."""
    square = np.zeros((12, 12), bool)
    square[3:8, 3:9] = True          # 30 pixels
    assert instances(square, min_size=30).max() == 1
    assert instances(square, min_size=31).max() == 0


def test_holes_filled_and_specks_removed():
    shape = (50, 50)
    ring = disk(shape, (20, 20), 10) & ~disk(shape, (20, 20), 4)
    speck = disk(shape, (45, 45), 1)       # 5 pixels
    labels = instances(ring | speck, min_size=10)
    assert labels.max() == 1
    assert labels[20, 20] == 1             # the hole belongs to the nucleus
    assert labels[45, 45] == 0
    assert instances(ring, fill_holes="none")[20, 20] == 0
    assert instances(ring, fill_holes=False).tolist() == instances(ring, fill_holes="none").tolist()
    assert instances(ring, fill_holes=True).tolist() == instances(ring, fill_holes="all").tolist()


def ring_of_nuclei(n=6, radius=9, spread=17, shape=(100, 100)):
    """`n` touching disks around a gap of background, and their centres."""
    angles = np.arange(n) * 2 * np.pi / n
    centres = [(50 + spread * np.sin(a), 50 + spread * np.cos(a)) for a in angles]
    return _disks(shape, centres, radius), centres


def cluster_of_four(spacing, radius=9, shape=(80, 80)):
    centres = [(30 + dy, 30 + dx) for dy in (0, spacing) for dx in (0, spacing)]
    return _disks(shape, centres, radius), centres


@pytest.mark.parametrize("make", [lambda: ring_of_nuclei(), lambda: ring_of_nuclei(n=5, spread=15)]
                         + [lambda s=s: cluster_of_four(s) for s in (14, 15, 16, 17)])
def test_nuclei_around_a_gap_are_found_with_fill_holes_nucleus(make):
    from scipy import ndimage as ndi

    mask, centres = make()
    gap = ndi.binary_fill_holes(mask) & ~mask
    assert gap.any() and ndi.label(mask)[1] == 1
    labels = instances(mask, fill_holes="nucleus")
    assert labels.max() == len(centres)
    _assert_one_label_per_centre(labels, centres, tol=1.5)
    assert not labels[gap].any()                     # the gap stays background
    assert (labels > 0).sum() == mask.sum()
    # filling every hole first joins them into one blob, gap included (the README says so)
    together = instances(mask, fill_holes="all")
    assert together.max() == 1 and together[gap].all()


@pytest.mark.parametrize("hole", [((38, 42), 5), ((36, 44), 4), ((42, 36), 6)])
def test_fill_holes_nucleus_keeps_a_nucleus_with_its_own_hole_whole(hole):
    shape = (80, 80)
    nucleus = disk(shape, (40, 40), 12)
    labels = instances(nucleus & ~disk(shape, *hole), fill_holes="nucleus")
    assert labels.max() == 1 and ((labels > 0) == nucleus).all()


@pytest.mark.parametrize("radius", [2, 6, 8])
def test_a_hole_anywhere_in_a_nucleus_leaves_it_whole(radius):
    """Every position of the hole that leaves a rim of 2 pixels. A disk with a hole is mirror-
    symmetric about the line through both centres, so its distance map has pairs of tops of exactly
    equal height: split at the hole before such tops became one seed (4% of the positions of a hole
    of radius 1, half of those of radius 6, all of those of radius 8)."""
    shape = (40, 40)
    nucleus = disk(shape, (20, 20), 12)
    positions = [(dy, dx) for dy in range(-12, 13) for dx in range(-12, 13) if np.hypot(dy, dx) + radius <= 10]
    for dy, dx in positions:
        labels = instances(nucleus & ~disk(shape, (20 + dy, 20 + dx), radius), fill_holes="nucleus")
        assert labels.max() == 1 and ((labels > 0) == nucleus).all(), (dy, dx)


@pytest.mark.parametrize("width", [3, 4, 5, 6])
@pytest.mark.parametrize("smooth", [0, 1.0])
def test_a_diagonal_rod_is_one_nucleus(width, smooth):
    """Its distance ridge is a plateau joined only at the corners of pixels: one maximum, one seed
    (labelled 4-connected it was 5 to 19 seeds, and the rod as many nuclei)."""
    yy, xx = np.mgrid[:70, :70]
    rod = (abs(yy - xx) <= width) & (xx + yy > 30) & (xx + yy < 110)
    assert instances(rod, smooth=smooth).max() == 1
    assert instances(rod.T[::-1], smooth=smooth).max() == 1    # the other diagonal


def test_fill_holes_nucleus_fills_a_hole_around_a_speck():
    """A speck under min_size inside a nucleus's hole goes first, so the hole is that nucleus's alone."""
    shape = (80, 80)
    nucleus = disk(shape, (40, 40), 12)
    mask = nucleus & ~disk(shape, (38, 42), 5) | disk(shape, (38, 42), 1)     # 5-pixel speck in the hole
    labels = instances(mask, min_size=30, fill_holes="nucleus")
    assert labels.max() == 1 and ((labels > 0) == nucleus).all()


def _fill_own_holes_one_by_one(labels):
    """The definition, hole by hole: fill a hole whose rim holds one label."""
    from scipy import ndimage as ndi

    labels = labels.copy()
    holes, _ = ndi.label(ndi.binary_fill_holes(labels > 0) & (labels == 0))
    for k in range(1, holes.max() + 1):
        hole = holes == k
        around = np.unique(labels[ndi.binary_dilation(hole) & ~hole])
        if len(around) == 1:
            labels[hole] = around[0]
    return labels


def test_fill_own_holes_matches_its_definition_on_random_masks():
    from scipy import ndimage as ndi

    from nucseg.instances import fill_own_holes

    rng = np.random.default_rng(0)
    filled_some = kept_some = 0
    for _ in range(60):
        mask = ndi.binary_opening(rng.random((50, 50)) > 0.35)
        labels = instances(mask, fill_holes="none", min_size=0)
        before = labels.copy()
        filled = fill_own_holes(labels)
        assert (labels == before).all()                      # the input is left alone
        assert (filled == _fill_own_holes_one_by_one(labels)).all()
        holes = ndi.binary_fill_holes(labels > 0) & (labels == 0)
        filled_some += (filled[holes] > 0).any()
        kept_some += (filled[holes] == 0).any()
    assert filled_some > 10 and kept_some > 10               # both cases occur


def test_fill_own_holes_by_hand():
    from nucseg.instances import fill_own_holes

    labels = np.array([[1, 1, 1, 2, 2, 2, 0],
                       [1, 0, 1, 2, 0, 3, 0],      # (1, 1): inside 1 only; (1, 4): between 2 and 3
                       [1, 1, 1, 2, 3, 3, 0],
                       [0, 0, 0, 0, 0, 0, 0]])
    filled = fill_own_holes(labels)
    assert filled[1, 1] == 1 and filled[1, 4] == 0
    filled[1, 1] = 0
    assert (filled == labels).all()
    border = np.array([[0, 1, 1], [1, 1, 0], [1, 1, 1]])     # background reaching the border: no hole
    assert (fill_own_holes(border) == border).all()


def test_unknown_fill_holes_is_refused():
    with pytest.raises(ValueError, match="fill_holes is 'yes'; use one of all, nucleus, none"):
        instances(np.ones((4, 4)), fill_holes="yes")


def test_empty_mask():
    assert instances(np.zeros((8, 8))).max() == 0


@pytest.mark.parametrize("apart, second_radius", [(10, 10), (14, 10), (16, 10), (14, 9), (16, 9)])
def test_split_depth_is_the_waist_a_split_needs(apart, second_radius):
    """Two disks joined by a waist: split when the waist lies deeper than `split_depth` below the
    lower centre (in the smoothed distance map), one nucleus when it lies less deep. Equal disks
    were split at any depth: both their centres are maxima of equal height, and skimage's
    `h_maxima` keeps both."""
    from scipy import ndimage as ndi

    shape = (40, 70)
    mask = disk(shape, (20, 20), 10) | disk(shape, (20, 20 + apart), second_radius)
    distance = ndi.gaussian_filter(ndi.distance_transform_edt(mask), 1.0)
    lower_centre = min(distance[20, 14:27].max(), distance[20, 14 + apart:27 + apart].max())
    depth = lower_centre - distance[20, 20:21 + apart].min()
    assert 0.5 < depth < 3.5
    assert instances(mask, split_depth=depth - 0.2).max() == 2
    assert instances(mask, split_depth=depth + 0.2).max() == 1


@pytest.mark.parametrize("gap", [1, 2])
def test_blobs_apart_are_never_one_nucleus(gap):
    """Two 4x4 squares `gap` pixels apart: the smoothed distance crosses the gap and puts both tops
    on one plateau, which made them one seed and one nucleus of 32 pixels, above a `min_size` of
    30 that each square alone (16) is below."""
    mask = np.zeros((10, 16), bool)
    mask[3:7, 3:7] = mask[3:7, 7 + gap:11 + gap] = True
    assert instances(mask, min_size=30).max() == 0
    labels = instances(mask, min_size=1)
    assert labels.max() == 2 and set(np.bincount(labels.ravel())[1:]) == {16}


def test_split_depth_0_keeps_separate_blobs_apart():
    # every pixel is a top at depth 0 (params.yaml refuses it): one seed spanned the whole image,
    # and three nuclei were one
    mask = np.zeros((20, 30), bool)
    mask[2:8, 2:8] = mask[10:18, 2:8] = mask[2:8, 12:28] = True
    assert instances(mask, min_size=1, split_depth=0.0).max() == 3
