import re

import keras
import numpy as np
import pandas as pd
import pytest
import tifffile

from conftest import png_bytes, synthetic_sample, write_kaggle_dir
from nucseg.data import to_gray
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
    with pytest.raises(NucsegError, match=f"^{plain / 'a.png'} and {plain / 'a.png'} share the id 'a'"):
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


# ---------------------------------------------------------------------------------------------
# Bad or unusual input


def _raw16(seed=5):
    """A gray16 sample (12-bit data) and its nuclei: the camera data the float cases derive from."""
    return synthetic_sample(np.random.default_rng(seed), (96, 112), 5, "gray16")


def test_float_tiff_with_raw_intensities_segments_like_its_16_bit_twin(tmp_path):
    image, nuclei = _raw16()
    tifffile.imwrite(tmp_path / "u16.tif", image)
    raw = image.astype(np.float32) * 0.6 + 300   # ImageJ "32-bit": raw intensities, about 300 to 2800
    tifffile.imwrite(tmp_path / "f32_raw.tif", raw)
    tifffile.imwrite(tmp_path / "f32_unit.tif", (image / 4095.0).astype(np.float32))   # already in [0, 1]
    segmenter = Segmenter("otsu")
    counts = {f: segmenter.labels(segmenter.mask(discover([tmp_path / f])[0].load())).max()
              for f in ("u16.tif", "f32_raw.tif", "f32_unit.tif")}
    assert counts == {"u16.tif": len(nuclei), "f32_raw.tif": len(nuclei), "f32_unit.tif": len(nuclei)}


