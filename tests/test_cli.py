import json
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import write_kaggle_dir, write_kaggle_zip
from nucseg.cli import main
from nucseg.modelinfo import add_to_keras, add_to_tflite, model_settings
from nucseg.rle import rle_encode


@pytest.fixture
def gray(samples, tmp_path):
    """The gray samples (bright nuclei): what the stand-in model below can segment."""
    chosen = {k: v for k, v in samples.items() if v[0].ndim == 2}
    return chosen, write_kaggle_zip(tmp_path / "gray.zip", chosen)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """A stand-in for the U-Net: logits 20 * (x - 0.5), 'brighter than half is a nucleus'."""
    inputs = keras.Input((32, 32, 1))
    model = keras.Model(inputs, keras.layers.Rescaling(20.0, offset=-10.0)(inputs))
    path = tmp_path_factory.mktemp("model") / "stand_in.keras"
    model.save(path)
    return path


@pytest.fixture(scope="module")
def lite_file(model_file):
    """The stand-in exported as the export stage does."""
    from nucseg.evaluate import load_model
    from nucseg.lite import convert

    path = model_file.with_name("stand_in.tflite")
    path.write_bytes(convert(load_model(model_file)))
    return path


@pytest.mark.parametrize("which", ["keras", "tflite"])
def test_predict_command(tmp_path, gray, model_file, lite_file, capsys, which):
    samples, kaggle_zip = gray
    model = model_file if which == "keras" else lite_file
    assert main(["predict", str(kaggle_zip), "--model", str(model), "--out", str(tmp_path / "o"),
                 "--tile", "48", "--overlap", "8", "--rle", str(tmp_path / "r.csv")]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith(f"{len(samples)} of {len(samples)} images segmented, 0 failed")
    summary = pd.read_csv(tmp_path / "o" / "summary.csv")
    assert dict(zip(summary["id"], summary["nuclei"])) == {i: len(m) for i, (_, m) in samples.items()}


def test_predict_command_without_model(tmp_path, kaggle_zip, capsys):
    assert main(["predict", str(kaggle_zip), "--model", str(tmp_path / "none.keras"), "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "none.keras: no model there" in err and "\n" not in err


def _images_and_solution(tmp_path, samples):
    """`samples` as BBBC038's stage1_test: images in the Kaggle layout without masks (returned),
    the truth in `tmp_path / "sol.csv"` as run-length rows."""
    images_only = write_kaggle_dir(tmp_path / "test", samples)
    for masks in images_only.glob("*/masks"):
        for f in masks.iterdir():
            f.unlink()
        masks.rmdir()
    rows = [(i, rle_encode(m), im.shape[0], im.shape[1]) for i, (im, ms) in samples.items() for m in ms]
    pd.DataFrame(rows, columns=["ImageId", "EncodedPixels", "Height", "Width"]).to_csv(tmp_path / "sol.csv", index=False)
    return images_only


def test_evaluate_with_masks_and_with_solution_csv(tmp_path, gray, model_file, capsys):
    samples, kaggle_zip = gray
    # --tile 64: the stand-in sees the 64x80 samples at half scale (at the default 256, an eighth)
    assert main(["evaluate", str(kaggle_zip), "--model", str(model_file), "--tile", "64", "--overlap", "16",
                 "--out", str(tmp_path / "m.json")]) == 0
    with_masks = json.loads((tmp_path / "m.json").read_text())
    assert with_masks["n_images"] == len(samples)
    for method in ("unet", "otsu"):
        assert with_masks[method]["instance"]["dsb"] > 0.7
        assert with_masks[method]["pixel"]["mean"]["dice"] > 0.9
    assert (tmp_path / "m.per_image.csv").exists()

    # the same truth as images without masks plus an RLE solution (BBBC038's stage1_test layout)
    images_only = _images_and_solution(tmp_path, samples)
    assert main(["evaluate", str(images_only), "--solution", str(tmp_path / "sol.csv"), "--method", "otsu",
                 "--out", str(tmp_path / "s.json")]) == 0
    with_csv = json.loads((tmp_path / "s.json").read_text())
    assert with_csv["otsu"] == with_masks["otsu"]   # the same truth, whichever way it comes
    captured = capsys.readouterr()
    assert "otsu" in captured.out and "have no row" not in captured.err
    first = sorted(samples)[0]                      # a solution lacking one image: scored without it, and said
    partial = pd.read_csv(tmp_path / "sol.csv").query("ImageId != @first")
    partial.to_csv(tmp_path / "partial.csv", index=False)
    assert main(["evaluate", str(images_only), "--solution", str(tmp_path / "partial.csv"), "--method", "otsu"]) == 0
    assert (f"note: 1 of the {len(samples)} images have no row in {tmp_path / 'partial.csv'} and are not scored "
            f"(e.g. {first})") in capsys.readouterr().err

    # nucseg compare reads the per-image files as written (native scores) and pairs them by id: the
    # second run is the first with one image's Otsu native Dice lowered by 0.3, its rows reversed
    edited = pd.read_csv(tmp_path / "s.per_image.csv").astype({"dice": float})
    lowered = (edited["method"] == "otsu") & (edited["id"] == first)
    edited.loc[lowered, "dice"] -= 0.3   # `evaluate --out` writes native scores as dice
    edited.iloc[::-1].to_csv(tmp_path / "edited.csv", index=False)
    assert main(["compare", str(tmp_path / "m.per_image.csv"), str(tmp_path / "edited.csv"), "--method", "otsu",
                 "--out", str(tmp_path / "c.csv")]) == 0
    compared = pd.read_csv(tmp_path / "c.csv").set_index("metric")
    assert compared.index.tolist() == ["native_dice", "dsb", "f1_iou50"]
    assert set(compared["n"]) == {len(samples)}
    assert compared.loc["native_dice", "difference"] == pytest.approx(-0.3 / len(samples))
    assert compared.loc["dsb", "difference"] == 0 and compared.loc["f1_iou50", "difference"] == 0


def test_study_queue_dry_run_prints_one_command_per_setting(capsys):
    assert main(["study", "queue", "loss", "--dry-run"]) == 0
    lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith("dvc exp run")]
    assert len(lines) == 3 and all("--queue" in l and "train.epochs=10" in l for l in lines)
    assert "-S train.loss=dice" in lines[1]


# ---------------------------------------------------------------------------------------------
# Bad input: one line naming the file (or option) and the fix, checked before the model loads


def _one_error_line(capsys):
    """The error line, the last of stderr (after any progress bar), and the only one."""
    err = capsys.readouterr().err.strip().replace("\r", "\n").splitlines()
    assert err and err[-1].startswith("error: ") and sum(line.startswith("error") for line in err) == 1, err
    return err[-1]


@pytest.fixture
def folder(tmp_path, samples):
    """Three of the samples as plain PNG files."""
    from conftest import png_bytes

    path = tmp_path / "in"
    path.mkdir()
    for image_id, (image, _) in list(samples.items())[:3]:
        (path / f"{image_id}.png").write_bytes(png_bytes(image))
    return path


@pytest.mark.parametrize("args, expected", [
    (["--threshold", "7"], "--threshold 7.0: out of range; use a probability between 0 and 1"),
    (["--threshold", "0"], "--threshold 0.0: out of range"),
    (["--batch-size", "0"], "--batch-size 0: out of range; use 1 or more"),
    (["--tile", "-5"], "--tile -5: out of range"),
    (["--overlap", "-100"], "--overlap -100: out of range"),
    (["--tile", "48", "--overlap", "25"], "--overlap 25: out of range; use at most half the tile (48, --tile), e.g. 12"),
    (["--tile", "16"], "--tile 16: out of range; use 0 (whole images) or 32 to 4096 pixels"),   # as base.tile
    (["--tile", "200000"], "--tile 200000: out of range; use 0 (whole images) or 32 to 4096 pixels"),
    (["--invert-above", "1.5"], "--invert-above 1.5: out of range; use a fraction from 0 to 1"),
    (["--min-size", "-1"], "--min-size -1: out of range; use 0 or more pixels"),
    (["--out", "{tmp}/afile"], "afile: a file, not a folder; give --out a new or existing folder"),
    (["--rle", "{tmp}/afile/x.csv"], "afile is a file, not a folder; give --rle a path in a folder"),
    (["--rle", "{tmp}"], "a folder; give --rle a file name"),
])
def test_predict_refuses_bad_options_before_loading_the_model(tmp_path, folder, capsys, args, expected):
    (tmp_path / "afile").write_text("a file")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    out = [] if "--out" in args else ["--out", str(tmp_path / "o")]
    # the model does not exist: an option checked after loading it would say 'no model there'
    assert main(["predict", str(folder), "--model", str(tmp_path / "none.tflite"), *out, *args]) == 1
    assert expected in _one_error_line(capsys)
    assert not (tmp_path / "o").exists()


def test_command_line_mistakes_are_one_line_with_status_1(tmp_path, folder, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["predict", str(folder), "--out", str(tmp_path / "o"), "--tile", "abc"])
    assert stop.value.code == 1   # not argparse's 2, which would read as 'some images failed'
    assert _one_error_line(capsys) == ("error: nucseg predict: argument --tile: invalid int value: 'abc'; "
                                       "see 'nucseg predict --help'")


def _config_json(folder, tile):
    """A config.json as the train stage writes it beside its model (the fields read here)."""
    config = {"tile": tile, "img_size": 32, "params": {"normalization": "percentile", "tile": tile}}
    (folder / "config.json").write_text(json.dumps(config))


@pytest.fixture
def bare_model(tmp_path, model_file):
    """The stand-in alone in a folder: no settings inside, no config.json beside it."""
    model = tmp_path / "m" / "unet.keras"
    model.parent.mkdir()
    model.write_bytes(model_file.read_bytes())
    return model


def test_overlap_is_checked_against_the_models_tile(tmp_path, folder, bare_model, capsys):
    _config_json(bare_model.parent, 48)
    given = ["predict", str(folder), "--model", str(bare_model), "--out", str(tmp_path / "o"), "--overlap", "64"]
    assert main(given) == 1
    assert f"--overlap 64: out of range; use at most half the tile (48, from {bare_model.parent / 'config.json'})" in \
        _one_error_line(capsys)
    add_to_keras(bare_model, model_settings(40, 32, "percentile"))   # the file's own settings come first
    assert main(given) == 1
    assert f"--overlap 64: out of range; use at most half the tile (40, from {bare_model})" in _one_error_line(capsys)
    # not given, the overlap is 64 or half the model's tile: a model's small tile needs no option
    assert main(given[:-2]) == 0


def test_the_default_overlap_fits_any_tile(monkeypatch, tmp_path, folder, bare_model, capsys):
    seen = []
    monkeypatch.setattr("nucseg.predict.Segmenter.__post_init__", lambda self: seen.append(self.overlap))
    monkeypatch.setattr("nucseg.predict.predict_images", lambda *a, **k: pd.DataFrame({"error": [None], "nuclei": [0]}))
    for tile, overlap in (("96", 48), ("256", 64), ("32", 16)):
        main(["predict", str(folder), "--model", str(bare_model), "--out", str(tmp_path / "o"), "--tile", tile])
        assert seen.pop() == overlap, tile


def test_predict_notes_the_default_tile_when_the_model_has_no_settings(tmp_path, folder, bare_model, capsys):
    assert main(["predict", str(folder), "--model", str(bare_model), "--out", str(tmp_path / "o")]) == 0
    assert (f"note: {bare_model} carries no settings and there is no config.json beside it; using --tile 256 "
            "and percentile normalization") in capsys.readouterr().err
    _config_json(bare_model.parent, 128)
    assert main(["predict", str(folder), "--model", str(bare_model), "--out", str(tmp_path / "o")]) == 0
    assert "note:" not in capsys.readouterr().err


@pytest.mark.parametrize("which", ["keras", "tflite"])
def test_predict_normalises_as_the_model_was_trained(tmp_path, model_file, lite_file, capsys, which):
    """A dim image (nuclei at 90 of 255 on 20): stretched to [0, 1] by percentile normalisation the
    stand-in finds both nuclei; a model trained on raw intensities (normalization none) sees them
    at 0.35 and finds none, as it would have in training."""
    from conftest import png_bytes

    image = np.full((64, 64), 20, np.uint8)
    image[8:20, 8:20] = image[36:52, 30:50] = 90
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "dim.png").write_bytes(png_bytes(image))
    source = model_file if which == "keras" else lite_file
    counts = {}
    for normalization in ("percentile", "none"):
        model = tmp_path / normalization / source.name
        model.parent.mkdir()
        if which == "keras":
            model.write_bytes(source.read_bytes())
            add_to_keras(model, model_settings(0, 32, normalization))
        else:
            model.write_bytes(add_to_tflite(source.read_bytes(), model_settings(0, 32, normalization)))
        out = tmp_path / f"out-{normalization}"
        assert main(["predict", str(tmp_path / "in"), "--model", str(model), "--out", str(out), "--min-size", "5"]) == 0
        counts[normalization] = int(pd.read_csv(out / "summary.csv")["nuclei"][0])
    assert counts == {"percentile": 2, "none": 0}
    assert "note:" not in capsys.readouterr().err


def test_predict_exit_status_says_whether_some_or_all_images_failed(tmp_path, folder, capsys):
    assert main(["predict", str(folder), "--method", "otsu", "--out", str(tmp_path / "o")]) == 0
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnope")
    assert main(["predict", str(folder), "--method", "otsu", "--out", str(tmp_path / "o")]) == 2
    assert "3 of 4 images segmented, 1 failed" in capsys.readouterr().out
    assert main(["predict", str(folder / "broken.png"), "--method", "otsu", "--out", str(tmp_path / "o")]) == 1
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    assert "2 some images failed" in " ".join(capsys.readouterr().out.split())


def test_predict_interrupted_writes_nothing_and_exits_130(tmp_path, folder, capsys, monkeypatch):
    from nucseg.predict import Segmenter

    out = tmp_path / "o"
    assert main(["predict", str(folder), "--method", "otsu", "--out", str(out)]) == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    real, calls = Segmenter.labels, []

    def labels_then_ctrl_c(self, mask):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, mask)

    monkeypatch.setattr(Segmenter, "labels", labels_then_ctrl_c)
    assert main(["predict", str(folder), "--method", "otsu", "--min-size", "400", "--out", str(out)]) == 130
    assert capsys.readouterr().err.splitlines()[-1] == f"interrupted; nothing written, {out} is as it was"
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_model_files_that_are_not_nucseg_models_give_one_line(tmp_path, folder, model_file, capsys):
    (tmp_path / "config.json").write_text(json.dumps({"tile": 256}))
    (tmp_path / "garbage.keras").write_bytes(b"not a zip")
    (tmp_path / "cut.keras").write_bytes(model_file.read_bytes()[:-2000])   # a copy cut short
    for model in ("config.json", "garbage.keras", "cut.keras"):
        assert main(["predict", str(folder), "--model", str(tmp_path / model), "--out", str(tmp_path / "o")]) == 1
        err = _one_error_line(capsys)
        assert f"{tmp_path / model}: not a nucseg model" in err and ".tflite" in err
        assert "File not found" not in err   # Keras's words for a file that is there
    assert "damaged or cut short? copy it again" in err


