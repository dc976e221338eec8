"""Getting stage1_train: use the copy the user put under data/raw/, or download it."""
from __future__ import annotations

import http.client
import io
import os
import urllib.error
import urllib.request
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from .data import parallel_map
from .io import DIR_NAME, ZIP_NAME, NucsegError, RawSource, find_raw

BBBC038_URL = "https://data.broadinstitute.org/bbbc/BBBC038/stage1_train.zip"
CHUNK = 1 << 20


def download(url, dest, timeout=60, progress=True):
    """Download `url` to `dest`, resuming a partial ``dest.part`` if one is left from before.

    The data goes to ``<dest>.part`` and is renamed onto `dest` only once complete, so `dest`
    either does not exist or is whole. An interrupted download keeps the ``.part`` file, and the
    next call asks the server for the rest (HTTP Range); a server that ignores Range restarts it.
    """
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    done = part.stat().st_size if part.exists() else 0
    incomplete = False
    request = urllib.request.Request(url, headers={"Range": f"bytes={done}-"} if done else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            resumed = done and response.status == 206
            total = response.headers.get("Content-Length")
            total = int(total) + (done if resumed else 0) if total else None
            mode = "ab" if resumed else "wb"
            with open(part, mode) as out, tqdm(
                total=total, initial=done if resumed else 0, unit="B", unit_scale=True,
                desc=dest.name, disable=not progress,
            ) as bar:
                while True:
                    try:   # read1: what has arrived, so that a cut loses none of it (read drops a cut chunk)
                        chunk = response.read1(CHUNK)
                    except http.client.IncompleteRead as exc:   # a chunked reply cut short: the only sign,
                        out.write(exc.partial)                  # as it has no size to check
                        incomplete = True
                        break
                    if not chunk:
                        break
                    out.write(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and done:  # the .part file already holds everything
            os.replace(part, dest)
            return dest
        raise NucsegError(f"could not download {url} (HTTP {exc.code}); {_manual_hint(dest.parent)}") from None
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise NucsegError(f"could not download {url} ({reason}); {_manual_hint(dest.parent)}") from None
    size = part.stat().st_size
    if incomplete or (total is not None and size != total):
        raise NucsegError(
            f"download of {url} stopped at {size}{'' if total is None else f' of {total}'} bytes; "
            f"run again to resume, or {_manual_hint(dest.parent)}"
        )
    os.replace(part, dest)
    return dest


def _manual_hint(raw_dir):
    return f"put {ZIP_NAME} at {Path(raw_dir) / ZIP_NAME} (or extract it to {Path(raw_dir) / DIR_NAME}/)"


class _CheckOne:
    """Decode one image fully; read each of its masks' header and check its size."""

    def __init__(self, source):
        self.source = source

    def __call__(self, image_id):
        height, width = self.source.read_image(image_id).shape[:2]
        for member in self.source.masks[image_id]:
            name = self.source.display(member)
            try:
                with Image.open(io.BytesIO(self.source.read_bytes(member))) as mask:
                    size = mask.size
                    mask.verify()   # the whole file and its checksums, without decoding pixels
            except Image.UnidentifiedImageError:   # Pillow's words name its buffer object
                raise NucsegError(f"{name}: not a readable image (an unknown format, or damaged); "
                                  f"{self.source.member_fix}") from None
            except (OSError, SyntaxError, ValueError) as exc:
                raise NucsegError(f"{name}: not a readable image ({exc}); {self.source.member_fix}") from None
            if size != (width, height):
                raise NucsegError(f"{name} is {size[0]}x{size[1]} but its image is {width}x{height}; "
                                  "every mask must have its image's size")


def check_source(source, jobs=None, progress=True):
    """Check every image and mask of a `RawSource`; raise `NucsegError` at the first bad file."""
    parallel_map(_CheckOne(source), source.ids, jobs, desc="check" if progress else None, chunksize=8)


def ensure_raw(raw_dir, url=BBBC038_URL, progress=True, check=True):
    """Return the checked raw dataset under `raw_dir`, downloading the zip if nothing is there.

    The layout is always checked; with `check`, every image is decoded and every mask's file and
    size are checked too, so that a damaged copy is refused here, before the pipeline records it.

    Returns
    -------
    RawSource
    """
    path = find_raw(raw_dir)
    if path is None:
        path = download(url, Path(raw_dir) / ZIP_NAME, progress=progress)
    source = RawSource(path)
    if check:
        check_source(source, progress=progress)
    return source
