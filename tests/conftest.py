"""Shared fixtures: synthetic nuclei (disks) in the Kaggle layout, and the real data when present."""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SHARED_ZIP = SHARED / "data" / "dsb2018" / "stage1_train.zip"
SHARED_CSV = SHARED / "data" / "dsb2018" / "stage1_train_labels.csv"
SHARED_WEIGHTS = SHARED / "weights" / "mobilenet_v2_1.0_224_no_top.h5"


def disk(shape, center, radius):
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    return (yy - center[0]) ** 2 + (xx - center[1]) ** 2 <= radius**2


def synthetic_sample(rng, shape=(64, 80), n_nuclei=4, kind="gray8", radius=(4, 8)):
    """An image with `n_nuclei` non-overlapping disks and one mask per disk.

    kind: gray8 / gray16 (bright nuclei on dark), rgb / rgba (dark purple nuclei on light).
    """
    masks, taken = [], np.zeros(shape, bool)
    while len(masks) < n_nuclei:
        r = int(rng.integers(*radius))
        c = (int(rng.integers(r, shape[0] - r)), int(rng.integers(r, shape[1] - r)))
        if not (disk(shape, c, r + 2) & taken).any():   # other disks beyond r + 2: a gap of over 2 px
            m = disk(shape, c, r)
            masks.append(m)
            taken |= m
    noise = rng.normal(0, 0.03, shape)
    fg = np.clip(np.where(taken, 0.75, 0.15) + noise, 0, 1)
    if kind == "gray8":
        image = (fg * 255).astype(np.uint8)
    elif kind == "gray16":
        image = (fg * 4095).astype(np.uint16)  # 12-bit data in a 16-bit file, as cameras write
    else:
        inv = 1 - fg
        rgb = np.stack([inv * 0.8, inv * 0.6, inv * 0.9], -1)
        image = (np.clip(rgb, 0, 1) * 255).astype(np.uint8)
        if kind == "rgba":
            image = np.concatenate([image, np.full(shape + (1,), 255, np.uint8)], -1)
    return image, masks


def png_bytes(array):
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


KINDS = ("gray8", "rgb", "rgba", "gray16")


def make_samples(n=8, seed=0, shape=(64, 80)):
    """`n` samples cycling through the image kinds, keyed by a hex-like id."""
    rng = np.random.default_rng(seed)
    return {f"{i:02d}" + "ab" * 4: synthetic_sample(rng, shape, 3 + i % 3, KINDS[i % len(KINDS)])
            for i in range(n)}


def write_kaggle_dir(root, samples):
    root = Path(root)
    for image_id, (image, masks) in samples.items():
        (root / image_id / "images").mkdir(parents=True, exist_ok=True)
        (root / image_id / "masks").mkdir(parents=True, exist_ok=True)
        (root / image_id / "images" / f"{image_id}.png").write_bytes(png_bytes(image))
        for k, m in enumerate(masks):
            (root / image_id / "masks" / f"m{k:03d}.png").write_bytes(png_bytes(m.astype(np.uint8) * 255))
    return root


def write_kaggle_zip(path, samples, prefix=""):
    with zipfile.ZipFile(path, "w") as zf:
        for image_id, (image, masks) in samples.items():
            zf.writestr(f"{prefix}{image_id}/images/{image_id}.png", png_bytes(image))
            for k, m in enumerate(masks):
                zf.writestr(f"{prefix}{image_id}/masks/m{k:03d}.png", png_bytes(m.astype(np.uint8) * 255))
    return Path(path)


def subset_zip(src, dest, n):
    """The first `n` image folders of a Kaggle zip, as a new zip."""
    with zipfile.ZipFile(src) as zin:
        ids = sorted({name.split("/", 1)[0] for name in zin.namelist()})[:n]
        with zipfile.ZipFile(dest, "w") as zout:
            for name in zin.namelist():
                if name.split("/", 1)[0] in ids and not name.endswith("/"):
                    zout.writestr(name, zin.read(name))
    return Path(dest)


@pytest.fixture
def samples():
    return make_samples()


@pytest.fixture
def kaggle_dir(tmp_path, samples):
    return write_kaggle_dir(tmp_path / "stage1_train", samples)


@pytest.fixture
def kaggle_zip(tmp_path, samples):
    return write_kaggle_zip(tmp_path / "stage1_train.zip", samples)


def have_shared_zip():
    """Whether ../shared holds the data zip: absent, or a Git LFS pointer (a checkout without its
    large files), is no, and the tests that need it skip. Present but unreadable (truncated or
    corrupt) fails the test instead: CI has the zip, and a broken copy must not turn its real-data
    tests into skips."""
    if not SHARED_ZIP.exists():
        return False
    with open(SHARED_ZIP, "rb") as f:
        if f.read(40).startswith(b"version https://git-lfs"):
            return False
    if not zipfile.is_zipfile(SHARED_ZIP):
        pytest.fail(f"{SHARED_ZIP} is not a readable zip: copy stage1_train.zip there again", pytrace=False)
    return True


@pytest.fixture
def shared_zip():
    if not have_shared_zip():
        pytest.skip(f"{SHARED_ZIP} absent (or only its Git LFS pointer)")
    return SHARED_ZIP
