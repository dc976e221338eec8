"""stages/evaluate.py as `dvc repro` runs it (its command in dvc.yaml, in a project of its own), on
small hand-drawn inputs whose metrics are worked out by hand below.

Three images in meta.csv (a, b, c); the test split lists c then a: another order, and b left out.
The masks and Otsu masks are stored in meta order, the U-Net probabilities in the test split's
order (as stages/predict.py writes them), the native arrays by id. A stage that paired them by
position, or ignored evaluate.threshold or the instances params, gets other numbers.
"""
import runpy
import shlex

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from conftest import ROOT
from nucseg.io import save_npz

STAGE = ROOT / "stages" / "evaluate.py"
META_IDS, TEST_IDS = ["a", "b", "c"], ["c", "a"]
PROBABILITY = {"9": 0.9, "4": 0.4, ".": 0.1}


def draw(picture, scale, value=lambda ch: 0 if ch == "." else int(ch)):
    """A hand-drawn picture (one string per row) as an array, each character `scale` x `scale` pixels."""
    cells = np.array([[value(ch) for ch in row] for row in picture])
    return np.kron(cells, np.ones((scale, scale), cells.dtype))


# At img_size: 4 x 4 cells of 8 x 8 px (32 px, base.img_size below); every count is x64, no ratio changes.
IMG = 8
TRUTH = {"a": ["1111", "1111", "....", "...."],
         "b": ["1111", "1111", "1111", "1111"],
         "c": ["11..", "11..", "....", "...."]}
OTSU = {"a": ["1111", "1111", "1111", "...."],
        "b": ["....", "....", "....", "...."],
        "c": ["11..", "....", "....", "...."]}
UNET = {"a": ["9999", "4444", "....", "...9"],   # 0.9 above both thresholds, 0.4 between 0.35 and 0.5
        "c": ["99..", "94..", "44..", "...."]}

# At native size: cells of 4 x 4 px. Nuclei are 12 x 12 (144 px) and 16 x 16 (256 px) squares; the
# U-Net's speck in c is 16 px, below instances.min_size 30 (dropped), its blob in a 64 px (kept).
NATIVE = 4
TRUTH_NATIVE = {"a": [".........", ".........", "..1111...", "..1111...", "..1111...", "..1111...",
                      ".........", ".........", "........."],
                "b": ["........", ".111....", ".111....", ".111....", "........", "........", "........",
                      "........"],
                "c": ["............", ".111........", ".111........", ".111........", "............",
                      "............", ".......222..", ".......222..", ".......222..", "............"]}
UNET_NATIVE = {"a": [".........", ".........", "..9999...", "..9999...", "..9999...", "..9999...",
                     ".........", ".......99", ".......99"],
               "c": ["............", ".999........", ".999........", ".999........", "............",
                     "............", ".......444..", ".......444..", ".9.....444..", "............"]}


def foreground(label_picture):
    return [row.replace("2", "1") for row in label_picture]


OTSU_NATIVE = {"a": ["." * 9] * 9,                                   # finds nothing
               "b": foreground(TRUTH_NATIVE["b"]),
               "c": foreground(TRUTH_NATIVE["c"])}                   # both nuclei, exactly


