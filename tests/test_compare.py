"""nucseg compare: two runs' per-image scores paired image by image, from files or revisions."""
import json
import subprocess

import pandas as pd
import pytest

from nucseg.cli import main
from nucseg.compare import compare, worst
from nucseg.io import NucsegError


def per_image(path, dice, ids=None, method="unet", **more):
    ids = ids or [f"img{i}" for i in range(len(dice))]
    pd.DataFrame({"id": ids, "method": method, "dice": dice, **more}).to_csv(path, index=False)
    return str(path)


def robustness_rows(path, scores):
    """scores: {(degradation, severity): [dice per image]}, in severity order."""
    rows = [{"degradation": name, "severity": severity, "id": f"img{i}", "method": method, "dice": d, "dsb": d / 2}
            for (name, severity), dice in scores.items() for i, d in enumerate(dice) for method in ("unet", "otsu")]
    pd.DataFrame(rows).to_csv(path, index=False)
    return str(path)


def test_difference_interval_and_counts_by_hand(tmp_path):
    """Differences 0.1, 0, 0.2: mean 0.1, b higher on 2, a on none, the bootstrap's means lie in
    [0, 0.2]. Differences 0 and 1 (two images): resampled means 0, 0.5 or 1, so the 95% interval
    is [0, 1]."""
    a = per_image(tmp_path / "a.csv", [0.5, 0.6, 0.7])
    b = per_image(tmp_path / "b.csv", [0.6, 0.6, 0.9])
    row = compare(a, b).iloc[0]
    assert (row["what"], row["metric"], row["n"]) == ("test images", "dice", 3)
    assert row["a"] == pytest.approx(0.6) and row["b"] == pytest.approx(0.7)
    assert row["difference"] == pytest.approx(0.1)
    assert (row["b_higher"], row["a_higher"]) == (2, 0)
    assert 0 <= row["ci95_low"] < 0.1 < row["ci95_high"] <= 0.2 + 1e-12
    two = compare(per_image(tmp_path / "c.csv", [0.5, 0.5]), per_image(tmp_path / "d.csv", [0.5, 1.5])).iloc[0]
    assert (two["ci95_low"], two["ci95_high"]) == (0.0, 1.0)


def test_only_images_both_scored_are_paired_and_other_methods_ignored(tmp_path):
    a = per_image(tmp_path / "a.csv", [0.2, 0.4, 0.9], ids=["x", "y", "z"])
    pd.concat([pd.read_csv(a), pd.DataFrame({"id": ["x"], "method": ["otsu"], "dice": [0.0]})]).to_csv(a, index=False)
    b = per_image(tmp_path / "b.csv", [0.1, 0.3, 0.5], ids=["w", "x", "y"])
    row = compare(a, b).iloc[0]
    assert row["n"] == 2 and row["difference"] == pytest.approx(0.1)   # x: 0.2 -> 0.3, y: 0.4 -> 0.5
    otsu = compare(a, per_image(tmp_path / "o.csv", [0.5], ids=["x"], method="otsu"), method="otsu").iloc[0]
    assert otsu["n"] == 1 and otsu["difference"] == pytest.approx(0.5)
    with pytest.raises(NucsegError, match="share no image; compare runs scored on the same images"):
        compare(a, per_image(tmp_path / "e.csv", [0.5], ids=["elsewhere"]))


def test_robustness_scores_pair_per_degradation_and_severity(tmp_path):
    a = robustness_rows(tmp_path / "a.csv", {("blur", 0.0): [0.9, 0.8], ("blur", 3.0): [0.5, 0.6],
                                             ("low_contrast", 1.0): [0.9, 0.8], ("low_contrast", 0.05): [0.7, 0.7]})
    b = robustness_rows(tmp_path / "b.csv", {("blur", 0.0): [0.9, 0.8], ("blur", 3.0): [0.7, 0.6],
                                             ("low_contrast", 1.0): [0.9, 0.8], ("low_contrast", 0.05): [0.6, 0.6]})
    table = compare(a, b)
    assert len(table) == 8   # 2 degradations x 2 severities x (dice, dsb)
    blur = table[(table["what"] == "blur") & (table["severity"] == 3.0)].set_index("metric")
    assert blur.loc["dice", "difference"] == pytest.approx(0.1) and blur.loc["dsb", "difference"] == pytest.approx(0.05)
    assert (blur.loc["dice", "b_higher"], blur.loc["dice", "a_higher"]) == (1, 0)
    contrast = table[(table["what"] == "low_contrast") & (table["severity"] == 0.05)].set_index("metric")
    assert contrast.loc["dice", "difference"] == pytest.approx(-0.1)
    shown = worst(table)   # Dice at the clean and the worst severity of each
    assert list(zip(shown["what"], shown["severity"], shown["metric"])) == [
        ("blur", 0.0, "dice"), ("blur", 3.0, "dice"), ("low_contrast", 1.0, "dice"), ("low_contrast", 0.05, "dice")]


def git(repo, *args):
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True,
                   capture_output=True)


def test_revisions_and_experiment_names_read_the_committed_scores(tmp_path, monkeypatch, capsys):
    """Two commits of plots/per_image.csv and a DVC-style experiment ref name the same runs."""
    (tmp_path / "plots").mkdir()
    git(tmp_path, "init", "-q")
    per_image(tmp_path / "plots" / "per_image.csv", [0.5, 0.6], dsb=[0.2, 0.2])
    git(tmp_path, "add", "plots")
    git(tmp_path, "commit", "-q", "-m", "a")
    per_image(tmp_path / "plots" / "per_image.csv", [0.7, 0.7], dsb=[0.1, 0.3])
    git(tmp_path, "commit", "-q", "-am", "b")
    git(tmp_path, "update-ref", "refs/exps/ab/cdef0123/first-run", "HEAD~1")
    monkeypatch.chdir(tmp_path)
    for run_a in ("HEAD~1", "first-run"):
        table = compare(run_a, "HEAD").set_index("metric")
        assert table.loc["dice", "difference"] == pytest.approx(0.15)
        assert table.loc["dsb", "difference"] == pytest.approx(0.0)
    assert main(["compare", "first-run", "HEAD", "--out", "diff.json"]) == 0
    out = capsys.readouterr().out
    assert "a = first-run, b = HEAD" in out and "0.1500" in out
    written = {row["metric"]: row for row in json.loads((tmp_path / "diff.json").read_text())}
    assert written["dice"]["difference"] == pytest.approx(0.15) and written["dice"]["severity"] is None
    assert main(["compare", "no-such-run", "HEAD"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: no-such-run: neither a per-image CSV file nor a Git revision or DVC experiment")
    assert err.count("\n") == 1


def test_a_file_that_is_not_per_image_scores_is_named(tmp_path, capsys):
    bad = tmp_path / "summary.csv"
    bad.write_text("id,n_nuclei\nx,3\n")
    good = per_image(tmp_path / "good.csv", [0.5])
    assert main(["compare", str(bad), good]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {bad}: no dice, method column; give a per-image CSV written by nucseg")
    assert err.count("\n") == 1
