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
