import json
import os
import zipfile

import numpy as np
import pytest

from conftest import png_bytes, write_kaggle_dir, write_kaggle_zip
from nucseg.io import (NucsegError, RawSource, UnknownIds, all_or_nothing, atomic_path, decode_png, find_raw, load_npz,
                       save_json, save_npz, save_text)


def test_zip_and_folder_read_the_same(kaggle_dir, kaggle_zip, samples):
    a, b = RawSource(kaggle_dir), RawSource(kaggle_zip)
    assert a.ids == b.ids == sorted(samples)
    for image_id in a.ids:
        np.testing.assert_array_equal(a.read_image(image_id), samples[image_id][0])
        np.testing.assert_array_equal(b.read_image(image_id), samples[image_id][0])
        assert len(list(b.read_masks(image_id))) == len(samples[image_id][1])
        assert a.image_size(image_id) == samples[image_id][0].shape[:2]


def test_zip_with_one_wrapping_folder(tmp_path, samples):
    source = RawSource(write_kaggle_zip(tmp_path / "x.zip", samples, prefix="stage1_train/"))
    assert source.ids == sorted(samples)
    assert "stage1_train/" in source.display(source.images[source.ids[0]])


def test_find_raw_prefers_zip_then_folder(tmp_path, samples):
    assert find_raw(tmp_path) is None
    write_kaggle_dir(tmp_path / "stage1_train", samples)
    assert find_raw(tmp_path) == tmp_path / "stage1_train"
    write_kaggle_zip(tmp_path / "stage1_train.zip", samples)
    assert find_raw(tmp_path) == tmp_path / "stage1_train.zip"


def test_source_pickles_for_process_pools(kaggle_zip):
    import pickle

    source = RawSource(kaggle_zip)
    source.read_image(source.ids[0])  # opens the zip handle
    clone = pickle.loads(pickle.dumps(source))
    np.testing.assert_array_equal(clone.read_image(source.ids[1]), source.read_image(source.ids[1]))


def _one_line(exc):
    message = str(exc.value)
    assert "\n" not in message
    return message


def test_corrupt_png_names_the_member(tmp_path, samples):
    bad = sorted(samples)[2]
    path = write_kaggle_zip(tmp_path / "stage1_train.zip", samples)
    truncated = tmp_path / "t.zip"
    with zipfile.ZipFile(path) as zin, zipfile.ZipFile(truncated, "w") as zout:
        for name in zin.namelist():
            data = zin.read(name)
            zout.writestr(name, data[:40] if name == f"{bad}/images/{bad}.png" else data)
    source = RawSource(truncated)
    with pytest.raises(NucsegError) as exc:
        source.read_image(bad)
    message = _one_line(exc)
    assert f"t.zip:{bad}/images/{bad}.png" in message and "not a readable image" in message


def test_empty_image_file(kaggle_dir, samples):
    bad = sorted(samples)[0]
    (kaggle_dir / bad / "images" / f"{bad}.png").write_bytes(b"")
    with pytest.raises(NucsegError) as exc:
        RawSource(kaggle_dir).read_image(bad)
    assert f"{bad}/images/{bad}.png: empty file" in _one_line(exc)


def test_missing_masks_folder(kaggle_dir, samples):
    import shutil

    bad = sorted(samples)[1]
    shutil.rmtree(kaggle_dir / bad / "masks")
    with pytest.raises(NucsegError) as exc:
        RawSource(kaggle_dir)
    message = _one_line(exc)
    assert message.startswith(f"masks/ missing in {kaggle_dir}/{bad}/") and "Kaggle layout" in message


def test_empty_masks_folder(kaggle_dir, samples):
    bad = sorted(samples)[1]
    for f in (kaggle_dir / bad / "masks").iterdir():
        f.unlink()
    with pytest.raises(NucsegError, match="masks/ has no PNG files"):
        RawSource(kaggle_dir)


