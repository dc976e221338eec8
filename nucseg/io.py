"""File I/O at the edges: the raw Kaggle/BBBC038 layout, PNG decoding and atomic writes.

Everything else in `nucseg` works on numpy arrays; this module is where files become arrays and
arrays become files, and where bad input is turned into one clear line.
"""
from __future__ import annotations

import contextlib
import errno
import io
import json
import math
import os
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from .png import SIGNATURE, PNGError, read_gray8

LAYOUT = "Kaggle layout: <id>/images/<id>.png and <id>/masks/*.png"
ZIP_NAME = "stage1_train.zip"
DIR_NAME = "stage1_train"
OTHER_IMAGE_SUFFIXES = (".tif", ".tiff", ".jpg", ".jpeg", ".bmp", ".gif")   # masks must be PNG


class NucsegError(Exception):
    """Bad input or configuration: the message names the file and the fix, on one line."""


class WriteError(NucsegError):
    """An output that could not be written: `reason` without the temporary file's name, `full`
    whether the disk (or quota) is full rather than the folder closed to writing."""

    def __init__(self, path, exc):
        self.path = Path(path)
        self.reason = exc.strerror or str(exc)
        # numpy reports a full disk as "196608 requested and 55264 written", with no errno
        self.full = exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) or exc.errno is None
        fix = "free disk space" if self.full else f"make {self.path.parent} writable"
        super().__init__(f"{self.path}: could not write it ({self.reason}); {fix}")


class UnknownIds(KeyError):
    """Ids that the data at hand lacks (a KeyError, for lookups): one line, like `NucsegError`."""

    def __str__(self):
        return str(self.args[0])


# ---------------------------------------------------------------------------------------------
# Atomic writes: a reader sees the old file or the new one, never half of one.


_UMASK = os.umask(0o022)
os.umask(_UMASK)
_deferred = None   # while `all_or_nothing` runs: the (temporary, final) paths to rename at its end


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds
    (inside `all_or_nothing`: only when that whole block succeeds). The file gets the usual
    permissions (0666 less the umask), not mkstemp's owner-only 0600."""
    path, tmp = Path(path), None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
        os.close(fd)
    except OSError as exc:   # a read-only folder: named as the output, not as the temporary file
        raise WriteError(path, exc) from None
    try:
        try:
            yield Path(tmp)
        except OSError as exc:   # a full disk, mostly
            raise WriteError(path, exc) from None
        os.chmod(tmp, 0o666 & ~_UMASK)
        if _deferred is None:
            os.replace(tmp, path)
        else:
            _deferred.append((tmp, path))
            tmp = None
    finally:
        if tmp and os.path.exists(tmp):
            os.remove(tmp)


def leftover_temporaries(folder):
    """The temporary files `atomic_path` left in `folder` when its process was killed outright."""
    return [p for p in Path(folder).glob(".*.tmp.*") if p.is_file()]


@contextlib.contextmanager
def all_or_nothing():
    """Every `atomic_path` write inside the block lands only if the whole block succeeds: a stage
    that fails half-way leaves all of its previous outputs (metrics, plots, arrays) as they were."""
    global _deferred
    outer, _deferred = _deferred, []
    try:
        yield
        writes = _deferred
    except BaseException:
        for tmp, _ in _deferred:
            if tmp and os.path.exists(tmp):
                os.remove(tmp)
        raise
    finally:
        _deferred = outer
    if outer is not None:
        outer.extend(writes)
        return
    for done, (tmp, path) in enumerate(writes):   # renames: a failure here is the only way to mix old and new
        try:
            if tmp:
                os.replace(tmp, path)
            else:
                Path(path).unlink(missing_ok=True)
        except BaseException as exc:
            for left, _ in writes[done:]:
                if left and os.path.exists(left):
                    os.remove(left)
            if not isinstance(exc, OSError):
                raise
            raise NucsegError(f"{path}: could not put the new file in place ({exc.strerror or exc}); "
                              f"{done} of the {len(writes)} outputs are new: fix that and rerun") from None


def keep_only(folder, names):
    """Delete the files of `folder` other than `names` (hidden ones aside): what an earlier run
    wrote into a directory output that this one no longer does (inside `all_or_nothing`: at its
    successful end)."""
    stale = [p for p in Path(folder).glob("*") if p.is_file() and not p.name.startswith(".") and p.name not in names]
    if _deferred is None:
        for path in stale:
            path.unlink()
    else:
        _deferred.extend((None, path) for path in stale)


