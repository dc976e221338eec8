"""Fast reading of nucleus mask PNGs: only the rows that hold the nucleus are reconstructed.

A DSB2018 mask is an 8-bit grayscale PNG of the whole image's size holding one nucleus, so
almost all of its rows are zero. Pillow inflates with zlib and unfilters every row; here the
data is inflated with zlib-ng (several times faster on these highly compressed streams) and only
the band of rows that can be nonzero is unfiltered. The result is the same array Pillow gives,
as a band: ``(top, rows)`` with every row outside ``rows`` zero.

Any other kind of PNG (other bit depths, colour, palette, interlaced) returns None, and the
caller decodes it with Pillow.
"""
from __future__ import annotations

import struct
import zlib as _zlib

import numpy as np
from zlib_ng import zlib_ng

SIGNATURE = b"\x89PNG\r\n\x1a\n"
NONE, SUB, UP, AVERAGE, PAETH = range(5)


class PNGError(ValueError):
    """Damaged PNG data (bad signature, chunk, checksum or compressed stream)."""


def _chunks(data):
    """Yield (type, payload) for each chunk, checking lengths and CRCs."""
    if data[:8] != SIGNATURE:
        raise PNGError("not a PNG file")
    pos, end = 8, len(data)
    while pos + 12 <= end:
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        payload = data[pos + 8:pos + 8 + length]
        if len(payload) != length or pos + 12 + length > end:
            raise PNGError(f"truncated {kind.decode('latin-1')} chunk")
        crc, = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        if _zlib.crc32(payload, _zlib.crc32(kind)) != crc:
            raise PNGError(f"checksum error in {kind.decode('latin-1')} chunk")
        yield kind, payload
        if kind == b"IEND":
            return
        pos += 12 + length
    raise PNGError("truncated file (no IEND chunk)")


def _sequential_row(kind, filtered, prev):
    """Average or Paeth unfiltering (each pixel depends on its left neighbour), one byte per
    pixel, over the columns that can be nonzero only."""
    out = np.zeros_like(filtered)
    support = np.flatnonzero(filtered | prev | np.concatenate(([0], prev[:-1])))
    if support.size == 0:
        return out
    lo, hi = int(support[0]), int(support[-1])
    d, b_row = filtered[lo:hi + 1].tolist(), prev[max(lo - 1, 0):hi + 1].tolist()
    offset = 1 if lo else 0          # index of column x in b_row is x - lo + offset
    values, a, x, width = [], 0, lo, len(filtered)
    while x < width and (x <= hi or a):
        fx = d[x - lo] if x <= hi else 0
        b = b_row[x - lo + offset] if x <= hi else 0
        if kind == AVERAGE:
            a = (fx + ((a + b) >> 1)) & 255
        else:
            c = (b_row[x - lo + offset - 1] if x - 1 <= hi else 0) if x else 0
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            a = (fx + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        values.append(a)
        x += 1
    out[lo:lo + len(values)] = values
    return out


def read_gray8(data):
    """Decode an 8-bit grayscale PNG as a band of rows.

    Parameters
    ----------
    data : bytes
        The PNG file.

    Returns
    -------
    (height, width, top, rows) or None
        `rows` (uint8, shape (k, width)) are the image's rows ``top .. top + k - 1``; every other
        row is zero. None when the PNG is not 8-bit grayscale, non-interlaced.

    Raises
    ------
    PNGError
        Damaged data.
    """
    header, compressed = None, []
    for kind, payload in _chunks(data):
        if kind == b"IHDR":
            if len(payload) != 13:
                raise PNGError("bad IHDR chunk")
            header = struct.unpack(">IIBBBBB", payload)
        elif kind == b"IDAT":
            compressed.append(payload)
    if header is None:
        raise PNGError("no IHDR chunk")
    width, height, depth, colour, _, _, interlace = header
    if (depth, colour, interlace) != (8, 0, 0):
        return None
    if not (width and height):
        raise PNGError("image has no pixels")
    try:
        raw = zlib_ng.decompress(b"".join(compressed))
    except zlib_ng.error as exc:
        raise PNGError(f"bad compressed data ({exc})") from None
    if len(raw) != height * (width + 1):
        raise PNGError(f"image data is {len(raw)} bytes, expected {height * (width + 1)}")
    rows = np.frombuffer(raw, np.uint8).reshape(height, width + 1)
    filters, filtered = rows[:, 0], rows[:, 1:]
    if filters.max() > PAETH:
        raise PNGError(f"unknown row filter {int(filters.max())}")
    nonzero = np.flatnonzero(filtered.any(axis=1))
    if nonzero.size == 0:
        return height, width, 0, np.zeros((0, width), np.uint8)
    top, last = int(nonzero[0]), int(nonzero[-1])
    # Above `top` every row is zero. Below `last` the filtered bytes are zero, so a row is
    # nonzero only while it inherits from a nonzero row above (Up, Average, Paeth).
    band, prev, r = [], np.zeros(width, np.uint8), top
    while r < height:
        kind, f = filters[r], filtered[r]
        if kind == NONE:
            row = f.copy()
        elif kind == SUB:
            row = np.add.accumulate(f, dtype=np.uint8)
        elif kind == UP:
            row = f + prev
        else:
            row = _sequential_row(kind, f, prev)
        if r > last and not row.any():
            break
        band.append(row)
        prev, r = row, r + 1
    return height, width, top, np.stack(band)