def test_keras_models_of_another_shape_are_refused_before_any_image(tmp_path, folder, capsys):
    """A Keras model that loads but is not a U-Net of ours: RGB input, free spatial size, a classifier."""
    import keras

    def save(name, inputs, outputs):
        keras.Model(inputs, outputs).save(tmp_path / name)

    rgb = keras.Input((32, 32, 3))
    save("rgb.keras", rgb, keras.layers.Conv2D(1, 1)(rgb))
    free = keras.Input((None, None, 1))
    save("free.keras", free, keras.layers.Conv2D(1, 1)(free))
    gray = keras.Input((32, 32, 1))
    save("classifier.keras", gray, keras.layers.Dense(2)(keras.layers.Flatten()(gray)))
    for name in ("rgb.keras", "free.keras", "classifier.keras"):
        assert main(["predict", str(folder), "--model", str(tmp_path / name), "--out", str(tmp_path / "o")]) == 1
        err = _one_error_line(capsys)
        assert f"{tmp_path / name}: not a nucseg model (it maps (None, " in err
        assert "a nucseg model maps a square grayscale image (size, size, 1)" in err
    assert not (tmp_path / "o").exists()


def test_os_errors_give_one_line_naming_the_file(tmp_path, folder, capsys, monkeypatch):
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "masks").write_text("a file where the masks folder goes")
    assert main(["predict", str(folder), "--method", "otsu", "--out", str(tmp_path / "o")]) == 1
    assert _one_error_line(capsys) == (f"error: {tmp_path / 'o' / 'masks'}: a file, where nucseg writes its masks; "
                                       "fix that or give --out another folder")
    import tifffile

    def failing_write(code, reason):
        def write(path, *args, **kwargs):
            paths.append(path)
            raise OSError(code, reason, str(path))
        return write
    paths = []
    monkeypatch.setattr(tifffile, "imwrite", failing_write(28, "No space left on device"))
    assert main(["predict", str(folder), "--method", "otsu", "--out", str(tmp_path / "p")]) == 1
    first = sorted(folder.glob("*.png"))[0]
    assert _one_error_line(capsys) == (f"error: {tmp_path / 'p'}: could not write the outputs of {first} (No space "
                                       "left on device); nothing of this run was kept: free disk space, or give --out "
                                       "a folder on another disk")
    assert not (tmp_path / "p").exists()   # no temporary file left, nor the folders this run made
    assert paths and ".tmp" in paths[0].name   # the temporary file, not named in the message
    paths.clear()   # a folder that stops taking files is not a full disk: the fix differs
    monkeypatch.setattr(tifffile, "imwrite", failing_write(13, "Permission denied"))
    assert main(["predict", str(folder), "--method", "otsu", "--out", str(tmp_path / "p")]) == 1
    assert _one_error_line(capsys).endswith("(Permission denied); nothing of this run was kept: give --out a folder "
                                            "you can write to")
    (tmp_path / "q" / "summary.csv").mkdir(parents=True)
    assert main(["predict", str(folder), "--method", "otsu", "--out", str(tmp_path / "q")]) == 1
    assert _one_error_line(capsys).endswith("q/summary.csv: a folder, where nucseg writes its summary; fix that or "
                                            "give --out another folder")


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_out_where_no_file_can_be_made_is_refused_up_front(folder, capsys):
    """/proc takes no new files even from root, for whom os.access says yes: the run tries for real first."""
    assert main(["predict", str(folder), "--method", "otsu", "--out", "/proc/nucseg-out"]) == 1
    err = _one_error_line(capsys)
    assert err.startswith("error: /proc/nucseg-out: ") and err.endswith("give --out a folder you can write to")
    assert "could not write the outputs" not in err   # refused before any image was segmented