def test_zip_with_wrong_layout(tmp_path):
    path = tmp_path / "stage1_train.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("pictures/a.png", png_bytes(np.zeros((4, 4), np.uint8)))
        zf.writestr("pictures/b.png", png_bytes(np.zeros((4, 4), np.uint8)))
    with pytest.raises(NucsegError) as exc:
        RawSource(path)
    message = _one_line(exc)
    assert str(path) in message and "expected Kaggle layout" in message


def test_not_a_zip(tmp_path):
    """Fetch downloads only when there is no zip: the fix is to delete this one."""
    path = tmp_path / "stage1_train.zip"
    path.write_bytes(b"<html>not found</html>")
    with pytest.raises(NucsegError, match=f"^{path}: not a zip file .*; delete it and 'dvc repro' downloads"):
        RawSource(path)


def test_a_zip_made_on_a_mac_reads_as_the_plain_one(tmp_path, samples):
    """macOS's Compress adds __MACOSX/ resource forks (._*) beside the wrapping folder."""
    path = write_kaggle_zip(tmp_path / "mac.zip", samples, prefix="stage1_train/")
    with zipfile.ZipFile(path, "a") as zf:
        for image_id in samples:
            zf.writestr(f"__MACOSX/stage1_train/{image_id}/images/._{image_id}.png", b"\x00\x05\x16\x07")
        zf.writestr("stage1_train/.DS_Store", b"\x00")
    source = RawSource(path)
    assert source.ids == sorted(samples) and source.prefix == "stage1_train/"


def test_a_damaged_member_says_how_to_get_a_good_zip(tmp_path, samples):
    path = write_kaggle_zip(tmp_path / "stage1_train.zip", samples)
    source = RawSource(path)
    member = source.images[source.ids[0]]
    data = bytearray(path.read_bytes())
    start = data.index(member.encode()) + len(member)   # the first member's data follows its local header
    data[start + 10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(NucsegError) as exc:
        RawSource(path).read_image(source.ids[0])
    message = _one_line(exc)
    assert message.startswith(f"{path}:{member}: cannot read from zip (") and "delete it and 'dvc repro'" in message


def _set_in_central_directory(data, member, offset, value):
    """Set a 2-byte field of `member`'s central-directory entry (8: flags, 10: compression method)."""
    at = 0
    while (at := data.find(b"PK\x01\x02", at + 1)) >= 0:
        name_length = int.from_bytes(data[at + 28:at + 30], "little")
        if data[at + 46:at + 46 + name_length] == member.encode():
            data[at + offset:at + offset + 2] = value.to_bytes(2, "little")
            return data
    raise AssertionError(f"{member} not in the central directory")


@pytest.mark.parametrize("damage", ["encrypted", "deflate64", "bad deflate stream"])
def test_a_zip_that_zipfile_cannot_read_says_how_to_make_it_again(tmp_path, samples, damage, capsys):
    """Each of these was a raw traceback (RuntimeError, NotImplementedError, zlib.error)."""
    from nucseg.cli import main

    path = tmp_path / "mine.zip"
    with zipfile.ZipFile(write_kaggle_zip(tmp_path / "stored.zip", samples)) as stored, \
            zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as deflated:
        for name in stored.namelist():
            deflated.writestr(name, stored.read(name))
    source = RawSource(path, user_data=True)
    image_id = source.ids[0]
    member = source.images[image_id]
    data = bytearray(path.read_bytes())
    if damage == "encrypted":
        _set_in_central_directory(data, member, 8, 1)
    elif damage == "deflate64":
        _set_in_central_directory(data, member, 10, 9)
    else:
        data[data.index(member.encode()) + len(member)] = 0xFF   # deflate block type 3: invalid
    path.write_bytes(bytes(data))
    with pytest.raises(NucsegError) as exc:
        RawSource(path, user_data=True).read_image(image_id)
    message = _one_line(exc)
    assert message.startswith(f"{path}:{member}: cannot read from zip (")
    fix = "make the zip again or give the folder" if damage == "bad deflate stream" else \
        "make the zip again without a password and with standard compression, or give the folder"
    assert message.endswith(f"{fix} it was made from")
    # nucseg predict skips that image with this line and segments the others (exit 2: some failed)
    capsys.readouterr()
    assert main(["predict", str(path), "--method", "otsu", "--out", str(tmp_path / "out")]) == 2
    assert f"skipped: {message}" in capsys.readouterr().err
    assert len(list((tmp_path / "out" / "masks").iterdir())) == len(samples) - 1


def test_images_that_are_not_png_are_named(tmp_path, samples):
    root = tmp_path / "raw"
    write_kaggle_dir(root, samples)
    first = sorted(samples)[0]
    png = root / first / "images" / f"{first}.png"
    png.rename(png.with_suffix(".tif"))
    with pytest.raises(NucsegError, match=f"{first}/images/ holds no PNG \\(found {first}.tif\\); convert it to PNG"):
        RawSource(root)


def test_an_image_too_large_to_decode_safely_says_what_to_do(monkeypatch):
    from PIL import Image
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)   # Pillow refuses above twice this
    with pytest.raises(NucsegError, match="^scan.png: too large to decode safely .*cut it into tiles or scale it down"):
        decode_png(png_bytes(np.zeros((8, 8), np.uint8)), "scan.png")


