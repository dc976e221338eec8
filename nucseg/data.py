"""Images to model inputs: grayscale, resized, normalised float arrays."""
from __future__ import annotations

import os
import pickle
from multiprocessing import get_context

import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

from .io import UnknownIds, read_table

# ITU-R 601-2 luma, the weights of Pillow's "L" conversion and ImageJ's default.
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def to_gray(image):
    """Any 8/16-bit gray, gray+alpha, RGB or RGBA array to float32 grayscale in [0, 1].

    Alpha is dropped (DSB images carry an opaque one); 16-bit data is scaled by 65535. Float
    data (ImageJ's "32-bit") within [0, 1] is kept as it is; float data outside it holds raw
    intensities and is scaled by its own range (clipped, it would be one flat value), as are
    signed and 32-bit integers outside [0, 1]. NaN or
    infinite pixels and arrays that are not one image (a stack of planes) raise `ValueError`.
    """
    image = np.asarray(image)
    if image.dtype.kind not in "biuf":
        raise ValueError(f"pixels of type {image.dtype} (complex: a Fourier transform?) are no image's intensities; "
                         "save the image as 8-, 16- or 32-bit gray or RGB")
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[-1] > 4):
        raise ValueError(f"not one 2-D image (gray, RGB or RGBA) but an array of shape {image.shape}; "
                         "save one plane (a 2-D image) or a max projection")
    if image.dtype == np.uint8:
        scale = 255.0
    elif image.dtype == np.uint16:
        scale = 65535.0
    elif image.dtype == bool:
        scale = 1.0
    else:   # float, signed or 32-bit integers: by their own range (clipped, negative pixels would be lost)
        image, scale = _float_to_unit(image.astype(np.float64) if image.dtype.kind in "iu" else image), 1.0
    x = image.astype(np.float32) / scale
    if x.ndim == 3:
        channels = x.shape[-1]
        if channels in (3, 4):
            x = x[..., :3] @ LUMA
        else:  # 1 or 2: gray, gray + alpha
            x = x[..., 0]
    return np.clip(x, 0.0, 1.0)


def _float_to_unit(image):
    """Float pixels as they are if within [0, 1], else scaled from their min..max to [0, 1]."""
    if not np.isfinite(image).all():
        bad = int(np.size(image) - np.count_nonzero(np.isfinite(image)))
        raise ValueError(f"has {bad} NaN or infinite pixels; replace them (in Fiji: Process > Math > "
                         "Remove NaNs) or save the image as 8- or 16-bit")
    lo, hi = float(image.min()), float(image.max())
    if lo >= 0.0 and hi <= 1.0:
        return image
    if hi == lo:   # one raw value everywhere: flat, as a flat [0, 1] image would be
        return np.zeros(image.shape, np.float32)
    return ((image.astype(np.float64) - lo) / (hi - lo)).astype(np.float32)


def is_color(image, tol=2):
    """True where an RGB(A) image's channels differ: stained histology rather than gray data."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] < 3:
        return False
    tol = tol * (257 if image.dtype == np.uint16 else 1)
    first = image[..., 0]
    # |c - first| in the image's own unsigned type: max - min cannot wrap around
    return any(int((np.maximum(c, first) - np.minimum(c, first)).max()) > tol
               for c in (image[..., 1], image[..., 2]))


def resize(x, size):
    """Resize a float image to `size` (an int for square, or (height, width)): area average when
    shrinking, bilinear when enlarging."""
    height, width = (size, size) if np.isscalar(size) else size
    if x.shape == (height, width):
        return x.astype(np.float32)
    shrink = height <= x.shape[0] and width <= x.shape[1]
    img = Image.fromarray(x.astype(np.float32), mode="F")
    return np.asarray(img.resize((width, height), Image.BOX if shrink else Image.BILINEAR), dtype=np.float32)


def normalize(x, method="percentile", low=1.0, high=99.8):
    """Stretch intensities to [0, 1].

    ``percentile`` maps the `low` and `high` percentiles to 0 and 1 and clips (as CSBDeep's
    ``normalize``), so dim 12-bit and bright 8-bit data look alike to the model. Where they are
    equal (a few small nuclei on an even background: under 0.2% of the pixels), the maximum maps
    to 1 instead, so that those nuclei are kept. ``none`` keeps the values. A flat image stays
    flat (all zeros) instead of dividing by zero.
    """
    if method == "none":
        return x.astype(np.float32)
    if method != "percentile":
        raise ValueError(f"unknown normalisation {method!r}: use 'percentile' or 'none'")
    lo, hi = np.percentile(x, [low, high])
    if hi - lo < 1e-6:
        hi = np.max(x)
    if hi - lo < 1e-6:
        return np.zeros_like(x, dtype=np.float32)
    return np.clip((x - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def prepare_image(image, size, method="percentile"):
    """Raw array to the model's input: grayscale, resized to (size, size), normalised."""
    return normalize(resize(to_gray(image), size), method)