def test_a_masks_folder_that_takes_no_files_is_refused_up_front(tmp_path, folder, capsys, monkeypatch):
    """As for --out: tried by making a file there (a read-only folder lets root in by os.access)."""
    import tempfile

    (tmp_path / "o" / "masks").mkdir(parents=True)
    make = tempfile.TemporaryFile

    def read_only_masks(*args, dir=None, **kwargs):
        if Path(dir) == tmp_path / "o" / "masks":
            raise PermissionError(13, "Permission denied")
        return make(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "TemporaryFile", read_only_masks)
    assert main(["predict", str(folder), "--method", "otsu", "--out", str(tmp_path / "o")]) == 1
    assert _one_error_line(capsys) == (f"error: {tmp_path / 'o' / 'masks'}: a folder you cannot write to, where "
                                       "nucseg writes its masks; fix that or give --out another folder")


def test_rle_that_would_overwrite_an_input_or_the_summary_is_refused(tmp_path, folder, capsys):
    image = sorted(folder.glob("*.png"))[0]
    (tmp_path / "notes.md").write_text("a lab notebook")
    (tmp_path / "model.tflite").write_bytes(b"stands for the model")
    other = tmp_path / "run1"
    assert main(["predict", str(image), "--method", "otsu", "--out", str(other)]) == 0
    (tmp_path / "measurements.csv").write_text("sample,area,notes\nA1,312,ok\n")   # a user's own table
    kept = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    for rle in (image, tmp_path / "o" / "summary.csv", tmp_path / "sub.png", tmp_path / "notes.md",
                other / "summary.csv", tmp_path / "model.tflite", tmp_path / "measurements.csv"):
        assert main(["predict", str(folder), "--method", "otsu", "--out", str(tmp_path / "o"), "--rle", str(rle)]) == 1
        assert _one_error_line(capsys) == (f"error: --rle {rle}: would overwrite an input, the model, a run's summary.csv "
                                           "or a file that is not an earlier submission (ImageId,EncodedPixels); "
                                           "give it a new file name, e.g. submission.csv")
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == kept
    assert not (tmp_path / "o").exists()
    (tmp_path / "old.csv").write_text("ImageId,EncodedPixels\n")      # an earlier submission: replaced
    (tmp_path / "new.csv").touch()                                     # so is an empty file
    for rle in ("old.csv", "new.csv"):
        assert main(["predict", str(folder), "--method", "otsu", "--out", str(tmp_path / "o"),
                     "--rle", str(tmp_path / rle)]) == 0
        assert len(pd.read_csv(tmp_path / rle)) > 3