def test_decode_keeps_bit_depth_and_channels():
    gray16 = (np.arange(12).reshape(3, 4) * 5000).astype(np.uint16)
    assert decode_png(png_bytes(gray16), "x").dtype == np.uint16
    np.testing.assert_array_equal(decode_png(png_bytes(gray16), "x"), gray16)
    rgba = np.zeros((3, 4, 4), np.uint8)
    assert decode_png(png_bytes(rgba), "x").shape == (3, 4, 4)


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path):
    target = tmp_path / "m.json"
    save_json(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("stage crashed")
    assert target.read_text() == '{\n  "a": 1\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_real_zip_layout(shared_zip):
    source = RawSource(shared_zip)
    assert len(source.ids) == 670
    assert sum(len(m) for m in source.masks.values()) == 29461


def test_all_or_nothing_lands_every_output_or_none(tmp_path):
    """A stage's outputs land together at its end: one failing half-way leaves all the old ones."""
    first, second = tmp_path / "metrics.json", tmp_path / "plots" / "per_image.csv"
    second.parent.mkdir()
    first.write_text("old metrics")
    second.write_text("old table")
    with pytest.raises(RuntimeError), all_or_nothing():
        save_json(first, {"dice": 0.9})
        assert first.read_text() == "old metrics"      # written aside, not yet in place
        raise RuntimeError("the gallery failed")
    assert (first.read_text(), second.read_text()) == ("old metrics", "old table")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["metrics.json", "per_image.csv", "plots"]   # no temp files

    with all_or_nothing():
        save_json(first, {"dice": 0.9})
        save_text(second, "new table")
    assert json.loads(first.read_text()) == {"dice": 0.9} and second.read_text() == "new table"


def test_a_stage_that_cannot_write_stops_in_one_line_naming_the_output(tmp_path, monkeypatch, capsys):
    """A full disk (numpy says "... requested and ... written", with no errno) or a read-only
    folder (no temporary file can be made): one line naming the output, not its temporary file,
    with the fix; every earlier output is left as it was."""
    import tempfile

    from nucseg.params import run

    first, second = tmp_path / "meta.csv", tmp_path / "images.npy"
    first.write_text("old table")
    second.write_text("old array")

    def full_disk():
        save_text(first, "new table")
        with atomic_path(second):
            raise OSError("196608 requested and 55264 written")   # what np.save raises on a full disk

    with pytest.raises(SystemExit):
        run(full_disk)
    assert capsys.readouterr().err == f"error: {second}: could not write it (196608 requested and 55264 written); " \
                                      "free disk space\n"
    assert (first.read_text(), second.read_text()) == ("old table", "old array")

    def read_only(*args, dir=None, **kwargs):
        raise OSError(30, "Read-only file system", f"{dir}/.meta.x1y2.tmp.csv")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    with pytest.raises(SystemExit):
        run(lambda: save_text(first, "new table"))
    assert capsys.readouterr().err == f"error: {first}: could not write it (Read-only file system); " \
                                      f"make {tmp_path} writable\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images.npy", "meta.csv"]


