"""Segmenting images at their own resolution: tiling, thresholding, instances, outputs."""
from __future__ import annotations

import collections
import csv
import itertools
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

from .data import native_gray, resize
from .instances import instances
from .io import USER_FIX, NucsegError, RawSource, WriteError, all_or_nothing, atomic_path, decode_png, save_csv
from .otsu import otsu_segment
from .params import MAX_TILE
from .rle import labels_to_rles
from .windows import crop_windows, windows

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
TIFF_MAGIC = (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")   # little- and big-endian, classic and BigTIFF


# ---------------------------------------------------------------------------------------------
# Inputs: files, folders of images, Kaggle-layout folders or zips


@dataclass
class InputImage:
    id: str
    name: str                       # how the file is named in messages
    load: Callable[[], np.ndarray]  # raw array, as stored (8/16 bit, gray/RGB/RGBA)


def read_any_image(path):
    """An image file as an array; TIFFs through tifffile (microscopy TIFFs), the rest through Pillow."""
    path = Path(path)
    with open(path, "rb") as f:   # by its content, not its name: a TIFF stack renamed .png is still refused
        head = f.read(4)
    if head in TIFF_MAGIC:
        return _read_tiff(path)
    return decode_png(path.read_bytes(), str(path), fix=USER_FIX)


def _read_tiff(path):
    """One 2-D image from a TIFF, by its axes: Y, X and, as the last axis, samples (S: gray +
    alpha where the extra sample is tagged alpha, or RGB(A) where the photometric tag says RGB).
    A stack (planes along Z, T, C or pages) is refused rather than guessed at: three planes are not
    an RGB image."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            array, axes = series.asarray(), series.axes
            photometric = getattr(tif.pages[0].photometric, "name", "")
            extra = [int(e) for e in tif.pages[0].extrasamples]
    except Exception as exc:  # tifffile raises many types for a broken file
        raise NucsegError(f"{path}: not a readable TIFF ({exc}); {USER_FIX}") from None
    if array.size == 0:
        raise NucsegError(f"{path}: image has no pixels; {USER_FIX}")
    shape = array.shape
    keep = [k for k, n in enumerate(shape) if n > 1]   # drop length-1 axes, as np.squeeze
    array, axes = array.reshape([shape[k] for k in keep]), "".join(axes[k] for k in keep)
    if "S" in axes:
        array, axes = np.moveaxis(array, axes.index("S"), -1), axes.replace("S", "") + "S"
    planes = int(np.prod([n for n, a in zip(array.shape, axes) if a not in "YXS"], dtype=np.int64))
    samples = array.shape[-1] if axes.endswith("S") else 1
    if planes > 1:
        raise NucsegError(f"{path}: a stack of {planes} planes {shape}; save one plane (a 2-D image, e.g. "
                          "the nuclear stain's channel) or a max projection")
    if samples == 2 and extra[-1:] not in ([1], [2]):   # not gray + (associated or unassociated) alpha
        raise NucsegError(f"{path}: two channels {shape} that are not gray + alpha; save one channel (a 2-D image, "
                          "e.g. the nuclear stain's)")
    if samples > 2 and photometric not in ("RGB", "YCBCR") or samples > 4 or axes.rstrip("S") != "YX":
        raise NucsegError(f"{path}: a {photometric or 'TIFF'} image of shape {shape} (axes {series.axes}) is "
                          f"not one gray or RGB image; {USER_FIX}")
    return array


def discover(paths, exclude=(), notes=None):
    """The images named by `paths`, each an image file, a folder or a Kaggle-layout zip.

    A folder gives every image file under it, ids from the path below the folder ('/' as '__'),
    except an image stored in the Kaggle layout (``<id>/images/<id>.png``, or the one PNG of an
    ``images/`` folder with a ``masks/`` folder beside it), whose id is ``<id>``. Left out: files
    in a ``masks/`` folder (nucleus masks, not images), hidden files and folders, what lies under
    the folders in `exclude`, and the ``masks/`` and ``labels/`` of an earlier nucseg run (a folder
    holding its ``summary.csv``), each of those runs appended to `notes` (a list) if given. A file
    named twice is taken once.
    """
    exclude = [Path(e).resolve() for e in exclude]
    found, seen = [], set()
    for path in map(Path, paths):
        if path.is_file() and path.suffix.lower() == ".zip":
            items = _from_zip(path)
        elif path.is_file():
            items = [InputImage(_file_id(path.name), str(path), lambda p=path: read_any_image(p))]
        elif path.is_dir():
            items = _from_folder(path, exclude, notes)
        else:
            raise NucsegError(f"{path}: no such file or folder (give image files, folders or a .zip)")
        for item in items:
            key = item.name if path.suffix.lower() == ".zip" else str(Path(item.name).resolve())
            if key not in seen:
                seen.add(key)
                found.append(item)
    undecodable = [f.name for f in found if not _is_text(f.name)]
    if undecodable:   # its outputs and summary row could not be written: say so before any work
        more = f" and {len(undecodable) - 1} more" if len(undecodable) > 1 else ""
        raise NucsegError(f"{undecodable[0].encode('utf-8', 'surrogateescape')!r}{more}: a file name that is not UTF-8 "
                          "text (from an old zip or disk?); rename it with plain letters, or leave it out")
    ids = [f.id for f in found]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        clashes = "; ".join(" and ".join(f.name for f in found if f.id == d) + f" ('{d}')" for d in duplicates[:5])
        more = f" and {len(duplicates) - 5} more" if len(duplicates) > 5 else ""
        raise NucsegError(f"files share an id (their outputs would have one name): {clashes}{more}; rename them "
                          "or give them in separate runs")
    return found


def is_fluorescence_composite(raw):
    """Whether an image is in colour on a dark background, judged on its own range (12-bit data
    in 16 bits too): a quarter or more of its bright pixels coloured (a burned-in scale bar on a
    gray image is a small share of them; a composite's few nuclei are all of them), and the median
    of its brightest channel under half that channel's maximum. Stained histology and brightfield
    are light (judged on gray instead, dense purple tissue would count as dark)."""
    raw = np.asarray(raw)
    if raw.ndim != 3 or raw.shape[-1] < 3:
        return False
    rgb = raw[::4, ::4, :3].astype(np.float64)
    if rgb.size == 0 or np.ptp(rgb) == 0:
        return False
    brightest = rgb.max(axis=-1)
    bright = brightest > brightest.min() + 0.1 * np.ptp(brightest)
    coloured = np.ptp(rgb, axis=-1) > 0.02 * np.ptp(rgb)
    if not bright.any() or np.mean(coloured[bright]) < 0.25:   # gray, stored as RGB
        return False
    return float(np.median(brightest)) < 0.5 * float(brightest.max())


def _is_text(name):
    """Whether a file name is text: bytes that are not UTF-8 reach Python as lone surrogates."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _file_id(name):
    """An image's id from its file name: the name without its suffix (and an OME-TIFF's .ome)."""
    stem = Path(name).stem
    return stem[:-4] if stem.lower().endswith(".ome") else stem


SUMMARY_COLUMNS = ["id", "source", "width", "height", "nuclei", "mean_area", "median_area", "seconds", "error"]


RLE_COLUMNS = ["ImageId", "EncodedPixels"]


def has_header(path, columns):
    """Whether the first line of the CSV `path` names exactly `columns`, as a CSV reader parses it
    (quoted as R writes it, with a spreadsheet's byte-order mark; False where it cannot be read
    as text): how a run's summary.csv and an earlier --rle submission are told from other files."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            header = next(csv.reader(f), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return False
    return [name.strip() for name in header] == list(columns)


def _earlier_runs(files):
    """The folders holding an earlier nucseg run among `files`: its summary.csv beside masks/ or labels/."""
    runs = []
    for summary in (p for p in files if p.name == "summary.csv"):
        beside = (summary.parent / "masks").is_dir() or (summary.parent / "labels").is_dir()
        if beside and has_header(summary, SUMMARY_COLUMNS):
            runs.append(summary.parent)
    return runs


def _kaggle_id(path, pngs):
    """``<id>`` for ``<id>/images/<id>.png``, or for the one PNG of ``images/`` beside ``masks/``; else
    None. `pngs`: how many visible PNGs each folder holds (counted once per folder)."""
    images = path.parent
    if images.name != "images" or path.suffix.lower() != ".png":
        return None
    if path.stem == images.parent.name:
        return path.stem
    if (images.parent / "masks").is_dir() and pngs[images] == 1:
        return images.parent.name
    return None


def _from_folder(path, exclude=(), notes=None):
    """The images of a folder, file by file (see `discover`)."""
    files = _walk(path)
    runs = _earlier_runs(files)
    if notes is not None:
        notes += [f"left out {run}'s masks/ and labels/: an earlier nucseg run's outputs" for run in runs
                  if run.resolve() not in {e.parent for e in exclude}]
    skip = list(exclude) + [d.resolve() for run in runs for d in (run / "masks", run / "labels")]
    pngs = collections.Counter(p.parent for p in files if p.suffix.lower() == ".png" and not p.name.startswith("."))
    found = []
    for p in files:
        inside = p.relative_to(path).parts
        if (p.suffix.lower() not in IMAGE_SUFFIXES or "masks" in inside[:-1] or not p.is_file()
                or any(part.startswith(".") or part == "__MACOSX" for part in inside)
                or any(e in p.resolve().parents for e in skip)):
            continue
        image_id = _kaggle_id(p, pngs) or "__".join(inside[:-1] + (_file_id(p.name),))
        found.append(InputImage(image_id, str(p), lambda p=p: read_any_image(p)))
    return found


def _walk(folder):
    """Every file under `folder`, sorted, following links to folders (each real folder once)."""
    files, seen = [], set()
    for root, dirs, names in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:   # a link back up the tree, or a second link to one folder
            dirs[:] = []
            continue
        seen.add(real)
        files += [Path(root) / name for name in names]
    return sorted(files)


def _from_zip(path):
    try:
        source = RawSource(path, require_masks=False, user_data=True)
    except NucsegError as exc:
        if "no <id>/images/<id>.png found" not in str(exc):
            raise
        raise NucsegError(f"{exc}; a zip of other images: unzip it and give the folder") from None
    return _from_source(source)


def _from_source(source):
    return [InputImage(i, source.display(source.images[i]), lambda i=i: source.read_image(i)) for i in source.ids]


# ---------------------------------------------------------------------------------------------
# Prediction at native resolution


def _ramp(length, overlap):
    """Blending weights of a tile edge: rising over `overlap` pixels from each end."""
    if overlap <= 0:
        return np.ones(length, np.float32)
    x = np.arange(length, dtype=np.float32)
    return np.clip(np.minimum(x + 1, length - x) / overlap, 1e-3, 1.0)


def native_probs(model, gray, tile=256, overlap=64, batch_size=8, tta=False):
    """Nucleus probabilities for a whole grayscale image at its own resolution.

    The image is cut into `tile`-pixel windows overlapping by `overlap` (`nucseg.windows`), each
    resized to the model's input, as in training; the predictions are resized back and blended
    with weights that fall off towards each window's edges, so there are no seams. ``tile=0``
    resizes the image as a whole (for a model trained on whole images). `tta`: see
    `nucseg.evaluate.predict_probs`.
    """
    return next(iter_native_probs(model, [gray], tile, overlap, batch_size, tta))


def iter_native_probs(model, grays, tile=256, overlap=64, batch_size=8, tta=False, group=32):
    """`native_probs` of each image of the iterable `grays`, yielded in order.

    The windows of up to `group` images are predicted together, so that images of one window
    each still fill the model's batches.
    """
    from .evaluate import predict_probs

    size, grays = model.input_shape[1], iter(grays)
    while chunk := list(itertools.islice(grays, group)):
        boxes = [windows(gray.shape, tile, overlap) for gray in chunk]
        crops = np.concatenate([crop_windows(gray, wins, size, tile) for gray, wins in zip(chunk, boxes)])
        probs = iter(predict_probs(model, crops, batch_size=batch_size, tta=tta))
        for gray, wins in zip(chunk, boxes):
            yield _blend(gray.shape, wins, [next(probs) for _ in wins], overlap, tile)


def _blend(shape, boxes, probs, overlap, tile=0):
    """Window predictions resized back and averaged with weights falling off at window edges.
    With a `tile`, each prediction covers a whole tile (`nucseg.windows.pad_to_tile`): its
    mirrored padding is cut off."""
    h, w = shape
    total = np.zeros((h, w), np.float32)
    weight = np.zeros((h, w), np.float32)
    for (y, x, th, tw), p in zip(boxes, probs):
        wgt = np.outer(_ramp(th, overlap if th < h else 0), _ramp(tw, overlap if tw < w else 0))
        back = resize(p, (tile, tile))[:th, :tw] if tile else resize(p, (th, tw))
        total[y:y + th, x:x + tw] += back * wgt
        weight[y:y + th, x:x + tw] += wgt
    if not weight.all():   # windows with gaps (overlap < 0): refuse rather than return NaN there
        raise ValueError(f"the windows leave {int(weight.size - np.count_nonzero(weight))} of {h}x{w} pixels "
                         f"uncovered (overlap {overlap}); use an overlap from 0 to below the tile")
    return total / weight


DEFAULT_OVERLAP = 64   # native pixels between windows, when none is given (predict.overlap's default)


def default_overlap(tile):
    """The overlap when none is given: `DEFAULT_OVERLAP`, at most half the `tile` (a model's own
    tile may be as small as 32)."""
    return min(DEFAULT_OVERLAP, tile // 2) if tile > 0 else DEFAULT_OVERLAP


def setting_problems(threshold=0.5, batch_size=1, tile=0, overlap=0, tile_source=None):
    """The U-Net's prediction settings that cannot work, as (name, value, what to use): a
    threshold that is not a probability, empty batches, a tile under 32 pixels (as `base.tile`:
    a 16 px tile cuts a 1024x1024 image into 6,000 windows) or over `MAX_TILE` (a 200,000 px
    tile would take 160 GB before resizing), or an overlap of more than half the
    tile (255 of 256: two million windows). `tile_source` says where the tile came from, in the
    advice."""
    tile_text = f"the tile ({tile}{', ' + tile_source if tile_source else ''})"
    checks = [
        (0 < threshold < 1, "threshold", threshold, "a probability between 0 and 1, e.g. 0.5"),
        (batch_size >= 1, "batch_size", batch_size, "1 or more, e.g. 8"),
        (tile == 0 or 32 <= tile <= MAX_TILE, "tile", tile, f"0 (whole images) or 32 to {MAX_TILE} pixels, e.g. 256"),
        (overlap >= 0, "overlap", overlap, "0 or more, at most half the tile, e.g. 64"),
        (tile <= 0 or overlap <= tile // 2, "overlap", overlap,
         f"at most half {tile_text}, e.g. {max(tile, 0) // 4}"),
    ]
    return [(name, value, use) for ok, name, value, use in checks if not ok]


@dataclass
class Segmenter:
    """Segment raw images with the U-Net or Otsu, then split the mask into nuclei.

    `instance_params` are keyword arguments of `nucseg.instances.instances`.
    """
    method: str = "unet"
    model: object = None
    threshold: float = 0.5
    tile: int = 256
    overlap: int = None          # None: default_overlap(tile)
    batch_size: int = 8
    tta: bool = False
    normalization: str = "percentile"
    invert_above: float = 0.5   # Otsu's (otsu.invert_above)
    instance_params: dict = None

    def __post_init__(self):
        if self.overlap is None:
            self.overlap = default_overlap(self.tile)
        if self.method not in ("unet", "otsu"):
            raise ValueError(f"unknown method {self.method!r}: use unet or otsu")
        if self.method == "unet" and self.model is None:
            raise ValueError("the unet method needs a model")
        problems = setting_problems(self.threshold, self.batch_size, self.tile, self.overlap)
        if self.method == "unet" and problems:   # Otsu uses none of these
            name, value, use = problems[0]
            raise ValueError(f"{name} {value}: out of range; use {use}")

    def mask(self, raw):
        gray = native_gray(raw, self.normalization)
        if self.method == "otsu":
            return otsu_segment(gray, self.invert_above)
        probs = native_probs(self.model, gray, self.tile, self.overlap, self.batch_size, self.tta)
        return (probs > self.threshold).astype(np.uint8)

    def labels(self, mask):
        return instances(mask, **(self.instance_params or {}))


def predict_images(inputs, segmenter, out_dir, rle_csv=None, progress=True):
    """Segment every input and write, per image, ``masks/<id>.png`` (0/255) and
    ``labels/<id>.tif`` (16-bit instance labels), plus ``summary.csv`` over all images.

    All or nothing: the files land together when the run ends (`nucseg.io.all_or_nothing`), so a
    run that is interrupted (Ctrl-C) or stops on an error leaves `out_dir` as it was. A file that
    cannot be read or segmented is reported by name and skipped: its summary row says why, and an
    earlier run's mask and labels of it are kept (the row says so), and so are its rows in
    `rle_csv` if that holds an earlier submission. ``summary.csv`` lists this run's images only;
    the RLE CSV is written with the rest. A run in which every image fails writes nothing at all.
    Returns the summary table.
    """
    out_dir = Path(out_dir)
    new_dirs = [d for d in (out_dir / "masks", out_dir / "labels", out_dir) if not d.exists()]
    try:
        summary = _predict_all(inputs, segmenter, out_dir, rle_csv, progress)
    except BaseException:
        for folder in new_dirs:   # made by this run, which keeps nothing: gone again if empty
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        raise
    return summary


def _predict_all(inputs, segmenter, out_dir, rle_csv, progress):
    import tifffile

    rows, rles = [], []
    earlier_rles = read_submission(rle_csv) if rle_csv else {}
    with all_or_nothing():
        for item in tqdm(inputs, desc=f"predict ({segmenter.method})", unit="img", disable=not progress):
            start = time.perf_counter()
            try:
                raw = item.load()
                mask = segmenter.mask(raw)
                labels = segmenter.labels(mask)
                if is_fluorescence_composite(raw):   # pixels checked by now (finite, one image)
                    tqdm.write(f"note: {item.name}: a colour image on a dark background (a fluorescence composite?) "
                               "is segmented as its gray, in which blue counts 0.114; if the nuclei are one channel "
                               "(DAPI, Hoechst: blue), save that channel alone", file=sys.stderr)
            except (NucsegError, ValueError, OSError, MemoryError) as exc:
                error = ("not enough memory for this image; use a smaller --batch-size, or crop the image"
                         if isinstance(exc, MemoryError) else str(exc))
                tqdm.write(f"skipped: {error if item.name in error else f'{item.name}: {error}'}", file=sys.stderr)
                kept = [f"{kind}/{item.id}{suffix}" for kind, suffix in (("masks", ".png"), ("labels", ".tif"))
                        if (out_dir / kind / f"{item.id}{suffix}").exists()]
                if item.id in earlier_rles:
                    rles += [(item.id, r) for r in earlier_rles[item.id]]
                    kept.append(f"rows in {Path(rle_csv).name}")
                if kept:
                    error += f" (kept an earlier run's {' and '.join(kept)})"
                rows.append({"id": item.id, "source": item.name, "error": error})
                continue
            try:
                with atomic_path(out_dir / "masks" / f"{item.id}.png") as tmp:
                    Image.fromarray(mask * 255).save(tmp, format="PNG")
                with atomic_path(out_dir / "labels" / f"{item.id}.tif") as tmp:
                    tifffile.imwrite(tmp, labels.astype(np.uint16 if labels.max() < 65536 else np.uint32))
            except WriteError as exc:
                fix = "free disk space, or give --out a folder on another disk" if exc.full else \
                    "give --out a folder you can write to"
                raise NucsegError(f"{out_dir}: could not write the outputs of {item.name} ({exc.reason}); nothing of "
                                  f"this run was kept: {fix}") from None
            areas = np.bincount(labels.ravel())[1:]
            rows.append({
                "id": item.id, "source": item.name, "width": mask.shape[1], "height": mask.shape[0],
                "nuclei": int(labels.max()), "mean_area": float(areas.mean()) if areas.size else 0.0,
                "median_area": float(np.median(areas)) if areas.size else 0.0,
                "seconds": round(time.perf_counter() - start, 3), "error": "",
            })
            if rle_csv:
                rles += [(item.id, r) for r in labels_to_rles(labels)] or [(item.id, "")]
        summary = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
        if not (summary["error"] == "").any():   # nothing segmented: an earlier run's summary and CSV stay
            return summary
        save_csv(out_dir / "summary.csv", summary)
        if rle_csv:
            save_csv(rle_csv, pd.DataFrame(rles, columns=RLE_COLUMNS))
    return summary


def read_submission(path):
    """An earlier run's RLE CSV as {id: [run-length encodings]}; {} if there is none (or the file
    is something else, which `nucseg predict` refuses to overwrite up front)."""
    if not has_header(path, RLE_COLUMNS):
        return {}
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError):
        return {}
    return {image_id: list(rows["EncodedPixels"]) for image_id, rows in table.groupby("ImageId", sort=False)}