def native_gray(image, method="percentile"):
    """Raw array to normalised grayscale at its own resolution."""
    return normalize(to_gray(image), method)


def parallel_map(func, items, jobs=None, desc=None, chunksize=4):
    """`map` over a process pool with a progress bar, results in input order.

    Each worker receives its own copy of `func` once, when it starts: sent with every task
    instead, a `RawSource` (an index of ~30,000 zip members) was pickled per chunk and reopened
    its zip each time, which cost more than the work itself.
    """
    jobs = jobs or os.cpu_count() or 1
    items = list(items)
    bar = dict(total=len(items), desc=desc, unit="img", disable=desc is None)
    if jobs == 1 or len(items) < 2:
        return [func(item) for item in tqdm(items, **bar)]
    # fork keeps the parent's imports; the train stage has imported TensorFlow but runs none of it
    # before these pools, and the workers only decode images (numpy, Pillow, zlib-ng)
    with get_context("fork").Pool(jobs, initializer=_start_worker, initargs=(func,)) as pool:
        return list(tqdm(pool.imap(_call_worker, items, chunksize=chunksize), **bar))


_WORKER_FUNC = None


def _start_worker(func):
    global _WORKER_FUNC
    # a pickled copy: open file handles (a zip) are not shared with the parent after the fork
    _WORKER_FUNC = pickle.loads(pickle.dumps(func))


def _call_worker(item):
    return _WORKER_FUNC(item)


class _IngestOne:
    def __init__(self, source, size, method):
        self.source, self.size, self.method = source, size, method

    def __call__(self, image_id):
        raw = self.source.read_image(image_id)
        gray = to_gray(raw)
        return normalize(resize(gray, self.size), self.method), dict(
            id=image_id, height=raw.shape[0], width=raw.shape[1],
            channels=1 if raw.ndim == 2 else raw.shape[-1], bits=raw.dtype.itemsize * 8,
            color=is_color(raw), mean=round(float(gray.mean(dtype=np.float64)), 6),
        )


def ingest(source, img_size=128, normalization="percentile", jobs=None):
    """Read every image of a `RawSource` into one float32 array.

    Returns
    -------
    images : ndarray, shape (N, img_size, img_size), float32 in [0, 1]
    meta : DataFrame
        One row per image, in the same (sorted id) order: id, native height and width,
        channels, bit depth, whether it is coloured, and its mean gray value.
    """
    results = parallel_map(_IngestOne(source, img_size, normalization), source.ids, jobs, desc="ingest")
    images = np.stack([r[0] for r in results]).astype(np.float32)
    return images, pd.DataFrame([r[1] for r in results])


def read_meta(path, columns=("id",)):
    """Ingest's meta.csv, one row per image (id, height, width, channels, bits, color, mean); ids
    stay text ("001" too). A file without `columns` raises `NucsegError` naming it."""
    return read_table(path, columns)


def select(array, all_ids, ids, where=None):
    """Rows of `array` (ordered as `all_ids`) for `ids`, in the order of `ids`; `where` names the
    files they come from, for the error."""
    position = {image_id: i for i, image_id in enumerate(all_ids)}
    missing = [i for i in ids if i not in position]
    if missing:
        raise UnknownIds(f"{where + ': ' if where else ''}{len(missing)} ids not in the data, e.g. {missing[0]}: "
                         "the id lists and the arrays come from different runs; rebuild them with 'dvc repro'")
    return np.asarray(array)[[position[i] for i in ids]]