def write_project(root, threshold):
    """The evaluate stage's inputs at the paths of its command in dvc.yaml; returns that command's
    arguments."""
    cmd = shlex.split(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["evaluate"]["cmd"])
    assert cmd[:3] == ["python", "-m", "stages.evaluate"]
    args = dict(zip(cmd[3::2], cmd[4::2]))
    path = {flag: root / value for flag, value in args.items()}
    for p in path.values():
        p.parent.mkdir(parents=True, exist_ok=True)

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["base"]["img_size"] = 4 * IMG
    params["evaluate"]["threshold"] = threshold
    (root / "params.yaml").write_text(yaml.safe_dump(params))

    truth = {i: draw(TRUTH[i], IMG).astype(np.uint8) for i in META_IDS}
    np.save(path["--images"], np.stack([0.1 + 0.7 * truth[i] for i in META_IDS]).astype(np.float32))
    np.save(path["--masks"], np.stack([truth[i] for i in META_IDS]))
    np.save(path["--otsu"], np.stack([draw(OTSU[i], IMG).astype(np.uint8) for i in META_IDS]))
    np.save(path["--unet"], np.stack([draw(UNET[i], IMG, PROBABILITY.get) for i in TEST_IDS]).astype(np.float16))
    np.savez_compressed(path["--labels"], **{i: draw(TRUTH_NATIVE[i], NATIVE).astype(np.int32) for i in META_IDS})
    np.savez_compressed(path["--otsu-native"], **{i: draw(OTSU_NATIVE[i], NATIVE).astype(np.uint8) for i in META_IDS})
    np.savez_compressed(path["--unet-native"],
                        **{i: draw(UNET_NATIVE[i], NATIVE, PROBABILITY.get).astype(np.float16) for i in TEST_IDS})
    pd.DataFrame({"id": META_IDS, "height": [36, 32, 40], "width": [36, 32, 48], "channels": [1, 1, 3],
                  "bits": 8, "color": [False, False, True], "mean": [0.2, 0.8, 0.6]}).to_csv(path["--meta"],
                                                                                           index=False)
    path["--ids"].write_text("".join(f"{i}\n" for i in TEST_IDS))
    pd.DataFrame({"epoch": [1, 2, 3], "phase": 1, "lr": [1e-3, 9e-4, 8e-4], "loss": [0.8, 0.5, 0.6],
                  "dice": [0.5, 0.7, 0.75], "val_loss": [0.7, 0.55, 0.6], "val_dice": [0.6, 0.72, 0.7]}
                 ).to_csv(path["--history"], index=False)
    return cmd[3:], path


# Hand-computed, per threshold. Counts in cells at img_size (x64 in pixels), in pixels at native size.
#
# Otsu, any threshold, img_size:  c: tp 2, fp 0, fn 2 -> P 1, R 1/2, Dice 4/6
#                                 a: tp 8, fp 4, fn 0 -> P 2/3, R 1, Dice 16/20
#   mean Dice (2/3 + 4/5)/2 = 11/15; pooled tp 10, fp 4, fn 2 -> P 10/14, R 10/12, Dice 20/26
# Otsu native: c both nuclei exactly (Dice 1, 2 of 2 nuclei); a nothing (Dice 0, 0 of 1, DSB 0, F1 0)
#   -> native Dice 1/2, DSB 1/2, F1 1/2, count error |2-2| = 0 and |0-1| = 1: mean 1/2
#
# U-Net at 0.5, img_size:  c: the three 0.9 cells, all in c's 4: tp 3, fp 0, fn 1 -> P 1, R 3/4, Dice 6/7
#                          a: row 0 and the corner: tp 4, fp 1, fn 4 -> P 4/5, R 1/2, Dice 8/13
#   mean P 9/10, R 5/8, Dice (6/7 + 8/13)/2; pooled tp 7, fp 1, fn 5 -> P 7/8, R 7/12, Dice 14/20
# U-Net at 0.35, the 0.4 cells join:  c: tp 4, fp 2, fn 0 -> P 4/6, R 1, Dice 8/10
#                                     a: tp 8, fp 1, fn 0 -> P 8/9, R 1, Dice 16/17
#   mean P (2/3 + 8/9)/2 = 7/9, R 1, Dice (4/5 + 16/17)/2; pooled tp 12, fp 3, fn 0 -> P 12/15, Dice 24/27
# U-Net native (the speck in c is under min_size; the blob in a is a false nucleus, 64 px):
#   0.5:  c: nucleus 1 only: tp 144, fn 144 -> Dice 2/3; 1 of 2 matched (IoU 1): DSB 1/(1+1), F1 2/3, error 1
#         a: tp 256, fp 64 -> Dice 512/576 = 8/9; 1 match + 1 false: DSB 1/2, F1 2/3, error 1
#         -> native Dice (2/3 + 8/9)/2 = 7/9, DSB 1/2, F1 2/3, count MAE 1
#   0.35: c: both nuclei: Dice 1, DSB 1, F1 1, error 0; a as at 0.5
#         -> native Dice (1 + 8/9)/2 = 17/18, DSB 3/4, F1 5/6, count MAE 1/2
OTSU_EXPECTED = {"mean": {"precision": 5 / 6, "recall": 3 / 4, "dice": 11 / 15},
                 "pooled": {"precision": 5 / 7, "recall": 5 / 6, "dice": 10 / 13},
                 "native": {"dice": 1 / 2},
                 "instance": {"dsb": 1 / 2, "f1_iou50": 1 / 2, "count_mae": 1 / 2},
                 "per_image": {"c": (2 / 3, 1, 0), "a": (4 / 5, 0, 1)}}   # id: (Dice, native Dice, count error)