def test_nan_pixels_and_stacks_are_skipped_with_the_file_and_the_fix(tmp_path):
    image, nuclei = _raw16()
    folder = tmp_path / "in"
    folder.mkdir()
    tifffile.imwrite(folder / "good.tif", image)
    with_nan = image.astype(np.float32)
    with_nan[10:12, 20:30] = np.nan
    tifffile.imwrite(folder / "nan.tif", with_nan)
    planes = np.stack([image, image // 2, image // 3])
    tifffile.imwrite(folder / "zstack3.tif", planes, photometric="minisblack")   # not RGB: three z-slices
    tifffile.imwrite(folder / "twochan.tif", planes[:2], imagej=True, metadata={"axes": "CYX"})
    tifffile.imwrite(folder / "zstack5.tif", np.concatenate([planes, planes[:2]]))
    summary = predict_images(discover([folder]), Segmenter("otsu"), tmp_path / "out", progress=False)
    errors = summary.set_index("id")["error"].to_dict()
    assert errors["good"] == "" and summary.set_index("id").loc["good", "nuclei"] == len(nuclei)
    assert "20 NaN or infinite pixels" in errors["nan"] and "save the image as 8- or 16-bit" in errors["nan"]
    for name, n in (("zstack3", 3), ("twochan", 2), ("zstack5", 5)):
        assert f"{name}.tif: a stack of {n} planes ({n}, 96, 112)" in errors[name]
        assert "max projection" in errors[name]
    assert not (tmp_path / "out" / "masks" / "zstack3.png").exists()


def test_channels_first_tiff_is_rgb_only_when_tagged_rgb(tmp_path):
    rgb, _ = synthetic_sample(np.random.default_rng(6), (40, 48), 3, "rgb")
    tifffile.imwrite(tmp_path / "planar.tif", np.moveaxis(rgb, -1, 0), photometric="rgb", planarconfig="separate")
    np.testing.assert_array_equal(discover([tmp_path / "planar.tif"])[0].load(), rgb)
    with pytest.raises(ValueError, match=r"shape \(40, 48, 5\).*max projection"):
        Segmenter("otsu").mask(np.zeros((40, 48, 5), np.uint8))   # not 5 channels of one image


def test_discover_kaggle_layout_one_level_down_and_skips_masks_in_plain_folders(tmp_path, samples):
    data = tmp_path / "data"
    write_kaggle_dir(data / "stage1_test", samples)
    (data / "overview.png").write_bytes(png_bytes(samples[sorted(samples)[0]][0]))
    found = discover([data])
    assert [f.id for f in found] == sorted(samples) + ["overview"]   # no mask segmented as an image
    assert found[0].name.endswith(f"stage1_test/{found[0].id}/images/{found[0].id}.png")
    one_id = data / "stage1_test" / sorted(samples)[0]          # a plain folder: images/ and masks/
    assert [f.id for f in discover([one_id])] == [f"images__{one_id.name}"]


def test_windows_that_leave_gaps_raise_instead_of_nan(threshold_model):
    gray = np.random.default_rng(0).random((100, 100)).astype(np.float32)
    with pytest.raises(ValueError, match="uncovered"):
        native_probs(threshold_model, gray, tile=32, overlap=-40)
    for settings, message in [(dict(tile=64, overlap=64), "overlap 64: out of range; use one below the tile (64), e.g. 16"),
                              (dict(overlap=-1), "overlap -1: out of range; use 0 or more"),
                              (dict(tile=-5, overlap=0), "tile -5: out of range; use 0 (whole images)"),
                              (dict(threshold=7), "threshold 7: out of range; use a probability between 0 and 1"),
                              (dict(batch_size=0), "batch_size 0: out of range; use 1 or more")]:
        with pytest.raises(ValueError, match=re.escape(message)):
            Segmenter("unet", threshold_model, **settings)
    Segmenter("otsu", tile=-5, overlap=-1, threshold=7)   # Otsu uses none of these


def test_summary_is_written_when_the_run_is_interrupted(tmp_path, samples):
    out = tmp_path / "out"
    out.mkdir()
    pd.DataFrame({"id": ["from_an_earlier_run"]}).to_csv(out / "summary.csv", index=False)
    items = discover([write_kaggle_dir(tmp_path / "k", samples)])[:3]
    checkpointed = []

    def interrupted():   # Ctrl-C while the third image loads
        checkpointed.extend(pd.read_csv(out / "summary.csv")["id"])
        raise KeyboardInterrupt

    items[2].load = interrupted
    with pytest.raises(KeyboardInterrupt):
        predict_images(items, Segmenter("otsu"), out, rle_csv=tmp_path / "r.csv", progress=False,
                       checkpoint_seconds=0)
    assert checkpointed == [items[0].id, items[1].id]   # rewritten during the run, not only at its end
    summary = pd.read_csv(out / "summary.csv")
    assert summary["id"].tolist() == [items[0].id, items[1].id]
    assert all((out / "masks" / f"{i}.png").exists() for i in summary["id"])
    assert not (tmp_path / "r.csv").exists()   # a half submission is never written


def test_an_earlier_runs_summary_is_replaced_before_the_first_image(tmp_path, samples):
    """A run killed outright before its first checkpoint must not leave the previous run's table
    beside its own masks: summary.csv is emptied as the run starts."""
    out = tmp_path / "out"
    out.mkdir()
    pd.DataFrame({"id": ["from_an_earlier_run"]}).to_csv(out / "summary.csv", index=False)
    items = discover([write_kaggle_dir(tmp_path / "k", samples)])[:1]
    seen = []
    load = items[0].load
    items[0].load = lambda: seen.append(pd.read_csv(out / "summary.csv")) or load()
    predict_images(items, Segmenter("otsu"), out, progress=False, checkpoint_seconds=3600)
    assert seen[0].empty and "nuclei" in seen[0].columns
    assert pd.read_csv(out / "summary.csv")["id"].tolist() == [items[0].id]


def _twins(tmp_path):
    """One gray16 sample (12-bit data) saved as it is and as a camera might store it otherwise."""
    image, nuclei = _raw16(seed=7)
    tifffile.imwrite(tmp_path / "u16.tif", image)
    tifffile.imwrite(tmp_path / "i16.tif", (image.astype(np.int32) - 2000).astype(np.int16))   # offset below 0
    tifffile.imwrite(tmp_path / "u32.tif", image.astype(np.uint32) * 100)                     # above 65535
    return len(nuclei)


def test_signed_and_32_bit_images_segment_like_their_16_bit_twin(tmp_path):
    """Scaled by their own range: clipped at 0, the signed twin lost every pixel below the offset
    (its nuclei with them), and the 32-bit one saturated above 65535."""
    n = _twins(tmp_path)
    segmenter = Segmenter("otsu")
    masks = {f: segmenter.mask(discover([tmp_path / f])[0].load()) for f in ("u16.tif", "i16.tif", "u32.tif")}
    assert [segmenter.labels(m).max() for m in masks.values()] == [n, n, n]
    assert np.array_equal(masks["i16.tif"], masks["u16.tif"]) and np.array_equal(masks["u32.tif"], masks["u16.tif"])


def test_cmyk_jpeg_is_read_as_its_colours_not_as_rgba(tmp_path):
    from PIL import Image

    rgb = np.zeros((40, 48, 3), np.uint8)
    rgb[10:30, 12:36] = (200, 60, 120)
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=100)
    Image.fromarray(rgb).save(tmp_path / "rgb.jpg", quality=100)
    cmyk, plain = (discover([tmp_path / f])[0].load() for f in ("cmyk.jpg", "rgb.jpg"))
    assert cmyk.shape == plain.shape == (40, 48, 3)
    # JPEG's rounding only (C, M, Y taken for R, G, B turned the black background white: 1.0 apart)
    assert np.abs(to_gray(cmyk) - to_gray(plain)).max() < 0.05


def test_an_output_folder_inside_the_input_folder_is_not_read_back(tmp_path, samples):
    folder = tmp_path / "in"
    folder.mkdir()
    for image_id, (image, _) in list(samples.items())[:2]:
        (folder / f"{image_id}.png").write_bytes(png_bytes(image))
    out = folder / "results"
    for _ in range(2):   # the second run finds the first run's masks and labels inside the input folder
        summary = predict_images(discover([folder], exclude=[out / "labels"]), Segmenter("otsu"), out,
                                 progress=False)
        assert sorted(summary["id"]) == sorted(samples)[:2]
    assert len(discover([folder])) == 2 + 2   # without exclude: its label TIFFs too (masks/ is always skipped)


def test_an_image_that_fails_now_loses_its_earlier_runs_outputs(tmp_path, samples):
    """summary.csv lists only this run; a mask left from an earlier run of an image that fails now
    would sit beside a row saying it failed."""
    folder = tmp_path / "in"
    folder.mkdir()
    first, second = sorted(samples)[:2]
    for image_id in (first, second):
        (folder / f"{image_id}.png").write_bytes(png_bytes(samples[image_id][0]))
    out = tmp_path / "out"
    predict_images(discover([folder]), Segmenter("otsu"), out, progress=False)
    (folder / f"{second}.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken since")
    summary = predict_images(discover([folder]), Segmenter("otsu"), out, progress=False).set_index("id")
    assert summary.loc[second, "error"] and not summary.loc[first, "error"]
    assert sorted(p.name for p in (out / "masks").iterdir()) == [f"{first}.png"]
    assert sorted(p.name for p in (out / "labels").iterdir()) == [f"{first}.tif"]