def save_npy(path, array):
    with atomic_path(path) as tmp:
        np.save(tmp, array)


def save_npz(path, arrays):
    with atomic_path(path) as tmp:
        np.savez_compressed(tmp, **arrays)


def restore_fix(path):
    """What to do about a pipeline file that is damaged (cut short, edited by hand)."""
    # --force: DVC refuses to replace a file whose content is not in its cache without it, a damaged one too
    return (f"restore it with 'dvc checkout --force {path}' ('git checkout {path}' if Git tracks it), or rebuild "
            "it with 'dvc repro -f -s <the stage that writes it>'")


def load_npy(path, mmap_mode=None):
    """An array a stage wrote; a damaged file raises `NucsegError` naming it and the fix."""
    try:
        return np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except (ValueError, EOFError) as exc:   # cut short, or not an array at all
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if len(reason) > 120:   # numpy's "Failed to read all data for array. Expected (...) = ... elements, ..."
            reason = reason.split(". ")[0][:120]
        if "pickled" in reason:   # numpy's guess for a file without the .npy header
            reason = "no .npy header"
        raise NucsegError(f"{path}: not a whole .npy array ({reason}); {restore_fix(path)}") from None


def read_table(path, columns):
    """A CSV a stage wrote, with at least `columns`; one that lacks them raises `NucsegError`."""
    import pandas as pd

    try:
        table = pd.read_csv(path, dtype={"id": str})   # ids stay text ("001" too)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise NucsegError(f"{path}: not a readable CSV ({str(exc).strip().splitlines()[0]}); "
                          f"{restore_fix(path)}") from None
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise NucsegError(f"{path}: no column {', '.join(missing)}; {restore_fix(path)}")
    return table