def test_sigterm_ends_a_run_as_ctrl_c_and_a_killed_runs_files_are_removed(tmp_path, folder, capsys, monkeypatch):
    import os
    import signal

    from nucseg.predict import Segmenter

    out = tmp_path / "o"
    assert main(["predict", str(folder), "--method", "otsu", "--out", str(out)]) == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    real, calls = Segmenter.labels, []

    def labels_then_sigterm(self, mask):   # a batch system stopping the job on the second image
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(self, mask)

    monkeypatch.setattr(Segmenter, "labels", labels_then_sigterm)
    assert main(["predict", str(folder), "--method", "otsu", "--min-size", "400", "--out", str(out)]) == 130
    assert capsys.readouterr().err.splitlines()[-1] == f"interrupted; nothing written, {out} is as it was"
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before   # temporary files gone too
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL                      # handler put back
    monkeypatch.setattr(Segmenter, "labels", real)
    for left in (out / "masks" / ".a.k2j4.tmp.png", out / "labels" / ".a.k2j4.tmp.tif", out / ".summary.x1.tmp.csv"):
        left.write_bytes(b"what a run killed outright leaves")
    assert main(["predict", str(folder), "--method", "otsu", "--out", str(out)]) == 0
    assert f"note: removed 3 temporary files an earlier, killed run left in {out}" in capsys.readouterr().err
    assert not list(out.rglob(".*"))


