"""Nucleus masks: instance labels and binary union at native resolution, exact 0/1 when resized."""
from __future__ import annotations

import numpy as np
from .data import parallel_map, resize
from .io import NucsegError


def label_image(masks, shape=None):
    """Stack per-nucleus binary masks into one instance label image (0 background, 1..K nuclei).

    Each mask is an (H, W) array, or a band ``(top, rows)``: the rows from ``top`` on of a mask
    that is zero elsewhere (as `RawSource.read_mask_bands` gives), so that painting a nucleus
    touches its rows only. Where masks overlap (DSB2018 has none), the later mask wins.
    """
    masks = list(masks)
    if shape is None:
        if not masks or isinstance(masks[0], tuple):
            raise ValueError("no shape, and no whole mask to take it from")
        shape = np.shape(masks[0])
    dtype = np.uint16 if len(masks) < 65535 else np.uint32
    labels = np.zeros(shape, dtype=dtype)
    for k, mask in enumerate(masks, start=1):
        top, rows = mask if isinstance(mask, tuple) else (0, np.asarray(mask))
        labels[top:top + len(rows)][rows > 0] = k
    return labels


def resize_mask(mask, size):
    """Resize a binary mask to `size` (an int for square, or (height, width)) and threshold at one
    half: the result is exactly 0/1.

    The union is resized once, as a whole, by area averaging; a pixel is foreground where nuclei
    cover at least half of it. (Resizing each nucleus first and adding them up, as the original
    notebook did, leaves fractional labels.)
    """
    return (resize((np.asarray(mask) > 0).astype(np.float32), size) >= 0.5).astype(np.uint8)


def read_labels(source, image_id):
    """The native-resolution instance label image of one image of a `RawSource`, from its masks.

    A mask of another size than its image, or one holding several nonzero values (a label image,
    as Fiji, QuPath or Cellpose export, which would count as one nucleus), raises `NucsegError`
    naming the mask. So does, in a user's data (``source.user_data``), a mask of all nuclei (more
    than `MAX_PARTS` separate objects, as the image's only mask or mostly under its other masks)
    or an inverted one (the background nonzero: most of the image, up to all four edges, around
    holes; or all of it), which would also be scored as one nucleus.
    """
    height, width = shape = source.image_size(image_id)
    bands, names = [], []
    for name, (h, w, top, rows) in source.read_mask_bands(image_id):
        if (h, w) != shape:
            raise NucsegError(f"{name} is {w}x{h} but its image is {width}x{height}; "
                              "every mask must have its image's size")
        values = rows[rows > 0]
        if values.size and values.min() != values.max():
            raise NucsegError(f"{name} holds values {values.min()} to {values.max()} besides 0, as a label image "
                              "does; masks/ holds one PNG per nucleus, 0 outside it: write each label as its own PNG")
        bands.append((top, rows))
        names.append(name)
    if getattr(source, "user_data", False):
        masks_at = np.zeros(shape, np.uint32)   # how many masks cover each pixel
        for top, rows in bands:
            masks_at[top:top + len(rows)] += rows > 0
        for name, (top, rows) in zip(names, bands):
            band = rows > 0
            shared = float(np.mean(masks_at[top:top + len(rows)][band] > 1)) if band.any() else 0.0
            _check_one_nucleus(name, top, band, shape, alone=len(bands) == 1, shared=shared)
    return label_image(bands, shape)


MAX_PARTS = 2   # separate objects in one nucleus's mask: stage1_train has 11 masks of 2, none of more


def _check_one_nucleus(name, top, band, shape, alone, shared):
    """Refuse a user's mask that is not one nucleus: all nuclei in one file (the image's only
    mask, `alone`, or one with most of its pixels, the fraction `shared`, under the image's other
    masks; otherwise a nucleus in lobes or fragments is the user's call), or an inverted mask."""
    from scipy import ndimage

    if alone or shared > 0.5:
        labels, n = ndimage.label(band, structure=np.ones((3, 3), bool))
        sizes = np.bincount(labels.ravel())[1:]
        # stray pixels beside a hand-drawn nucleus are not objects: a tenth of the largest, 10 px at least
        parts = int(np.count_nonzero(sizes >= max(10, sizes.max(initial=0) / 10)))
        if parts > MAX_PARTS and alone:
            raise NucsegError(f"{name} is its image's only mask and holds {parts} separate objects, as a mask of "
                              "all nuclei does; masks/ holds one PNG per nucleus, 0 outside it: save each nucleus "
                              "as its own PNG (one nucleus cut into pieces: join them)")
        if parts > MAX_PARTS:
            raise NucsegError(f"{name} holds {parts} separate objects, {shared:.0%} of it under the image's other "
                              "masks, as a mask of all nuclei saved beside them does; masks/ holds one PNG per "
                              "nucleus, 0 outside it: remove it")
    height, width = shape
    covered = band.sum() / (height * width)
    whole = top == 0 and len(band) == height
    # a nucleus filling the field, or a crop around one, covers as much, but encloses no hole
    if whole and (covered >= 0.99 or covered > 0.5 and band[0].any() and band[-1].any() and band[:, 0].any()
                  and band[:, -1].any() and (ndimage.binary_fill_holes(band) & ~band).any()):
        where = "" if covered >= 0.99 else ", up to every edge, around holes"
        raise NucsegError(f"{name} covers {covered:.0%} of its image{where}: inverted (the background nonzero)? "
                          "save it with the nucleus nonzero and 0 outside it")


class _MasksOne:
    def __init__(self, source, size):
        self.source, self.size = source, size

    def __call__(self, image_id):
        labels = read_labels(self.source, image_id)
        return labels, resize_mask(labels > 0, self.size)


def build_masks(source, img_size=128, jobs=None):
    """Native-resolution label images and resized binary masks for every image of a `RawSource`.

    Returns
    -------
    masks : ndarray, shape (N, img_size, img_size), uint8 with values 0 and 1
    labels : dict of id -> ndarray (H, W) uint16 instance labels at native resolution
    """
    results = parallel_map(_MasksOne(source, img_size), source.ids, jobs, desc="masks")
    labels = {image_id: r[0] for image_id, r in zip(source.ids, results)}
    return np.stack([r[1] for r in results]), labels
