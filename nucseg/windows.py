"""Windows: how a native-resolution image is cut into the model's square inputs.

The model sees `img_size` pixels. With a `tile` (native pixels), an image is cut into windows of
``min(tile, height)`` by ``min(tile, width)`` pixels, a window shorter than the tile is mirrored
out to a whole tile at its bottom and right (`pad_to_tile`), and each is resized to the model's
input, so that every image reaches the model at the same scale, ``img_size / tile``, whatever its
size (a 1024x1024 brightfield field, a 256x256 fluorescence crop and a 200x200 one alike).
Training, prediction and the robustness stage all cut images this way. ``tile=0`` resizes each
image as a whole.
"""
from __future__ import annotations

import numpy as np

from .data import native_gray, parallel_map, read_meta, resize, select
from .io import NucsegError, UnknownIds, load_npy, load_npz, open_raw, read_ids
from .masks import resize_mask


def tile_starts(length, tile, overlap):
    """Start offsets of tiles of `tile` pixels overlapping by at least `overlap`, covering `length`."""
    if length <= tile:
        return [0]
    stride = max(1, tile - overlap)
    return sorted(set(list(range(0, length - tile, stride)) + [length - tile]))


def windows(shape, tile, overlap):
    """(y, x, height, width) of the windows that tile an image of `shape` (``tile=0``: one)."""
    h, w = shape
    tile = tile or max(h, w)
    return [(y, x, min(tile, h), min(tile, w))
            for y in tile_starts(h, tile, overlap) for x in tile_starts(w, tile, overlap)]


def pad_to_tile(window, tile):
    """`window` mirrored out at its bottom and right to `tile` x `tile` pixels, where a side is
    shorter (an image smaller than the tile); unchanged with ``tile=0`` (whole images)."""
    h, w = window.shape[:2]
    if not tile or (h >= tile and w >= tile):
        return window
    return np.pad(window, ((0, max(0, tile - h)), (0, max(0, tile - w))), mode="symmetric")


def crop_windows(image, boxes, size, tile=0):
    """The windows `boxes` of `image`, each padded to the `tile` (`pad_to_tile`) and resized to
    (size, size): (K, size, size)."""
    return np.stack([resize(pad_to_tile(image[y:y + h, x:x + w], tile), size) for y, x, h, w in boxes])


def cut_windows(gray, mask, tile, size, overlap=None):
    """The model inputs of one image and their binary masks, each (K, size, size).

    `overlap` defaults to half the tile, the training windows' spacing: a random one of them is
    drawn per image and epoch (`nucseg.train.make_dataset` with groups). Masks are cut from the
    native union and resized once (`resize_mask`), so they are exactly 0/1.
    """
    overlap = tile // 2 if overlap is None else overlap
    mask = np.asarray(mask) > 0
    boxes = windows(np.shape(gray), tile, overlap)
    masks = np.stack([resize_mask(pad_to_tile(mask[y:y + h, x:x + w], tile), size) for y, x, h, w in boxes])
    return crop_windows(gray, boxes, size, tile), masks


def model_scale_shape(shape, tile, size):
    """The size of an image of native `shape` at the scale the model sees it: (size, size) for
    ``tile=0``, else both sides times ``size / tile``."""
    if not tile:
        return size, size
    return tuple(max(1, round(side * size / tile)) for side in shape)


class _CutOne:
    def __init__(self, source, labels_path, tile, size, normalization, overlap):
        self.source, self.labels_path = source, str(labels_path)
        self.tile, self.size, self.normalization, self.overlap = tile, size, normalization, overlap

    def __call__(self, image_id):
        with load_npz(self.labels_path) as labels:
            mask = labels[image_id] > 0
        gray = native_gray(self.source.read_image(image_id), self.normalization)
        if gray.shape != mask.shape:
            raise NucsegError(f"{self.labels_path}: labels of {image_id} are {mask.shape[::-1]} but its image is "
                              f"{gray.shape[::-1]}; rebuild them with 'dvc repro masks'")
        return cut_windows(gray, mask, self.tile, self.size, self.overlap)


def source_windows(source, labels_path, ids, tile, size, normalization="percentile", overlap=None, jobs=None):
    """`cut_windows` of every image `ids` of a `RawSource`, masks from the labels .npz.

    Returns
    -------
    images, masks : ndarray (K, size, size), float32 in [0, 1] and uint8 0/1
    groups : ndarray (K,) int, the position in `ids` of each window's image
    """
    results = parallel_map(_CutOne(source, labels_path, tile, size, normalization, overlap), ids, jobs,
                           desc="windows")
    groups = np.concatenate([np.full(len(r[0]), k) for k, r in enumerate(results)])
    return (np.concatenate([r[0] for r in results]), np.concatenate([r[1] for r in results]), groups)


def model_inputs(source, labels_path, ids, tile, size, normalization, limit=None, jobs=None):
    """What the model sees of the images `ids` of a `RawSource`: their windows of `tile` native
    pixels resized to `size` (spaced half a tile apart, as in training), (K, size, size, 1)
    float32; at most `limit`, evenly spaced over the images. For int8 calibration and checks."""
    inputs = source_windows(source, labels_path, ids, tile, size, normalization, jobs=jobs)[0]
    return thin(inputs, limit)[..., None].astype(np.float32)


def split_inputs(ids_path, tile, size, normalization, raw, labels, images, meta, limit=None):
    """What the model sees of the images listed in `ids_path` (a split's ids), (K, size, size, 1)
    float32, at most `limit`, evenly spaced (`thin`): with a `tile`, their windows cut from the
    `raw` data (`model_inputs`; `labels`: the native label images' .npz), else their rows of the
    ingested `images` (.npy, ordered as `meta`). For int8 calibration and its check. Runs process
    pools: call it before TensorFlow starts."""
    ids = read_ids(ids_path)
    try:
        if tile:
            return model_inputs(open_raw(raw), labels, ids, tile, size, normalization, limit)
        rows = select(load_npy(images, mmap_mode="r"), read_meta(meta)["id"].tolist(), ids)
        return thin(rows, limit)[..., None].astype(np.float32)
    except UnknownIds as exc:   # from the raw data or the labels' npz
        raise NucsegError(f"{ids_path}: {exc}") from None


def thin(array, limit=None):
    """At most `limit` rows of `array`, evenly spaced from the first to the last (all if None)."""
    if limit and len(array) > limit:
        return array[np.linspace(0, len(array) - 1, limit).round().astype(int)]
    return array