def test_options_otsu_does_not_use_are_named(tmp_path, folder, capsys):
    out = ["--out", str(tmp_path / "o")]
    assert main(["predict", str(folder), "--method", "otsu", "--threshold", "0.3", "--tta", *out]) == 0
    assert "note: --method otsu ignores --threshold, --tta (the U-Net's options)" in capsys.readouterr().err
    assert main(["predict", str(folder), "--method", "otsu", *out]) == 0
    assert "note:" not in capsys.readouterr().err
    assert main(["predict", str(folder), "--resize", "--tile", "128", *out]) == 1
    assert _one_error_line(capsys) == "error: --resize and --tile 128: give one (--resize is --tile 0)"


def test_evaluate_out_lands_whole_or_not_at_all(tmp_path, gray, monkeypatch, capsys):
    """The summary and its per-image table are written together: a table that cannot be written
    leaves the previous summary too."""
    import nucseg.cli

    _, kaggle_zip = gray
    out = tmp_path / "m.json"
    evaluate = ["evaluate", str(kaggle_zip), "--method", "otsu", "--out", str(out)]
    assert main(evaluate) == 0
    before = out.read_bytes(), out.with_suffix(".per_image.csv").read_bytes()

    def full_disk(path, table):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(nucseg.cli, "save_csv", full_disk)
    assert main([*evaluate[:-1], str(out), "--min-size", "50"]) == 1          # other scores, not written
    assert "No space left on device" in _one_error_line(capsys)
    assert (out.read_bytes(), out.with_suffix(".per_image.csv").read_bytes()) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]    # no temporary left


