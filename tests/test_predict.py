import re

import keras
import numpy as np
import pandas as pd
import pytest
import tifffile

from conftest import png_bytes, synthetic_sample, write_kaggle_dir
from nucseg.data import to_gray
from nucseg.io import NucsegError
from nucseg.predict import Segmenter, _blend, discover, iter_native_probs, native_probs, predict_images
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


def test_overlapping_windows_blend_by_hand():
    """Two windows of 6 px overlapping by 2, predicting 0 and 1: the edge weights ramp 0.5, 1, 1, 1,
    1, 0.5 along the overlapping direction, so the two overlap pixels are (0 * 1 + 1 * 0.5) / 1.5 and
    (0 * 0.5 + 1 * 1) / 1.5; a window spanning the image gets flat weights across it."""
    expected = np.array([0, 0, 0, 0, 1 / 3, 2 / 3, 1, 1, 1, 1], np.float32)
    zeros, ones = np.zeros((4, 6), np.float32), np.ones((4, 6), np.float32)
    across = _blend((4, 10), [(0, 0, 4, 6), (0, 4, 4, 6)], [zeros, ones], overlap=2)
    np.testing.assert_allclose(across, np.tile(expected, (4, 1)), rtol=1e-6)
    down = _blend((10, 4), [(0, 0, 6, 4), (4, 0, 6, 4)], [zeros.T, ones.T], overlap=2)
    np.testing.assert_allclose(down, np.tile(expected[:, None], (1, 4)), rtol=1e-6)


def test_native_probs_tiled_matches_whole(threshold_model):
    yy, xx = np.mgrid[:300, :200]
    smooth = (0.5 + 0.45 * np.sin(yy / 23.0) * np.cos(xx / 17.0)).astype(np.float32)
    tiled = native_probs(threshold_model, smooth, tile=96, overlap=32)
    whole = native_probs(threshold_model, smooth, tile=0)
    assert tiled.shape == smooth.shape
    # the stand-in sees each tile at a higher resolution than the whole image, so the two differ
    # only where the image crosses 0.5 (how windows blend: test_overlapping_windows_blend_by_hand)
    assert np.mean((tiled > 0.5) == (smooth > 0.5)) > 0.99
    assert np.mean((whole > 0.5) == (smooth > 0.5)) > 0.97
    assert np.abs(np.diff(tiled, axis=1)).max() < 0.5


def test_an_image_smaller_than_the_tile_is_predicted_at_the_tile_scale(threshold_model):
    # tile = the stand-in's 32 px input: the model sees native pixels 1:1, so its per-pixel
    # answer comes back exactly, mirrored padding cut off; resizing the 20 px side to 32 and back
    # instead would blur it
    yy, xx = np.mgrid[:20, :50]
    ramp = (yy / 19 * 0.6 + 0.2 + 0.1 * np.sin(xx / 3)).astype(np.float32)
    probs = native_probs(threshold_model, ramp, tile=32, overlap=8)
    np.testing.assert_allclose(probs, 1 / (1 + np.exp(-20 * (ramp - 0.5))), atol=1e-5)


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
    # no overlap given: 64 native pixels, at most half the tile
    assert [Segmenter("unet", threshold_model, tile=t).overlap for t in (256, 96, 32)] == [64, 48, 16]


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
    assert [f.id for f in discover([plain / "a.png", plain, plain / "sub" / ".." / "a.png"])] == ["a", "sub__b"]
    tifffile.imwrite(plain / "a.tif", samples[sorted(samples)[3]][0])
    with pytest.raises(NucsegError, match=f"^files share an id .*: {plain / 'a.png'} and {plain / 'a.tif'} \\('a'\\)"):
        discover([plain])
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