UNET_EXPECTED = {
    0.5: {"mean": {"precision": 9 / 10, "recall": 5 / 8, "dice": (6 / 7 + 8 / 13) / 2},
          "pooled": {"precision": 7 / 8, "recall": 7 / 12, "dice": 14 / 20},
          "native": {"dice": 7 / 9},
          "instance": {"dsb": 1 / 2, "f1_iou50": 2 / 3, "count_mae": 1},
          "per_image": {"c": (6 / 7, 2 / 3, 1), "a": (8 / 13, 8 / 9, 1)}},
    0.35: {"mean": {"precision": 7 / 9, "recall": 1, "dice": (4 / 5 + 16 / 17) / 2},
           "pooled": {"precision": 12 / 15, "recall": 1, "dice": 24 / 27},
           "native": {"dice": 17 / 18},
           "instance": {"dsb": 3 / 4, "f1_iou50": 5 / 6, "count_mae": 1 / 2},
           "per_image": {"c": (4 / 5, 1, 0), "a": (16 / 17, 8 / 9, 1)}},
}


def run_evaluate(root, monkeypatch, threshold):
    argv, path = write_project(root, threshold)
    import nucseg.plots

    real, drawn = nucseg.plots.gallery, []

    def spy(images, columns, out, titles=None):
        drawn.append((images, columns, titles))
        return real(images, columns, out, titles=titles)

    monkeypatch.setattr(nucseg.plots, "gallery", spy)   # the stage imports it when runpy runs it
    monkeypatch.chdir(root)
    monkeypatch.setattr("sys.argv", ["evaluate.py", *argv])
    runpy.run_path(str(STAGE), run_name="__main__")
    return path, drawn


def assert_scores(summary, expected, per_image, method):
    for way in ("mean", "pooled", "native", "instance"):
        for metric, value in expected[way].items():
            assert summary[way][metric] == pytest.approx(value), (method, way, metric)
    rows = per_image[per_image["method"] == method].set_index("id")
    assert sorted(rows.index) == ["a", "c"]
    for image_id, (dice, native_dice, count_error) in expected["per_image"].items():
        assert (rows.loc[image_id, "dice"], rows.loc[image_id, "native_dice"]) == \
            (pytest.approx(dice), pytest.approx(native_dice)), (method, image_id)
        assert rows.loc[image_id, "count_error"] == count_error, (method, image_id)


@pytest.mark.parametrize("threshold", [0.5, 0.35])
def test_evaluate_stage_scores_by_id_at_the_threshold(tmp_path, monkeypatch, threshold):
    path, drawn = run_evaluate(tmp_path, monkeypatch, threshold)
    metrics = yaml.safe_load(path["--metrics"].read_text())
    per_image = pd.read_csv(path["--per-image"])
    assert (metrics["n_images"], metrics["threshold"]) == (2, threshold)
    assert_scores(metrics["otsu"], OTSU_EXPECTED, per_image, "otsu")
    assert_scores(metrics["unet"], UNET_EXPECTED[threshold], per_image, "unet")

    # by modality, through meta.csv's colour and mean: a fluorescence, c histology (b is not
    # tested); brightfield, with no test image, written empty (null) so that the keys stay
    c_dice, c_native, _ = UNET_EXPECTED[threshold]["per_image"]["c"]
    assert metrics["unet"]["modality"] == {
        "brightfield": {"n_images": 0, "dice": None, "native_dice": None, "dsb": None},
        "fluorescence": pytest.approx({"n_images": 1, "dice": UNET_EXPECTED[threshold]["per_image"]["a"][0],
                                       "native_dice": 8 / 9, "dsb": 1 / 2}),
        "histology": pytest.approx({"n_images": 1, "dice": c_dice, "native_dice": c_native,
                                    "dsb": {0.5: 1 / 2, 0.35: 1}[threshold]})}

    # the gallery: worst to best U-Net Dice (0.5: a 8/13 < c 6/7; 0.35: c 4/5 < a 16/17), each row
    # the image, truth and masks of the id in its title
    (images, columns, titles), = drawn
    shown = [title.split("\n")[0] for title in titles]
    assert shown == {0.5: ["a", "c"], 0.35: ["c", "a"]}[threshold]
    for row, image_id in enumerate(shown):
        truth = draw(TRUTH[image_id], IMG)
        np.testing.assert_allclose(images[row], 0.1 + 0.7 * truth, rtol=1e-6)
        np.testing.assert_array_equal(columns["truth"][row], truth)
        np.testing.assert_array_equal(columns["Otsu"][row], draw(OTSU[image_id], IMG))
        np.testing.assert_array_equal(columns["U-Net"][row], draw(UNET[image_id], IMG, PROBABILITY.get) > threshold)

    for flag in ("--bars", "--gallery", "--curves"):
        assert path[flag].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", flag
        with Image.open(path[flag]) as figure:
            assert min(figure.size) > 100, flag