def test_evaluate_bad_solution_csv_names_the_csv_and_the_image(tmp_path, samples, capsys):
    images_only = write_kaggle_dir(tmp_path / "test", samples)
    first = sorted(samples)[0]
    height, width = samples[first][0].shape[:2]
    for masks in images_only.glob("*/masks"):
        for f in masks.iterdir():
            f.unlink()
        masks.rmdir()
    evaluate = ["evaluate", str(images_only), "--method", "otsu", "--solution"]
    assert main([*evaluate, str(tmp_path / "nosuch.csv")]) == 1
    assert f"{tmp_path / 'nosuch.csv'}: no such file; give --solution the RLE CSV" in _one_error_line(capsys)
    cases = {"odd": ("1 2 3", height, width, "odd number of values"),
             "beyond": (f"{height * width} 5", height, width, "runs beyond"),
             "size": ("1 2", height + 1, width, f"is {width}x{height + 1} (Width x Height) but its image is")}
    for name, (rle, h, w, what) in cases.items():
        csv = tmp_path / f"{name}.csv"
        pd.DataFrame([(first, rle, h, w)], columns=["ImageId", "EncodedPixels", "Height", "Width"]).to_csv(csv, index=False)
        assert main([*evaluate, str(csv)]) == 1
        err = _one_error_line(capsys)
        assert err.startswith(f"error: {csv}: ImageId {first}") and what in err, err
    (tmp_path / "afile").write_text("a file")
    assert main([*evaluate, str(tmp_path / "odd.csv"), "--out", str(tmp_path / "afile" / "m.json")]) == 1
    assert "afile is a file, not a folder; give --out" in _one_error_line(capsys)


@pytest.mark.parametrize("where", ["inside", "same", "above"])
def test_predict_twice_into_an_output_folder_among_the_inputs(tmp_path, folder, capsys, monkeypatch, where):
    """An earlier run's labels are not read as images, whether --out lies inside the input folder,
    is the input folder, or is a folder above it (--out .)."""
    monkeypatch.chdir(tmp_path)
    out = {"inside": folder / "results", "same": folder, "above": tmp_path}[where]
    for _ in range(2):
        assert main(["predict", str(folder), "--method", "otsu", "--out", str(out)]) == 0
        assert capsys.readouterr().out.strip().splitlines()[-1].startswith("3 of 3 images segmented")