def test_damaged_pipeline_arrays_are_one_line_naming_the_file(tmp_path):
    """Cut inside its header, a .npy is no array (numpy guesses pickled data); a flipped byte in an
    .npz member shows when that member is read."""
    from nucseg.io import load_npy

    np.save(tmp_path / "a.npy", np.arange(100))
    (tmp_path / "a.npy").write_bytes((tmp_path / "a.npy").read_bytes()[:4])
    with pytest.raises(NucsegError, match=r"a.npy: not a whole .npy array \(no .npy header\); restore it with 'dvc "
                                          r"checkout --force .*a.npy'"):
        load_npy(tmp_path / "a.npy")
    np.save(tmp_path / "c.npy", np.arange(1000))   # cut in its data: numpy's long reason, to its first sentence
    (tmp_path / "c.npy").write_bytes((tmp_path / "c.npy").read_bytes()[:500])
    with pytest.raises(NucsegError, match=r"c.npy: not a whole .npy array \(Failed to read all data for array\); "):
        load_npy(tmp_path / "c.npy")
    save_npz(tmp_path / "b.npz", {"x": np.arange(1000)})
    data = bytearray((tmp_path / "b.npz").read_bytes())
    data[len(data) // 3] ^= 0xFF
    (tmp_path / "b.npz").write_bytes(bytes(data))
    with pytest.raises(NucsegError, match=r"b.npz: not a whole .npz file \(x: .*\); restore it"), \
            load_npz(tmp_path / "b.npz") as arrays:
        arrays["x"]


def test_atomic_writes_get_the_usual_permissions(tmp_path):
    """Not mkstemp's owner-only 0600: colleagues (and a Fiji under another account) can read them."""
    umask = os.umask(0o022)
    os.umask(umask)
    save_json(tmp_path / "m.json", {})
    assert (tmp_path / "m.json").stat().st_mode & 0o777 == 0o666 & ~umask


def test_keep_only_removes_what_a_run_no_longer_writes_at_its_successful_end(tmp_path):
    """A directory output (plots/robustness/) loses the figure of a degradation dropped from the
    params, but only when the stage succeeds; temporary files are not its business."""
    from nucseg.io import keep_only

    for name in ("blur.png", "fog.png", ".blur.x.tmp.png"):
        (tmp_path / name).write_text("old")
    with pytest.raises(RuntimeError), all_or_nothing():
        save_text(tmp_path / "blur.png", "new")
        keep_only(tmp_path, ["blur.png"])
        raise RuntimeError("failed after")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".blur.x.tmp.png", "blur.png", "fog.png"]
    assert (tmp_path / "blur.png").read_text() == "old"
    with all_or_nothing():
        save_text(tmp_path / "blur.png", "new")
        keep_only(tmp_path, ["blur.png"])
        assert (tmp_path / "fog.png").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".blur.x.tmp.png", "blur.png"]
    assert (tmp_path / "blur.png").read_text() == "new"


def test_a_rename_that_fails_at_the_end_says_so_in_one_line(tmp_path):
    """The renames at the end of `all_or_nothing` are the one place where old and new can mix
    (a target turned into a folder, a full disk): one line says which, and no temporary file stays."""
    first, second = tmp_path / "a.txt", tmp_path / "b.txt"
    with pytest.raises(NucsegError) as exc, all_or_nothing():
        save_text(first, "new a")
        save_text(second, "new b")
        second.mkdir()
    message = _one_line(exc)
    assert message.startswith(f"{second}: could not put the new file in place (") and "1 of the 2 outputs are new" in message
    assert first.read_text() == "new a" and second.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"]