def test_two_interleaved_channels_are_gray_and_alpha_only_when_tagged_alpha(tmp_path):
    """A membrane and a nuclear channel interleaved (YXS, the extra sample untagged) was read as
    gray + alpha: the nuclear channel dropped, and 0 nuclei found without a word."""
    image, nuclei = _raw16()
    two = np.stack([image // 3, image], -1)
    tifffile.imwrite(tmp_path / "two.tif", two, photometric="minisblack", planarconfig="contig")
    alpha = np.stack([image, np.full_like(image, 65535)], -1)
    tifffile.imwrite(tmp_path / "alpha.tif", alpha, photometric="minisblack", planarconfig="contig",
                     extrasamples=["unassalpha"])
    with pytest.raises(NucsegError, match=r"two.tif: two channels \(96, 112, 2\) that are not gray \+ alpha; "
                                          r"save one channel"):
        discover([tmp_path / "two.tif"])[0].load()
    np.testing.assert_array_equal(discover([tmp_path / "alpha.tif"])[0].load(), alpha)
    assert Segmenter("otsu").labels(Segmenter("otsu").mask(alpha)).max() == len(nuclei)


def test_discover_kaggle_layout_one_level_down_and_skips_masks_in_plain_folders(tmp_path, samples):
    data = tmp_path / "data"
    write_kaggle_dir(data / "stage1_test", samples)
    (data / "overview.png").write_bytes(png_bytes(samples[sorted(samples)[0]][0]))
    found = discover([data])
    assert sorted(f.id for f in found) == sorted(samples) + ["overview"]   # no mask segmented as an image
    kaggle = [f for f in found if f.id != "overview"][0]
    assert kaggle.name == str(data / "stage1_test" / kaggle.id / "images" / f"{kaggle.id}.png")
    one_id = data / "stage1_test" / sorted(samples)[0]          # one <id> folder: images/ and masks/
    assert [f.id for f in discover([one_id])] == [one_id.name]


def test_discover_plain_folders_named_images_and_mixed_layouts(tmp_path, samples):
    """A folder called images/ is common outside the Kaggle layout: its files are all taken (not
    refused as a Kaggle folder with two PNGs), and so are the files beside a Kaggle-layout one."""
    first, second, third = (png_bytes(samples[i][0]) for i in sorted(samples)[:3])
    nest = tmp_path / "nest"
    for name, data in (("plate1/images/w1.png", first), ("plate1/images/w2.png", second),
                       ("plate2/images/w1.png", third), ("loose.png", first),
                       ("k7/images/k7.png", second), ("k7/masks/m0.png", second),        # Kaggle: <id>/images/<id>.png
                       ("k8/images/x.png", third), ("k8/masks/m0.png", third),          # its one PNG beside masks/
                       (".hidden/h.png", first), ("__MACOSX/._loose.png", first)):
        (nest / name).parent.mkdir(parents=True, exist_ok=True)
        (nest / name).write_bytes(data)
    (nest / "tiffs").mkdir()
    tifffile.imwrite(nest / "tiffs" / "t.ome.tif", samples[sorted(samples)[3]][0])
    (nest / "k8" / "images" / "._x.png").write_bytes(b"AppleDouble")   # hidden: not a second PNG of k8
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "deep").mkdir(parents=True)
    (elsewhere / "deep" / "e.png").write_bytes(first)
    (nest / "linked").symlink_to(elsewhere, target_is_directory=True)         # a link to a folder is followed
    (elsewhere / "deep" / "loop").symlink_to(elsewhere, target_is_directory=True)   # once, loops included
    found = {f.id: f.name for f in discover([nest])}
    assert sorted(found) == ["k7", "k8", "linked__deep__e", "loose", "plate1__images__w1", "plate1__images__w2",
                             "plate2__images__w1", "tiffs__t"]
    assert found["k8"] == str(nest / "k8" / "images" / "x.png")


def test_an_earlier_runs_outputs_elsewhere_in_the_inputs_are_left_out(tmp_path, samples):
    proj = tmp_path / "proj"
    proj.mkdir()
    for image_id in sorted(samples)[:2]:
        (proj / f"{image_id}.png").write_bytes(png_bytes(samples[image_id][0]))
    predict_images(discover([proj]), Segmenter("otsu"), proj / "run1", progress=False)
    notes = []
    found = discover([proj], exclude=[proj / "run2" / "labels", proj / "run2" / "masks"], notes=notes)
    assert [f.id for f in found] == sorted(samples)[:2]
    assert notes == [f"left out {proj / 'run1'}'s masks/ and labels/: an earlier nucseg run's outputs"]
    (proj / "run1" / "summary.csv").write_text("sample,count\n")   # someone else's summary.csv
    assert len(discover([proj])) == 2 + 2                            # the label TIFFs are read then


def test_windows_that_leave_gaps_raise_instead_of_nan(threshold_model):
    gray = np.random.default_rng(0).random((100, 100)).astype(np.float32)
    with pytest.raises(ValueError, match="uncovered"):
        native_probs(threshold_model, gray, tile=32, overlap=-40)
    for settings, message in [(dict(tile=64, overlap=33), "overlap 33: out of range; use at most half the tile (64), e.g. 16"),
                              (dict(tile=31, overlap=0), "tile 31: out of range; use 0 (whole images) or 32 to 4096"),
                              (dict(overlap=-1), "overlap -1: out of range; use 0 or more"),
                              (dict(tile=-5, overlap=0), "tile -5: out of range; use 0 (whole images)"),
                              (dict(threshold=7), "threshold 7: out of range; use a probability between 0 and 1"),
                              (dict(batch_size=0), "batch_size 0: out of range; use 1 or more")]:
        with pytest.raises(ValueError, match=re.escape(message)):
            Segmenter("unet", threshold_model, **settings)
    Segmenter("otsu", tile=-5, overlap=-1, threshold=7)   # Otsu uses none of these


def _snapshot(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("stop", ["ctrl_c", "disk_full"])
def test_a_run_that_stops_leaves_the_earlier_results_as_they_were(tmp_path, samples, monkeypatch, stop):
    """Ctrl-C on the third image of a rerun with other settings, or its third label file failing
    to write: nothing of it lands, so the earlier masks, labels, summary.csv and RLE CSV stay."""
    out = tmp_path / "out"
    items = discover([write_kaggle_dir(tmp_path / "k", samples)])[:4]
    predict_images(items, Segmenter("otsu", instance_params={"min_size": 1}), out, rle_csv=tmp_path / "r.csv",
                   progress=False)
    before = _snapshot(tmp_path)
    if stop == "ctrl_c":
        def ctrl_c():
            raise KeyboardInterrupt
        items[2].load = ctrl_c
    else:
        real, calls = tifffile.imwrite, []

        def imwrite(*args, **kwargs):
            calls.append(1)
            if len(calls) == 3:
                raise OSError(28, "No space left on device")
            return real(*args, **kwargs)
        monkeypatch.setattr(tifffile, "imwrite", imwrite)
    with pytest.raises(KeyboardInterrupt) if stop == "ctrl_c" else \
            pytest.raises(NucsegError, match=f"^{out}: could not write the outputs of .*No space left.*free disk space"):
        predict_images(items, Segmenter("otsu", instance_params={"min_size": 500}), out, rle_csv=tmp_path / "r.csv",
                       progress=False)
    assert _snapshot(tmp_path) == before          # no file changed, none left behind (temporary ones included)


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
    notes = []   # without exclude, its summary.csv marks it as a run
    assert len(discover([folder], notes=notes)) == 2 and notes[0].startswith(f"left out {out}'s masks/")


def test_an_image_that_fails_now_keeps_its_earlier_runs_outputs(tmp_path, samples):
    """Nothing is lost to a file that became unreadable (a half-synced copy, say): its earlier mask
    and labels stay, and its row says they are an earlier run's."""
    folder = tmp_path / "in"
    folder.mkdir()
    first, second = sorted(samples)[:2]
    for image_id in (first, second):
        (folder / f"{image_id}.png").write_bytes(png_bytes(samples[image_id][0]))
    out = tmp_path / "out"
    predict_images(discover([folder]), Segmenter("otsu"), out, progress=False)
    earlier = _snapshot(out / "labels")
    (folder / f"{second}.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken since")
    summary = predict_images(discover([folder]), Segmenter("otsu"), out, progress=False).set_index("id")
    assert not summary.loc[first, "error"]
    assert summary.loc[second, "error"].endswith(f"(kept an earlier run's masks/{second}.png and labels/{second}.tif)")
    assert sorted(p.name for p in (out / "masks").iterdir()) == [f"{first}.png", f"{second}.png"]
    assert _snapshot(out / "labels") == earlier


def test_16_bit_colour_pngs_and_compressed_tiffs_keep_every_bit(tmp_path):
    """Pillow keeps the high byte of a 16-bit RGB PNG: dim 12-bit data came out as 6 gray levels.
    LZW, ZSTD and JPEG TIFFs (Fiji, ZEN, QuPath) need imagecodecs, a dependency."""
    import imagecodecs

    image, nuclei = _raw16(seed=8)
    dim = (image // 3 + 100).astype(np.uint16)                        # about 100 to 1465: a dim 12-bit camera
    rgb48, rgba64 = np.stack([dim] * 3, -1), np.stack([dim] * 3 + [np.full_like(dim, 65535)], -1)
    (tmp_path / "rgb48.png").write_bytes(imagecodecs.png_encode(rgb48))
    (tmp_path / "rgba64.png").write_bytes(imagecodecs.png_encode(rgba64))
    tifffile.imwrite(tmp_path / "plain.tif", dim)
    tifffile.imwrite(tmp_path / "lzw.tif", dim, compression="lzw")
    tifffile.imwrite(tmp_path / "zstd.tif", dim, compression="zstd")
    loaded = {f.id: f.load() for f in discover([tmp_path])}
    np.testing.assert_array_equal(loaded["rgb48"], rgb48)
    np.testing.assert_array_equal(loaded["rgba64"], rgba64)
    for name in ("lzw", "zstd"):
        np.testing.assert_array_equal(loaded[name], dim)
    segmenter = Segmenter("otsu")
    masks = {k: segmenter.mask(v) for k, v in loaded.items()}
    assert segmenter.labels(masks["plain"]).max() == len(nuclei)
    for name in ("rgb48", "rgba64", "lzw", "zstd"):
        np.testing.assert_array_equal(masks[name], masks["plain"])
    (tmp_path / "bad16.png").write_bytes(imagecodecs.png_encode(rgb48)[:60])
    with pytest.raises(NucsegError, match=f"^{tmp_path / 'bad16.png'}: not a readable image .*save it again"):
        discover([tmp_path / "bad16.png"])[0].load()


def test_earlier_outputs_are_told_by_their_header_as_a_spreadsheet_saves_it(tmp_path):
    """A run's summary.csv and an --rle submission are known by their first line, also where a
    spreadsheet saved them again with Windows line ends and a byte-order mark, or R with quotes;
    anything else is not."""
    from nucseg.predict import RLE_COLUMNS, SUMMARY_COLUMNS, has_header, read_submission

    files = {"sub.csv": b"ImageId,EncodedPixels\n1a,1 3\n1a,7 2\n2b,4 1\n",
             "excel.csv": b"\xef\xbb\xbfImageId,EncodedPixels\r\n1a,1 3\r\n1a,7 2\r\n2b,4 1\r\n",
             "r.csv": b'"ImageId","EncodedPixels"\n"1a","1 3"\n"1a","7 2"\n"2b","4 1"\n',   # R's write.csv
             "summary.csv": (",".join(SUMMARY_COLUMNS) + "\nimg,img.png,4,4,1,3.0,3.0,0.1,\n").encode(),
             "swapped.csv": b"EncodedPixels,ImageId\n1 3,1a\n",
             "more.csv": b"ImageId,EncodedPixels,Score\n1a,1 3,0.9\n",
             "latin1.csv": "Probe,Fläche\n".encode("latin-1"),
             "empty.csv": b""}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    assert [n for n in files if has_header(tmp_path / n, RLE_COLUMNS)] == ["sub.csv", "excel.csv", "r.csv"]
    assert [n for n in files if has_header(tmp_path / n, SUMMARY_COLUMNS)] == ["summary.csv"]
    assert not has_header(tmp_path / "absent.csv", RLE_COLUMNS) and not has_header(tmp_path, RLE_COLUMNS)
    expected = {"1a": ["1 3", "7 2"], "2b": ["4 1"]}
    assert all(read_submission(tmp_path / n) == expected for n in ("sub.csv", "excel.csv", "r.csv"))
    assert read_submission(tmp_path / "more.csv") == read_submission(tmp_path / "absent.csv") == {}