def test_fill_holes_option_counts_a_ring_of_nuclei(tmp_path, capsys):
    """Six touching nuclei around a gap: one with every hole filled, six with --fill-holes nucleus;
    a seventh nucleus has a hole of its own, which only --fill-holes none leaves open."""
    from conftest import disk, png_bytes
    from test_instances import ring_of_nuclei

    ring, _ = ring_of_nuclei(shape=(100, 140))
    own = disk(ring.shape, (50, 118), 12)
    image = np.where(ring | own & ~disk(ring.shape, (48, 120), 5), 200, 20).astype(np.uint8)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "ring.png").write_bytes(png_bytes(image))
    summaries = {}
    for option in (["--fill-holes", "all"], ["--fill-holes", "nucleus"], ["--fill-holes", "none"],
                   ["--no-fill-holes"], []):
        out = tmp_path / "-".join(option or ["default"])
        assert main(["predict", str(tmp_path / "in"), "--method", "otsu", "--out", str(out)] + option) == 0
        summaries[" ".join(option)] = pd.read_csv(out / "summary.csv").iloc[0]
    counts = {option: int(s["nuclei"]) for option, s in summaries.items()}
    assert counts == {"--fill-holes all": 2, "--fill-holes nucleus": 7, "--fill-holes none": 7,
                      "--no-fill-holes": 7, "": 2}
    area = {option: s["mean_area"] for option, s in summaries.items()}
    assert area["--fill-holes nucleus"] > area["--fill-holes none"] == area["--no-fill-holes"]
    with pytest.raises(SystemExit):
        main(["predict", str(tmp_path / "in"), "--method", "otsu", "--out", str(tmp_path / "o"), "--fill-holes", "yes"])
    assert "invalid choice: 'yes'" in capsys.readouterr().err


def test_solution_csv_with_ids_of_digits_only(tmp_path, gray, capsys):
    """Ids such as 001 stay text: read as numbers they matched no folder."""
    samples, _ = gray
    renamed = {f"{k:03d}": sample for k, sample in enumerate(samples.values(), 1)}
    images_only = _images_and_solution(tmp_path, renamed)
    assert main(["evaluate", str(images_only), "--solution", str(tmp_path / "sol.csv"), "--method", "otsu",
                 "--out", str(tmp_path / "s.json")]) == 0
    assert json.loads((tmp_path / "s.json").read_text())["n_images"] == len(renamed)
    assert sorted(pd.read_csv(tmp_path / "s.per_image.csv", dtype={"id": str})["id"].unique()) == sorted(renamed)


def test_compare_refuses_a_negative_seed_in_one_line(tmp_path, capsys):
    assert main(["compare", str(tmp_path / "a.csv"), str(tmp_path / "b.csv"), "--seed", "-1"]) == 1
    assert _one_error_line(capsys) == "error: --seed -1: out of range; use an integer from 0 to 2**32 - 1, e.g. 0"


def test_otsu_inverts_above_the_fraction_given(tmp_path, capsys):
    """An image whose bright part covers 60% of it: inverted at the default 0.5 (the dark 40% are
    the nuclei), kept at --invert-above 0.7, as otsu.invert_above says for the pipeline."""
    image = np.zeros((50, 50), np.uint8)
    image[:30] = 200
    Image.fromarray(image).save(tmp_path / "x.png")
    for value, nucleus_rows in (("0.5", slice(30, 50)), ("0.7", slice(0, 30))):
        out = tmp_path / f"o{value}"
        assert main(["predict", str(tmp_path / "x.png"), "--method", "otsu", "--invert-above", value,
                     "--out", str(out)]) == 0
        mask = np.asarray(Image.open(out / "masks" / "x.png")) > 0
        expected = np.zeros_like(mask)
        expected[nucleus_rows] = True
        assert np.array_equal(mask, expected), value


def test_a_run_in_which_every_image_fails_writes_nothing(tmp_path, folder, capsys):
    """Its summary.csv and --rle CSV stay the earlier run's; in a run where some fail, a failed
    image keeps its earlier rows in the --rle CSV, as it keeps its masks and labels."""
    out, rle = tmp_path / "o", tmp_path / "o" / "sub.csv"
    assert main(["predict", str(folder), "--method", "otsu", "--out", str(out), "--rle", str(rle)]) == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    first, *others = sorted(folder.glob("*.png"))
    earlier = pd.read_csv(rle, dtype=str)
    assert len(earlier[earlier.ImageId == first.stem]) > 1   # a few nuclei
    first.write_bytes(first.read_bytes()[:60])               # cut short: it fails now
    capsys.readouterr()
    assert main(["predict", str(first), "--method", "otsu", "--out", str(out), "--rle", str(rle)]) == 1
    assert capsys.readouterr().out.startswith(f"0 of 1 images segmented, 1 failed; 0 nuclei; nothing written, {out} "
                                              "is as it was")
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert main(["predict", str(folder), "--method", "otsu", "--out", str(out), "--rle", str(rle)]) == 2
    pd.testing.assert_frame_equal(pd.read_csv(rle, dtype=str), earlier)   # every row as before, the failed one's too
    summary = pd.read_csv(out / "summary.csv")
    assert summary.loc[summary.id == first.stem, "error"].item().endswith(
        f"(kept an earlier run's masks/{first.stem}.png and labels/{first.stem}.tif and rows in sub.csv)")