class NpzArrays:
    """The arrays of an ``.npz`` file by id (`load_npz`): an id it lacks raises `UnknownIds`
    naming the file, one line, instead of numpy's KeyError."""

    def __init__(self, path):
        try:
            self.path, self._npz = path, np.load(path, allow_pickle=False)
        except (ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise NucsegError(f"{path}: not a whole .npz file ({exc}); {restore_fix(path)}") from None

    def __getitem__(self, key):
        try:
            return self._npz[key]
        except KeyError:
            raise UnknownIds(f"{self.path}: no array for {key!r}: it was written for other ids (another copy of "
                             "the data or another split); rebuild it with 'dvc repro'") from None
        except (ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:   # a damaged member
            raise NucsegError(f"{self.path}: not a whole .npz file ({key}: {exc}); {restore_fix(self.path)}") from None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._npz.close()


def load_npz(path):
    """An ``.npz`` of per-image arrays, read lazily (use it in a ``with`` block)."""
    return NpzArrays(path)


def save_json(path, obj):
    """Write `obj` as JSON; a NaN or infinite number as null. JSON has neither: Python writes
    ``NaN``, which strict readers (jq, JavaScript's JSON.parse) refuse; DVC shows null as missing."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_finite(obj), indent=2, sort_keys=False, allow_nan=False) + "\n")


def _finite(obj):
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {key: _finite(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(value) for value in obj]
    return obj


def save_text(path, text):
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def save_csv(path, frame):
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6g")


def read_ids(path):
    """One id per line, blank lines ignored; a file without any raises `NucsegError`."""
    try:
        ids = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    except UnicodeDecodeError as exc:
        raise NucsegError(f"{path}: not a list of ids (byte {exc.start} is not text); {restore_fix(path)}") from None
    if not ids:
        raise NucsegError(f"{path}: no ids in it; {restore_fix(path)}")
    return ids


def save_ids(path, ids):
    save_text(path, "".join(f"{i}\n" for i in ids))


# ---------------------------------------------------------------------------------------------
# Decoding


REPLACE_FROM_ZIP = f"replace it with the original from {ZIP_NAME}"
REPLACE_ZIP = f"delete it and 'dvc repro' downloads {ZIP_NAME} again (or put a good copy in its place)"
# for a user's own images (nucseg predict / evaluate), not the pipeline's copy of the data
USER_FIX = "save it again as PNG or TIFF (one 2-D gray or RGB image), or leave it out"
USER_PNG_FIX = "save it again as PNG (one 2-D gray or RGB image), or remove its folder"   # Kaggle layout: PNG only
USER_ZIP_FIX = "make the zip again or give the folder it was made from"
USER_ZIP_PLAIN_FIX = ("make the zip again without a password and with standard compression, "
                      "or give the folder it was made from")


def decode_png(data, name, fix=REPLACE_FROM_ZIP, mask=False):
    """Decode image bytes into a numpy array (H, W) or (H, W, C), keeping the bit depth.

    A palette image gives its colours; a `mask` under an inverted gray palette its stored values
    (ImageJ saves a binary mask without "black background" so: nucleus 255, shown black).
    Bad data raises `NucsegError`: the `name`, what is wrong, and `fix`.
    """
    if not data:
        raise NucsegError(f"{name}: empty file; {fix}")
    if data[:8] == SIGNATURE and data[12:16] == b"IHDR" and data[24:26] in (b"\x10\x02", b"\x10\x04", b"\x10\x06"):
        return _decode_png16_colour(data, name, fix)
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.mode in ("CMYK", "LAB", "HSV", "YCbCr"):   # 4 or 3 channels that are not RGB(A)
                img = img.convert("RGB")
            img.load()
            if img.mode == "P" and not (mask and _inverted_gray_palette(img)):
                img = img.convert("RGBA" if "transparency" in img.info else "RGB")
            elif img.mode == "1":
                img = img.convert("L")
            array = np.asarray(img)
    except Image.DecompressionBombError as exc:   # over ~179 megapixels: Pillow refuses to decode it
        raise NucsegError(f"{name}: too large to decode safely ({exc}); cut it into tiles or scale it down "
                          "(in Fiji: Image > Scale) and save those") from None
    except Image.UnidentifiedImageError:   # (Pillow's message names a BytesIO object, not the file)
        raise NucsegError(f"{name}: not a readable image (an unknown format, or damaged); {fix}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise NucsegError(f"{name}: not a readable image ({exc}); {fix}") from None
    if array.size == 0:
        raise NucsegError(f"{name}: image has no pixels; {fix}")
    return array


def _inverted_gray_palette(img):
    """Whether every colour a palette image uses is gray 255 - its index (ImageJ's inverted LUT)."""
    palette = np.asarray(img.getpalette() or [], dtype=np.int64).reshape(-1, 3)
    used = np.unique(np.asarray(img))
    return bool(used.max() < len(palette) and np.all(palette[used] == (255 - used)[:, None]))


def _decode_png16_colour(data, name, fix):
    """A 16-bit RGB, RGBA or gray + alpha PNG, all 16 bits kept (Pillow keeps only the high byte)."""
    import imagecodecs

    try:
        array = imagecodecs.png_decode(data)
    except Exception as exc:   # imagecodecs raises its own PngError, ValueError ...
        raise NucsegError(f"{name}: not a readable image ({exc}); {fix}") from None
    if array.size == 0:
        raise NucsegError(f"{name}: image has no pixels; {fix}")
    return array


# ---------------------------------------------------------------------------------------------
# The raw dataset, read from the zip or from its extracted folder


class RawSource:
    """The stage1_train images and nucleus masks, from Kaggle's zip or its extracted folder.

    Parameters
    ----------
    path : str or Path
        ``stage1_train.zip`` or a folder holding ``<id>/images/<id>.png`` and ``<id>/masks/*.png``
        (possibly one level down, as ``stage1_train/<id>/...``).

    require_masks : bool
        Every image must have a ``masks/`` folder with PNGs (False: images alone, as in
        ``stage1_test``).

    user_data : bool
        A user's own images (`nucseg predict`, `nucseg evaluate`), not the pipeline's copy of
        stage1_train: errors advise fixing the user's file, not fetching stage1_train again.

    The layout is checked on construction; a wrong one raises `NucsegError` naming the path.
    The object pickles (the zip handle is reopened per process), so it can feed a process pool.
    """

    def __init__(self, path, require_masks=True, user_data=False):
        self.path = Path(path)
        self.user_data = user_data
        self._zip = None
        # what to do about a damaged archive, and about a damaged file in it
        self.archive_fix = USER_ZIP_FIX if user_data else REPLACE_ZIP if not self.path.is_dir() else \
            f"delete {self.path}/ and 'dvc repro' downloads {ZIP_NAME} again (or put a good copy in its place)"
        self.member_fix = USER_PNG_FIX if user_data else REPLACE_ZIP if self.path.is_file() else REPLACE_FROM_ZIP
        if self.path.is_file():
            if not zipfile.is_zipfile(self.path):
                raise NucsegError(f"{self.path}: not a zip file (truncated or damaged?); {self.archive_fix}")
            with zipfile.ZipFile(self.path) as zf:
                names = [n for n in zf.namelist() if not n.endswith("/")]
        elif self.path.is_dir():
            names = [
                str(p.relative_to(self.path)).replace(os.sep, "/")
                for p in self.path.rglob("*")
                if p.is_file() or (p.is_dir() and p.name == "masks")
            ]
            names = [n + "/" if (self.path / n).is_dir() else n for n in names]
        else:
            raise NucsegError(f"{self.path}: no such file or folder ({LAYOUT})")
        self.images, self.masks, self.prefix = _index_layout(names, self.path, require_masks,
                                                             None if user_data else self.archive_fix)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_zip"] = None
        return state

    @property
    def ids(self):
        return sorted(self.images)

    def display(self, member):
        """How a member is named in messages: the zip or folder, then the member's path."""
        sep = ":" if self.path.is_file() else "/"
        return f"{self.path}{sep}{self.prefix}{member}"

    def read_bytes(self, member):
        if self.path.is_file():
            if self._zip is None:
                self._zip = zipfile.ZipFile(self.path)
            try:
                return self._zip.read(self.prefix + member)
            except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:   # damaged
                raise NucsegError(f"{self.display(member)}: cannot read from zip ({exc}); {self.archive_fix}") from None
            except (RuntimeError, NotImplementedError) as exc:   # encrypted, or compressed as in Deflate64
                fix = USER_ZIP_PLAIN_FIX if self.archive_fix == USER_ZIP_FIX else self.archive_fix
                raise NucsegError(f"{self.display(member)}: cannot read from zip ({exc}); {fix}") from None
        return (self.path / self.prefix / member).read_bytes()

    def _image_member(self, image_id):
        try:
            return self.images[image_id]
        except KeyError:
            raise UnknownIds(f"{self.path}: no image {image_id!r} there: the id lists come from another copy of the "
                             "data; rebuild them with 'dvc repro'") from None

    def image_size(self, image_id):
        """(height, width) of an image, read from its header only."""
        member = self._image_member(image_id)
        data = self.read_bytes(member)
        try:
            with Image.open(io.BytesIO(data)) as img:
                return img.height, img.width
        except Image.UnidentifiedImageError:
            raise NucsegError(f"{self.display(member)}: not a readable image (an unknown format, or damaged); "
                             f"{self.member_fix}") from None
        except (OSError, SyntaxError, ValueError) as exc:
            raise NucsegError(f"{self.display(member)}: not a readable image ({exc}); {self.member_fix}") from None

    def read_image(self, image_id):
        member = self._image_member(image_id)
        return decode_png(self.read_bytes(member), self.display(member), fix=self.member_fix)

    def read_mask_bands(self, image_id):
        """Yield (display name, (height, width, top, rows)) for each nucleus mask of an image.

        `rows` are the mask's rows ``top`` onwards that can be nonzero; all others are zero
        (`nucseg.png.read_gray8`: several times faster than decoding the whole mask). A mask
        that is not 8-bit grayscale is decoded whole, as a band from row 0: a colour or palette mask
        by its brightest colour channel (a green nucleus is one; the alpha channel left out), one
        under ImageJ's inverted gray palette by its stored values.
        """
        for member in self.masks.get(image_id, []):
            name, data = self.display(member), self.read_bytes(member)
            try:
                band = read_gray8(data)
            except PNGError as exc:
                raise NucsegError(f"{name}: not a readable image ({exc}); {self.member_fix}") from None
            if band is None:
                mask = decode_png(data, name, fix=self.member_fix, mask=True)
                if mask.ndim == 3:   # gray + alpha, RGB or RGBA
                    mask = mask[..., 0] if mask.shape[-1] == 2 else mask[..., :3].max(axis=-1)
                band = (*mask.shape, 0, mask)
            yield name, band

    def read_masks(self, image_id):
        """Yield (display name, (H, W) array) for each nucleus mask of an image."""
        for name, (height, width, top, rows) in self.read_mask_bands(image_id):
            mask = np.zeros((height, width), rows.dtype)
            mask[top:top + len(rows)] = rows
            yield name, mask


def _index_layout(names, root, require_masks=True, fix=None):
    """Map each id to its image member and its mask members; raise on a wrong layout (`fix`: what
    to do about it, besides the layout expected: for the pipeline's copy, get it again)."""
    # what macOS adds to the zips and folders it makes: resource forks and Finder files
    names = [n for n in names if not n.startswith("__MACOSX/") and not n.rsplit("/", 1)[-1].startswith("._")
             and n.rsplit("/", 1)[-1] != ".DS_Store"]
    prefixes = {n.split("/", 1)[0] + "/" for n in names if "/" in n}
    prefix = ""
    # Tolerate one wrapping folder (stage1_train/<id>/...), as some re-packed zips have.
    if len(prefixes) == 1 and not any(p.split("/")[1:2] == ["images"] for p in names):
        prefix = prefixes.pop()
        names = [n[len(prefix):] for n in names if n.startswith(prefix)]
    images, masks, mask_dirs, not_png = {}, {}, set(), {}
    sep = ":" if Path(root).is_file() else "/"   # a member of a zip, as `RawSource.display` names it
    expected = f"({LAYOUT})" + (f"; {fix}" if fix else "")
    for name in names:
        parts = name.split("/")
        if len(parts) == 3 and parts[1] == "images" and parts[2].lower().endswith(".png"):
            if parts[0] in images:
                raise NucsegError(f"{root}: {parts[0]}/images/ holds more than one PNG ({LAYOUT})")
            images[parts[0]] = name
        elif len(parts) == 3 and parts[1] == "images" and parts[2]:
            not_png.setdefault(parts[0], parts[2])
        elif len(parts) == 3 and parts[1] == "masks" and parts[2]:
            if parts[2].lower().endswith(".png"):
                masks.setdefault(parts[0], []).append(name)
            elif parts[2].lower().endswith(OTHER_IMAGE_SUFFIXES):   # a nucleus left out would go unnoticed
                raise NucsegError(f"{root}{sep}{prefix}{name}: a mask that is not a PNG; masks are read as PNGs only: "
                                  "save it as PNG")
        elif len(parts) >= 2 and parts[1] == "masks":
            mask_dirs.add(parts[0])
    if not images:
        example = names[0] if names else "nothing"
        raise NucsegError(f"{root}: no <id>/images/<id>.png found (found e.g. '{example}'); expected {LAYOUT}")
    for image_id in sorted(images):
        if image_id not in masks and not require_masks:
            masks[image_id] = []
        elif image_id not in masks:
            where = "has no PNG files" if image_id in mask_dirs else "missing"
            raise NucsegError(f"masks/ {where} in {root}{sep}{prefix}{image_id}/ {expected}")
        masks[image_id].sort()
    stray = sorted(set(masks) - set(images))
    if stray and stray[0] in not_png:
        raise NucsegError(f"{root}{sep}{prefix}{stray[0]}/images/ holds no PNG (found {not_png[stray[0]]}); "
                          f"convert it to PNG ({LAYOUT})")
    if stray:
        raise NucsegError(f"{root}{sep}{prefix}{stray[0]}/images/ missing: masks without an image {expected}")
    return images, masks, prefix


def open_raw(raw_dir):
    """The `RawSource` of the raw dataset in `raw_dir` (`find_raw`), or of `raw_dir` itself if it
    is the zip or folder."""
    return RawSource(find_raw(raw_dir) or raw_dir)


def find_raw(raw_dir):
    """The raw dataset under `raw_dir`: ``stage1_train.zip`` or the extracted ``stage1_train/``."""
    raw_dir = Path(raw_dir)
    for candidate in (raw_dir / ZIP_NAME, raw_dir / DIR_NAME):
        if candidate.exists():
            return candidate
        if candidate.is_symlink():   # a dangling link: not "no data", which would download over it
            raise NucsegError(f"{candidate}: a link to {os.readlink(candidate)}, which does not exist; "
                              "fix the link (a relative one counts from data/raw/) or remove it")
    return None
