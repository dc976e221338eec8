"""The classical baseline: one Otsu threshold per image."""
from __future__ import annotations

import numpy as np
from skimage.filters import threshold_otsu


def otsu_segment(image, invert_above=0.5):
    """Foreground mask of one grayscale image by Otsu's threshold.

    Pixels above the threshold are foreground; where they cover more than `invert_above` of the
    image, the nuclei are taken to be the dark side (brightfield, histology) and the mask is
    inverted. A flat image has no foreground.
    """
    image = np.asarray(image, dtype=np.float32)
    if image.max() - image.min() < 1e-6:
        return np.zeros(image.shape, dtype=np.uint8)
    mask = image > threshold_otsu(image)
    if mask.mean() > invert_above:
        mask = ~mask
    return mask.astype(np.uint8)


def otsu_batch(images, invert_above=0.5):
    """`otsu_segment` over a stack of images (N, H, W)."""
    return np.stack([otsu_segment(im, invert_above) for im in images])


class _OtsuNative:
    def __init__(self, source, normalization, invert_above):
        self.source, self.normalization, self.invert_above = source, normalization, invert_above

    def __call__(self, image_id):
        from .data import native_gray

        return otsu_segment(native_gray(self.source.read_image(image_id), self.normalization), self.invert_above)


def otsu_native(source, ids, normalization="percentile", invert_above=0.5, jobs=None):
    """Otsu masks at native resolution for `ids` of a `RawSource`, as a dict id -> (H, W) uint8."""
    from .data import parallel_map

    masks = parallel_map(_OtsuNative(source, normalization, invert_above), ids, jobs, desc="otsu")
    return dict(zip(ids, masks))
