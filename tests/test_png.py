import struct
import zipfile
import zlib

import numpy as np
import pytest

from conftest import disk, png_bytes
from nucseg.io import NucsegError, RawSource, decode_png
from nucseg.png import AVERAGE, NONE, PAETH, SUB, UP, PNGError, read_gray8


def _paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else b if pb <= pc else c


def _filter_row(kind, row, prev):
    """PNG's forward filter of one row of 8-bit gray pixels (the encoder's side)."""
    row, prev = row.astype(int), prev.astype(int)
    left = np.concatenate(([0], row[:-1]))
    upleft = np.concatenate(([0], prev[:-1]))
    predictor = {NONE: 0 * row, SUB: left, UP: prev, AVERAGE: (left + prev) // 2,
                 PAETH: np.array([_paeth(a, b, c) for a, b, c in zip(left, prev, upleft)])}[kind]
    return ((row - predictor) % 256).astype(np.uint8)


def encode(image, filters):
    """An 8-bit grayscale PNG whose row i uses filter ``filters[i % len(filters)]``."""
    height, width = image.shape
    raw, prev = bytearray(), np.zeros(width, np.uint8)
    for i, row in enumerate(image):
        kind = filters[i % len(filters)]
        raw += bytes([kind]) + _filter_row(kind, row, prev).tobytes()
        prev = row

    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(bytes(raw))) + chunk(b"IEND", b""))


def whole(band):
    height, width, top, rows = band
    out = np.zeros((height, width), np.uint8)
    out[top:top + len(rows)] = rows
    return out


NUCLEI = {
    "disk": disk((40, 50), (20, 30), 7).astype(np.uint8) * 255,
    "touching the corner": disk((30, 30), (0, 0), 9).astype(np.uint8) * 255,
    "touching the right and bottom": disk((30, 30), (29, 29), 6).astype(np.uint8) * 255,
    "two blobs": (disk((40, 40), (8, 8), 4) | disk((40, 40), (30, 25), 5)).astype(np.uint8) * 255,
    "one pixel": np.pad(np.array([[255]], np.uint8), ((7, 3), (2, 9))),
}


@pytest.mark.parametrize("name", sorted(NUCLEI))
@pytest.mark.parametrize("filters", [[NONE], [SUB], [UP], [AVERAGE], [PAETH], [PAETH, UP, SUB, AVERAGE, NONE]],
                         ids=["none", "sub", "up", "average", "paeth", "mixed"])
def test_every_row_filter_decodes_to_the_image(name, filters):
    image = NUCLEI[name]
    band = read_gray8(encode(image, filters))
    np.testing.assert_array_equal(whole(band), image)
    assert band[2] <= np.flatnonzero(image.any(axis=1))[0]   # the band starts at the nucleus, not row 0


def test_gray_values_other_than_255_and_an_empty_mask():
    rng = np.random.default_rng(0)
    image = np.zeros((20, 24), np.uint8)
    image[5:12, 3:20] = rng.integers(0, 256, (7, 17))
    np.testing.assert_array_equal(whole(read_gray8(encode(image, [PAETH, AVERAGE]))), image)
    height, width, top, rows = read_gray8(encode(np.zeros((6, 7), np.uint8), [UP]))
    assert (height, width) == (6, 7) and rows.shape == (0, 7)


def test_pillow_written_masks_and_other_kinds_of_png():
    mask = disk((33, 47), (16, 20), 9).astype(np.uint8) * 255
    np.testing.assert_array_equal(whole(read_gray8(png_bytes(mask))), mask)
    assert read_gray8(png_bytes(np.stack([mask] * 3, axis=-1))) is None        # RGB: Pillow's job
    assert read_gray8(png_bytes(mask.astype(np.uint16) * 257)) is None          # 16 bit


@pytest.mark.parametrize("damage, message", [
    (lambda d: d[:-30], "truncated"),
    (lambda d: d[:40] + bytes([d[40] ^ 0xFF]) + d[41:], "checksum"),
    (lambda d: b"GIF89a" + d[6:], "not a PNG"),
])
def test_damaged_data_is_refused(damage, message):
    data = encode(NUCLEI["disk"], [PAETH])
    with pytest.raises(PNGError, match=message):
        read_gray8(damage(data))


def test_a_damaged_mask_in_the_zip_names_the_member(tmp_path, kaggle_zip, samples):
    image_id = sorted(samples)[0]
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(kaggle_zip) as src, zipfile.ZipFile(bad, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith(f"{image_id}/masks/m001.png"):
                data = data[:-30]
            dst.writestr(info, data)
    with pytest.raises(NucsegError) as exc:
        list(RawSource(bad).read_mask_bands(image_id))
    assert f"{image_id}/masks/m001.png: not a readable image (truncated" in str(exc.value)
    assert "\n" not in str(exc.value)


def test_real_masks_decode_as_pillow_decodes_them(shared_zip):
    source = RawSource(shared_zip)
    ids = source.ids[::67]                                   # 10 images of every size and kind
    n = 0
    for image_id in ids:
        for member in source.masks[image_id]:
            data = source.read_bytes(member)
            np.testing.assert_array_equal(whole(read_gray8(data)), decode_png(data, member))
            n += 1
    assert n > 250