def test_an_id_the_raw_data_lacks_is_one_line(kaggle_zip, capsys):
    """A stage reading images by the split's ids (predict, at the default tile) from another copy of
    the data: one line naming it, through `nucseg.params.run`."""
    from nucseg.params import run

    with pytest.raises(SystemExit):
        run(lambda: RawSource(kaggle_zip).read_image("not-there"))
    assert capsys.readouterr().err.strip() == (f"error: {kaggle_zip}: no image 'not-there' there: the id lists come "
                                               "from another copy of the data; rebuild them with 'dvc repro'")


def _garble(root, image_id):
    """Overwrite an image of a Kaggle folder with bytes no decoder knows."""
    (root / image_id / "images" / f"{image_id}.png").write_bytes(b"GIF-ish garbage" * 10)


def test_the_fix_fits_whose_data_it_is(tmp_path, samples):
    """The pipeline's copy: get stage1_train again (a folder's file from the zip; a zip's member
    by fetching the zip again, since the damage is inside it). A user's own data (nucseg predict,
    evaluate): fix or leave out their file, never 'dvc repro' or delete their zip."""
    bad = sorted(samples)[1]
    folder = write_kaggle_dir(tmp_path / "stage1_train", samples)
    _garble(folder, bad)
    zipped = tmp_path / "z" / "stage1_train.zip"
    zipped.parent.mkdir()
    with zipfile.ZipFile(zipped, "w") as zf:
        for f in sorted(folder.rglob("*.png")):
            zf.write(f, f.relative_to(folder).as_posix())
    expected = {(folder, False): "replace it with the original from stage1_train.zip",
                (zipped, False): "delete it and 'dvc repro' downloads stage1_train.zip again",
                (folder, True): "save it again as PNG (one 2-D gray or RGB image), or remove its folder",
                (zipped, True): "save it again as PNG (one 2-D gray or RGB image), or remove its folder"}
    for (path, user_data), fix in expected.items():
        for read in ("read_image", "image_size"):
            with pytest.raises(NucsegError) as exc:
                getattr(RawSource(path, user_data=user_data), read)(bad)
            message = _one_line(exc)
            assert f"{bad}.png: not a readable image (an unknown format, or damaged); {fix}" in message
            assert "BytesIO" not in message   # Pillow's own message names its buffer, not the file
    damaged = tmp_path / "mine.zip"
    damaged.write_bytes(zipped.read_bytes()[:300])
    with pytest.raises(NucsegError) as exc:
        RawSource(damaged, user_data=True)
    assert _one_line(exc) == (f"{damaged}: not a zip file (truncated or damaged?); make the zip again or give the "
                              "folder it was made from")


def test_a_dangling_link_to_the_data_is_named_not_taken_for_no_data(tmp_path):
    (tmp_path / "stage1_train.zip").symlink_to("../../shared/stage1_train.zip")
    with pytest.raises(NucsegError) as exc:
        find_raw(tmp_path)
    assert _one_line(exc).startswith(f"{tmp_path / 'stage1_train.zip'}: a link to ../../shared/stage1_train.zip, "
                                     "which does not exist; fix the link")


def test_an_id_an_npz_lacks_is_one_line_naming_the_file(tmp_path):
    path = tmp_path / "labels.npz"
    save_npz(path, {"a": np.ones((2, 3), np.uint16)})
    with load_npz(path) as arrays:
        np.testing.assert_array_equal(arrays["a"], np.ones((2, 3)))
        with pytest.raises(UnknownIds) as exc:
            arrays["b"]
    assert _one_line(exc).startswith(f"{path}: no array for 'b': it was written for other ids")
    assert str(exc.value).endswith("rebuild it with 'dvc repro'")



def test_save_json_writes_valid_json_for_nan_and_infinity(tmp_path):
    """json.dumps writes NaN and Infinity, which are not JSON (jq and JavaScript refuse the file).
    They are written as null, everything else as it was."""
    path = tmp_path / "m.json"
    save_json(path, {"dice": float("nan"), "per": [1.5, float("inf"), np.float64(-np.inf)], "n": 3, "ok": 0.25})
    assert json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"{c} in the file")) == \
        {"dice": None, "per": [1.5, None, None], "n": 3, "ok": 0.25}