def fails_keeping_metrics(argv, path, root, monkeypatch, capsys):
    """Run the evaluate stage on a project it must refuse: its error, once the previous metrics
    are shown to have stayed."""
    path["--metrics"].write_text("previous")
    monkeypatch.chdir(root)
    monkeypatch.setattr("sys.argv", ["evaluate.py", *argv])
    with pytest.raises(SystemExit):
        runpy.run_path(str(STAGE), run_name="__main__")
    assert path["--metrics"].read_text() == "previous"
    return capsys.readouterr().err.strip()


def test_evaluate_stage_with_an_id_the_data_lacks_stops_in_one_line(tmp_path, monkeypatch, capsys):
    """A test list from another run than the arrays (edited by hand, or copied): one line, and the
    previous metrics stay."""
    argv, path = write_project(tmp_path, 0.5)
    path["--ids"].write_text("c\nzz\n")
    assert fails_keeping_metrics(argv, path, tmp_path, monkeypatch, capsys) == (
        "error: data/split/test.txt in data/masks/masks.npy: 1 ids not in the data, e.g. zz: the id lists and the "
        "arrays come from different runs; rebuild them with 'dvc repro'")


def test_evaluate_stage_with_labels_from_other_ids_stops_in_one_line(tmp_path, monkeypatch, capsys):
    """Labels written for other ids than the arrays and lists (copied from another run): one line
    naming the file, and the previous metrics stay."""
    argv, path = write_project(tmp_path, 0.5)
    labels = path["--labels"]
    with np.load(labels) as arrays:
        kept = {k: arrays[k] for k in arrays.files if k != "a"}
    save_npz(labels, kept)
    err = fails_keeping_metrics(argv, path, tmp_path, monkeypatch, capsys)
    assert err.startswith(f"error: {labels.relative_to(tmp_path)}: no array for 'a': it was written for other ids")
    assert "\n" not in err


def _cut(path):
    path.write_bytes(path.read_bytes()[:-40])


def _drop_column(column):
    def drop(path):
        pd.read_csv(path).drop(columns=[column]).to_csv(path, index=False)
    return drop


@pytest.mark.parametrize("option, damage, expected", [
    ("--masks", _cut, "not a whole .npy array"),
    ("--labels", _cut, "not a whole .npz file"),
    ("--ids", lambda path: path.write_text("\n"), "no ids in it"),
    ("--meta", _drop_column("mean"), "no column mean"),
    ("--history", _drop_column("val_loss"), "no column val_loss"),
])
def test_evaluate_stage_with_a_damaged_input_names_it_and_how_to_restore_it(tmp_path, monkeypatch, capsys, option,
                                                                              damage, expected):
    """A pipeline file cut short or edited by hand: one line naming it and the fix, not numpy's or
    pandas' traceback; the previous metrics stay."""
    argv, path = write_project(tmp_path, 0.5)
    damage(path[option])
    name = path[option].relative_to(tmp_path)
    err = fails_keeping_metrics(argv, path, tmp_path, monkeypatch, capsys)
    assert err.startswith(f"error: {name}: {expected}") and "\n" not in err, err
    assert err.endswith(f"restore it with 'dvc checkout --force {name}' ('git checkout {name}' if Git tracks "
                        "it), or rebuild it with 'dvc repro -f -s <the stage that writes it>'")


def test_a_stage_run_before_its_input_exists_says_how_to_make_it(tmp_path, monkeypatch, capsys):
    argv, path = write_project(tmp_path, 0.5)
    path["--unet"].unlink()
    assert fails_keeping_metrics(argv, path, tmp_path, monkeypatch, capsys) == (
        f"error: {path['--unet'].relative_to(tmp_path)}: no such file; make it with 'dvc repro' (or get it with "
        "'dvc pull')")