def test_a_file_name_that_is_not_utf8_is_refused_before_any_work(tmp_path, folder, capsys):
    """A Latin-1 name (an old Windows zip) cannot go into summary.csv: it was a traceback after the whole run."""
    import os

    name = os.fsencode(folder) + b"/caf\xe9.png"
    with open(name, "wb") as f:
        f.write(sorted(folder.glob("*.png"))[0].read_bytes())
    assert main(["predict", str(folder), "--method", "otsu", "--out", str(tmp_path / "o")]) == 1
    assert _one_error_line(capsys) == (f"error: {name!r}: a file name that is not UTF-8 text (from an old zip or disk?); "
                                       "rename it with plain letters, or leave it out")
    assert not (tmp_path / "o").exists()


def test_a_tiff_is_known_by_its_content_not_its_name(tmp_path, folder, capsys):
    """A stack renamed .png is refused as a stack (Pillow read its first plane); a PNG named .tif is read."""
    import tifffile

    tifffile.imwrite(tmp_path / "stack.png", np.zeros((5, 64, 64), np.uint8))
    assert main(["predict", str(tmp_path / "stack.png"), "--method", "otsu", "--out", str(tmp_path / "o")]) == 1
    assert "stack.png: a stack of 5 planes" in capsys.readouterr().err
    png = sorted(folder.glob("*.png"))[0]
    (tmp_path / "named.tif").write_bytes(png.read_bytes())
    assert main(["predict", str(tmp_path / "named.tif"), str(png), "--method", "otsu", "--out", str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / "masks" / "named.png").read_bytes() == (tmp_path / "o" / "masks" / f"{png.stem}.png").read_bytes()


def test_odd_pixels_and_paths_give_one_line(tmp_path, folder, capsys):
    import tifffile

    tifffile.imwrite(tmp_path / "fft.tif", np.ones((32, 32), np.complex64))
    assert main(["predict", str(tmp_path / "fft.tif"), "--method", "otsu", "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "fft.tif: pixels of type complex64 (complex: a Fourier transform?)" in err and "Warning" not in err
    assert main(["predict", str(folder), "--model", str(folder), "--out", str(tmp_path / "o")]) == 1
    assert _one_error_line(capsys).startswith(f"error: {folder}: not a nucseg model (a folder); pass the export stage's")


def test_a_colour_fluorescence_composite_gets_a_note(tmp_path, capsys):
    """Nuclei in blue among red and green: gray weighs blue least. A note says so. None for stained
    tissue, light or dense purple (dark in gray), nor for a gray image with a coloured scale bar."""
    composite = np.zeros((64, 64, 3), np.uint8)
    composite[10:30, 10:30, 2] = 200             # a nucleus, in the blue channel
    composite[5:60, 35:60, 0] = 150              # cytoplasm, red
    Image.fromarray(composite).save(tmp_path / "composite.png")
    Image.fromarray(255 - composite).save(tmp_path / "stained.png")
    dense = np.full((64, 64, 3), (140, 70, 170), np.uint8)    # tissue (gray 99 of 255) from edge to edge
    dense[8:20, 8:20] = dense[40:52, 30:44] = (60, 20, 110)    # nuclei
    dense[:, 56:] = (240, 235, 245)                            # a little light background
    Image.fromarray(dense).save(tmp_path / "dense.png")
    gray = np.full((128, 128), 15, np.uint8)
    gray[20:40, 20:40] = gray[70:90, 50:80] = 170
    bar = np.repeat(gray[..., None], 3, axis=-1)
    bar[118:121, 90:120] = (255, 255, 0)                       # a yellow scale bar, burned in: 0.5% of the pixels
    Image.fromarray(bar).save(tmp_path / "scalebar.png")
    sparse = np.zeros((128, 128, 3), np.uint8)
    sparse[40:48, 60:68, 2] = 200                              # one small blue nucleus: 0.4% of the pixels
    Image.fromarray(sparse).save(tmp_path / "sparse.png")
    names = ("composite", "stained", "dense", "scalebar", "sparse")
    assert main(["predict", *(str(tmp_path / f"{name}.png") for name in names), "--method", "otsu",
                 "--out", str(tmp_path / "o")]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note:")]
    assert notes == [f"note: {tmp_path / f'{name}.png'}: a colour image on a dark background (a fluorescence "
                     "composite?) is segmented as its gray, in which blue counts 0.114; if the nuclei are one channel "
                     "(DAPI, Hoechst: blue), save that channel alone" for name in ("composite", "sparse")]
