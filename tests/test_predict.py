import keras
import numpy as np
import pandas as pd
import pytest
import tifffile

from conftest import png_bytes, synthetic_sample, write_kaggle_dir
from nucseg.io import NucsegError
from nucseg.predict import Segmenter, discover, iter_native_probs, native_probs, predict_images
from nucseg.rle import rle_decode
from nucseg.windows import tile_starts


@pytest.fixture(scope="module")
def threshold_model():
    """A stand-in for the U-Net: logits 20 * (x - 0.5), so it predicts 'pixel brighter than 0.5'."""
    inputs = keras.Input((32, 32, 1))
    return keras.Model(inputs, keras.layers.Rescaling(20.0, offset=-10.0)(inputs))


@pytest.mark.parametrize("length, tile, overlap", [(100, 128, 16), (300, 128, 16), (129, 128, 64), (1000, 256, 32)])
def test_tiles_cover_and_overlap(length, tile, overlap):
    starts = tile_starts(length, tile, overlap)
    covered = np.zeros(length, bool)
    for s in starts:
        covered[s:s + tile] = True
    assert covered.all() and starts[0] == 0 and max(starts) + min(tile, length) == length
    assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:]))


def test_native_probs_tiled_matches_whole_and_has_no_seams(threshold_model):
    yy, xx = np.mgrid[:300, :200]
    smooth = (0.5 + 0.45 * np.sin(yy / 23.0) * np.cos(xx / 17.0)).astype(np.float32)
    tiled = native_probs(threshold_model, smooth, tile=96, overlap=32)
    whole = native_probs(threshold_model, smooth, tile=0)
    assert tiled.shape == smooth.shape
    # the stand-in sees each tile at a higher resolution than the whole image, so the two differ
    # only where the image crosses 0.5; tile borders add no jumps of their own
    assert np.mean((tiled > 0.5) == (smooth > 0.5)) > 0.99
    assert np.mean((whole > 0.5) == (smooth > 0.5)) > 0.97
    assert np.abs(np.diff(tiled, axis=1)).max() < 0.5


def test_images_predicted_together_match_images_predicted_alone(threshold_model):
    rng = np.random.default_rng(0)
    grays = [rng.random(shape).astype(np.float32) for shape in ((20, 30), (200, 130), (32, 32), (97, 301))]
    alone = [native_probs(threshold_model, g, tile=64, overlap=16, batch_size=3) for g in grays]
    together = list(iter_native_probs(threshold_model, iter(grays), tile=64, overlap=16, batch_size=3, group=3))
    assert len(together) == len(grays)
    for a, b, g in zip(alone, together, grays):
        assert b.shape == g.shape
        np.testing.assert_allclose(b, a, atol=1e-6)


def test_segmenters_on_synthetic_nuclei(threshold_model):
    image, nuclei = synthetic_sample(np.random.default_rng(4), (160, 200), 6, "gray8")
    for segmenter in (Segmenter("otsu"), Segmenter("unet", threshold_model, tile=64, overlap=16)):
        labels = segmenter.labels(segmenter.mask(image))
        assert labels.max() == len(nuclei)
    with pytest.raises(ValueError, match="needs a model"):
        Segmenter("unet")


def test_discover_files_folders_and_kaggle(tmp_path, samples, kaggle_zip):
    plain = tmp_path / "plain"
    (plain / "sub").mkdir(parents=True)
    (plain / "a.png").write_bytes(png_bytes(samples[sorted(samples)[0]][0]))
    tifffile.imwrite(plain / "sub" / "b.tif", samples[sorted(samples)[3]][0])   # 16-bit TIFF
    (plain / "notes.txt").write_text("not an image")
    found = discover([plain])
    assert [f.id for f in found] == ["a", "sub__b"]
    assert found[1].load().dtype == np.uint16
    assert [f.id for f in discover([kaggle_zip])] == sorted(samples)
    kaggle = write_kaggle_dir(tmp_path / "k", samples)
    assert [f.id for f in discover([kaggle])] == sorted(samples)
    assert [f.id for f in discover([plain / "a.png"])] == ["a"]
    with pytest.raises(NucsegError, match="share the id"):
        discover([plain / "a.png", plain / "a.png"])
    with pytest.raises(NucsegError, match="no such file"):
        discover([tmp_path / "missing"])


def test_predict_images_writes_outputs_and_skips_bad_files(tmp_path, samples):
    folder = tmp_path / "in"
    folder.mkdir()
    for image_id, (image, _) in list(samples.items())[:3]:
        (folder / f"{image_id}.png").write_bytes(png_bytes(image))
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnope")
    out = tmp_path / "out"
    summary = predict_images(discover([folder]), Segmenter("otsu"), out, rle_csv=tmp_path / "sub.csv",
                             progress=False)
    assert len(summary) == 4
    bad = summary.set_index("id").loc["broken"]
    assert "not a readable image" in bad["error"]
    good = summary[summary["error"] == ""]
    assert len(good) == 3
    for _, row in good.iterrows():
        labels = tifffile.imread(out / "labels" / f"{row['id']}.tif")
        assert labels.dtype == np.uint16 and labels.max() == row["nuclei"] == len(samples[row["id"]][1])
        assert (out / "masks" / f"{row['id']}.png").exists()
        assert row["width"] == samples[row["id"]][0].shape[1]
    rle = pd.read_csv(tmp_path / "sub.csv")
    first = good.iloc[0]
    decoded = [rle_decode(r, (first["height"], first["width"])) for r in rle[rle["ImageId"] == first["id"]]["EncodedPixels"]]
    labels = tifffile.imread(out / "labels" / f"{first['id']}.tif")
    np.testing.assert_array_equal(np.any(decoded, axis=0), labels > 0)
    assert pd.read_csv(out / "summary.csv").shape[0] == 4
