"""From a semantic (nucleus / background) mask to individual nuclei."""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.morphology import local_maxima, reconstruction
from skimage.segmentation import relabel_sequential, watershed

from .params import FILL_HOLES


def instances(mask, min_size=30, fill_holes="all", split_touching=True, split_depth=1.0, smooth=1.0):
    """Label the nuclei of a binary mask.

    Connected components, optionally split where nuclei touch: a watershed on the distance to the
    background, seeded by its maxima that stand at least `split_depth` pixels above their
    surroundings (so a neck between two round nuclei splits, a slightly uneven rim does not).

    Holes: ``"all"`` fills every hole of the mask before splitting, so a nucleus with a missed
    nucleolus stays one, but a ring or a tight cluster of touching nuclei around a gap becomes one
    blob the watershed cannot split (its deepest point is the filled gap). ``"nucleus"`` splits the
    mask as it is and then fills only the holes that lie inside one nucleus: the gap inside a ring
    stays background and each nucleus of it is found, and a nucleus with a hole of its own stays one
    nucleus, its hole filled. `bench/fill_holes.py` compares the modes on the validation split.

    Parameters
    ----------
    mask : ndarray (H, W), nonzero is nucleus
    min_size : int
        Objects smaller than this many pixels are removed (after splitting).
    fill_holes : {"all", "nucleus", "none"}
        Which holes become nucleus (see above); True and False mean "all" and "none".
    split_touching : bool
        Split touching nuclei with the distance-transform watershed.
    split_depth : float
        How much deeper (in pixels of distance) a seed must be than the saddle to its neighbour.
    smooth : float
        Gaussian sigma applied to the distance map before finding seeds (0: none).

    Returns
    -------
    ndarray (H, W) of int32: 0 background, 1..K nuclei
    """
    fill_holes = {True: "all", False: "none"}.get(fill_holes, fill_holes)
    if fill_holes not in FILL_HOLES:
        raise ValueError(f"fill_holes is {fill_holes!r}; use one of {', '.join(FILL_HOLES)}")
    mask = np.asarray(mask) > 0
    if fill_holes == "all":
        mask = ndi.binary_fill_holes(mask)
    labels, n = ndi.label(mask)
    if split_touching and n:
        distance = ndi.distance_transform_edt(mask)
        if smooth:
            distance = ndi.gaussian_filter(distance, smooth)
        seeds = _one_per_component(_seeds(distance, split_depth), labels, n)
        # a component without a seed (too small or flat) keeps its own label
        unseeded = np.setdiff1d(np.unique(labels[mask]), np.unique(labels[seeds > 0]))
        extra = np.isin(labels, unseeded)
        seeds[extra] = labels[extra] + seeds.max()
        labels = watershed(-distance, seeds, mask=mask)
    if min_size > 1 and labels.max():
        sizes = np.bincount(labels.ravel())
        small = sizes < min_size
        small[0] = False
        labels[small[labels]] = 0
    if fill_holes == "nucleus":   # after the specks go: one inside a hole would count as a second nucleus
        labels = fill_own_holes(labels)
    return relabel_sequential(labels)[0].astype(np.int32)


def _one_per_component(seeds, labels, n):
    """`seeds` cut where they span components of `labels` (1..`n`), and kept inside them.

    The smoothed distance crosses a gap of a pixel or two between blobs, which can put the tops
    of two blobs on one plateau (`_seeds`): one seed for both would make them one nucleus, and
    two specks one object above `min_size`. Seeds are numbered as before, a cut seed's parts in
    the order of their components.
    """
    inside = (seeds > 0) & (labels > 0)
    key = seeds[inside].astype(np.int64) * (n + 1) + labels[inside]
    out = np.zeros(seeds.shape, np.int32)
    out[inside] = np.unique(key, return_inverse=True)[1].ravel() + 1
    return out


def _seeds(distance, depth):
    """The watershed's seeds: the tops of the maxima of `distance` that stand at least `depth`
    above the saddle to any higher one (the pixels skimage's `h_maxima` marks), numbered in raster
    order of their first pixel.

    Tops are 8-connected, so that a plateau along a diagonal ridge is one seed. Two tops of equal
    height joined by a saddle less than `depth` below them (two lobes of one nucleus with a shallow
    waist) are one seed: `h_maxima` marks both, and the watershed would split the nucleus at its
    waist. They lie on one plateau of the h-maxima transform, which is what joins them here.
    """
    if depth > np.ptp(distance):
        return np.zeros(distance.shape, np.int32)
    # the h-maxima transform, as h_maxima computes it (the resolution term absorbs rounding)
    resolution = 2 * np.finfo(distance.dtype).resolution * np.abs(distance)
    transform = reconstruction(distance - depth - resolution, distance, method="dilation")
    tops, n = ndi.label(distance - transform >= depth, np.ones((3, 3)))
    if not n:
        return tops
    plateaus, _ = ndi.label(local_maxima(transform, connectivity=2), np.ones((3, 3)))
    plateau = ndi.maximum(plateaus, tops, np.arange(1, n + 1)).astype(np.int64)   # of each top
    # one seed per plateau, numbered by its first top
    _, first, which = np.unique(plateau, return_index=True, return_inverse=True)
    seed_of_top = np.concatenate([[0], np.argsort(np.argsort(first))[which] + 1])
    return seed_of_top[tops].astype(np.int32)


def fill_own_holes(labels):
    """`labels` with each hole that only one nucleus surrounds given to that nucleus.

    A hole is a 4-connected region of background that does not reach the image border; one that
    several nuclei surround (the gap inside a ring of touching nuclei) stays background.
    """
    labels = np.array(labels)
    holes, n = ndi.label(ndi.binary_fill_holes(labels > 0) & (labels == 0))
    if not n:
        return labels
    # (hole, nucleus) for every pair of 4-neighbours: a hole's 4-neighbours outside it are all nucleus
    pairs = []
    for hole, nucleus in ((holes[1:], labels[:-1]), (holes[:-1], labels[1:]),
                          (holes[:, 1:], labels[:, :-1]), (holes[:, :-1], labels[:, 1:])):
        touch = (hole > 0) & (nucleus > 0)
        pairs.append(np.stack([hole[touch], nucleus[touch]], 1).astype(np.int64))
    pairs = np.unique(np.concatenate(pairs), axis=0)
    around = np.bincount(pairs[:, 0], minlength=n + 1)     # nuclei around each hole
    owner = np.zeros(n + 1, labels.dtype)
    alone = around[pairs[:, 0]] == 1
    owner[pairs[alone, 0]] = pairs[alone, 1]
    fill = owner[holes]
    labels[fill > 0] = fill[fill > 0]
    return labels
