"""nucseg compare: two runs' per-image scores paired image by image, from files or revisions."""
import hashlib
import json
import subprocess

import pandas as pd
import pytest

from nucseg.cli import main
from nucseg.compare import compare, read_run, summary
from nucseg.io import NucsegError


def per_image(path, dice, ids=None, method="unet", **more):
    """A pipeline-style plots/per_image.csv (native_dice beside dice)."""
    ids = ids or [f"img{i}" for i in range(len(dice))]
    pd.DataFrame({"id": ids, "method": method, "dice": dice, "native_dice": dice, **more}).to_csv(path, index=False)
    return str(path)


def robustness_rows(path, scores, otsu=0.0):
    """scores: {(degradation, severity): [U-Net Dice per image]}, in severity order; Otsu's
    Dice is `otsu` everywhere."""
    rows = [{"degradation": name, "severity": severity, "id": f"img{i}", "method": method,
             "dice": d if method == "unet" else otsu, "dsb": d / 2 if method == "unet" else otsu}
            for (name, severity), dice in scores.items() for i, d in enumerate(dice) for method in ("unet", "otsu")]
    pd.DataFrame(rows).to_csv(path, index=False)
    return str(path)


def row(table, what="test images", metric="dice", severity=None):
    pick = (table["what"] == what) & (table["metric"] == metric)
    if severity is not None:
        pick &= table["severity"] == severity
    assert pick.sum() == 1
    return table[pick].iloc[0]


def test_difference_interval_and_counts_by_hand(tmp_path):
    """Differences 0.1, 0, 0.2: mean 0.1, b higher on 2 images, a on none, every resampled mean in
    [0, 0.2]. Two images moving by 0 and 0.5: resampled means 0, 0.25 or 0.5 (a quarter of the
    time each end), so the 95% interval is [0, 0.5]."""
    a = per_image(tmp_path / "a.csv", [0.5, 0.6, 0.7])
    b = per_image(tmp_path / "b.csv", [0.6, 0.6, 0.9])
    table, notes = compare(a, b)
    first = row(table)
    assert first["n"] == 3 and notes == []
    assert first["a"] == pytest.approx(0.6) and first["b"] == pytest.approx(0.7)
    assert first["difference"] == pytest.approx(0.1)
    assert (first["b_higher"], first["a_higher"]) == (2, 0)
    assert 0 <= first["ci95_low"] < 0.1 < first["ci95_high"] <= 0.2 + 1e-12
    two = row(compare(per_image(tmp_path / "e.csv", [0.1, 0.2]), per_image(tmp_path / "f.csv", [0.1, 0.7]))[0])
    assert (two["ci95_low"], two["ci95_high"]) == pytest.approx((0.0, 0.5))   # unpaired: from -0.1


def test_different_image_sets_are_refused_unless_asked_and_methods_kept_apart(tmp_path):
    a = per_image(tmp_path / "a.csv", [0.2, 0.4, 0.9], ids=["x", "y", "z"])
    pd.concat([pd.read_csv(a), pd.DataFrame({"id": ["x"], "method": ["otsu"], "dice": [0.0],
                                             "native_dice": [0.0]})]).to_csv(a, index=False)
    b = per_image(tmp_path / "b.csv", [0.1, 0.3, 0.5], ids=["w", "x", "y"])
    with pytest.raises(NucsegError, match=r"test images: a scored 3 images, b 3, 2 of them both; compare runs on "
                                          r"the same images \(same base.seed and split\), or pass --common"):
        compare(a, b)
    table, notes = compare(a, b, common=True)
    assert row(table)["n"] == 2 and row(table)["difference"] == pytest.approx(0.1)   # x .2->.3, y .4->.5
    assert notes == ["test images: a scored 3 images, b 3, 2 of them both: only those paired (--common)"]
    otsu = row(compare(a, per_image(tmp_path / "o.csv", [0.5], ids=["x"], method="otsu"),
                       method="otsu", common=True)[0])
    assert otsu["n"] == 1 and otsu["difference"] == pytest.approx(0.5)
    with pytest.raises(NucsegError, match="a scored 3 images, b 1, 0 of them both; compare runs on the same"):
        compare(a, per_image(tmp_path / "e.csv", [0.5], ids=["elsewhere"]), common=True)


def test_robustness_scores_pair_per_degradation_and_severity(tmp_path):
    a = robustness_rows(tmp_path / "a.csv", {("blur", 0.0): [0.9, 0.8], ("blur", 3.0): [0.5, 0.6],
                                             ("low_contrast", 1.0): [0.9, 0.8], ("low_contrast", 0.05): [0.7, 0.7]})
    b = robustness_rows(tmp_path / "b.csv", {("blur", 0.0): [0.9, 0.8], ("blur", 3.0000001): [0.7, 0.6],
                                             ("low_contrast", 1.0): [0.9, 0.8], ("low_contrast", 0.05): [0.6, 0.6]},
                        otsu=0.3)   # Otsu rows differ: only the U-Net's are compared
    table, notes = compare(a, b)
    assert len(table) == 8 and set(table["n"]) == {2} and notes == []   # 2 x 2 severities x (dice, dsb)
    assert row(table, "blur", "dice", 3.0)["difference"] == pytest.approx(0.1)   # 3.0000001 read as 3.0
    assert row(table, "blur", "dsb", 3.0)["difference"] == pytest.approx(0.05)
    assert (row(table, "blur", "dice", 3.0)["b_higher"], row(table, "blur", "dice", 3.0)["a_higher"]) == (1, 0)
    assert row(table, "low_contrast", "dice", 0.05)["difference"] == pytest.approx(-0.1)
    shown = summary(table)   # undamaged once, then each degradation at its worst (low contrast runs downwards)
    assert list(zip(shown["what"], shown["severity"].fillna(-1))) == [
        ("no damage", -1), ("blur", 3.0), ("low_contrast", 0.05)]
    more = robustness_rows(tmp_path / "c.csv", {("blur", 0.0): [0.9, 0.8], ("blur", 3.0): [0.7, 0.6],
                                                ("blur", 5.0): [0.1, 0.1]})
    table, notes = compare(a, more)
    assert set(table["what"]) == {"blur"} and notes == [
        "only one run has low_contrast 1, low_contrast 0.05, blur 5: not compared"]


def test_evaluate_out_files_pair_as_native_scores(tmp_path):
    """nucseg evaluate --out's per-image dice is native: it pairs with the pipeline's native_dice,
    never with its model-resolution dice; its f1 is f1_iou50."""
    pipeline = tmp_path / "pipeline.csv"
    pd.DataFrame({"id": ["001", "002", "x"], "method": "unet", "dice": [0.9, 0.9, 0.9], "native_dice": [0.8, 0.6, 0.1],
                  "f1_iou50": [0.5, 0.5, 0.5]}).to_csv(pipeline, index=False)
    cli = tmp_path / "mine.per_image.csv"
    pd.DataFrame({"id": ["001", "002"], "method": "unet", "dice": [0.7, 0.7], "f1": [0.75, 0.25],
                  "precision": [1, 1]}).to_csv(cli, index=False)
    table, _ = compare(str(pipeline), str(cli), common=True)
    assert set(table["metric"]) == {"native_dice", "f1_iou50"} and set(table["n"]) == {2}   # 001, 002 as text
    assert row(table, metric="native_dice")["difference"] == pytest.approx(0.0)
    assert row(table, metric="f1_iou50")["difference"] == pytest.approx(0.0)


def test_an_older_pipeline_table_without_native_dice_keeps_its_model_resolution_dice(tmp_path):
    """plots/per_image.csv before 9751494 had dice (at 128 px) and f1_iou50 but no native_dice:
    its dice pairs with a later run's dice, never with its native_dice, as an --out table's would."""
    old, new = tmp_path / "old.csv", tmp_path / "new.csv"
    pd.DataFrame({"id": ["a", "b"], "method": "unet", "dice": [0.8, 0.6], "f1_iou50": [0.5, 0.5]}).to_csv(old, index=False)
    pd.DataFrame({"id": ["a", "b"], "method": "unet", "dice": [0.9, 0.9], "native_dice": [0.7, 0.7],
                  "f1_iou50": [0.75, 0.25]}).to_csv(new, index=False)
    table, _ = compare(str(old), str(new))
    assert set(table["metric"]) == {"dice", "f1_iou50"}
    assert row(table, metric="dice")["difference"] == pytest.approx(0.2)     # (0.1 + 0.3) / 2
    assert row(table, metric="f1_iou50")["difference"] == pytest.approx(0.0)


@pytest.mark.parametrize("text, message", [
    ("id,method,dice\na,unet,0.5\na,unet,0.9\nb,unet,0.6\n", "image a appears 2 times for unet; keep one row"),
    ("id,method,dice\na,unet,abc\n", "column dice holds a non-number ('abc', data row 1)"),
    ("id,n_nuclei\nx,3\n", "no dice, method column; give a per-image CSV written by nucseg"),
    ("degradation,severity,id,method,dice\nblur,high,a,unet,0.5\n", "column severity holds a non-number ('high'"),
    ("", "not a per-image CSV (No columns to parse from file)"),
])
def test_a_file_that_is_not_per_image_scores_is_named_in_one_line(tmp_path, capsys, text, message):
    bad = tmp_path / "scores.csv"
    bad.write_text(text)
    assert main(["compare", str(bad), per_image(tmp_path / "good.csv", [0.5])]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {bad}: {message}") and err.count("\n") == 1


def test_no_shared_score_is_an_error_not_an_empty_table(tmp_path):
    empty = tmp_path / "nan.csv"
    empty.write_text("id,method,dice,native_dice\na,unet,,\nb,unet,,\n")
    with pytest.raises(NucsegError, match="no score for the same images"):
        compare(str(empty), per_image(tmp_path / "b.csv", [0.5, 0.6], ids=["a", "b"]))
    with pytest.raises(NucsegError, match="no score for the same images"):
        compare(per_image(tmp_path / "c.csv", [0.5], ids=["img0"]),
                robustness_rows(tmp_path / "d.csv", {("blur", 0.0): [0.9]}))


def git(repo, *args):
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True,
                          capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """Two commits of plots/per_image.csv (Dice .5, .6 then .7, .7); the first is also the DVC
    experiment 'first-run' on the second commit (refs/exps/<2>/<38>/<name>, the hex digits its
    baseline), beside a decoy ref of the same name at another depth."""
    (tmp_path / "plots").mkdir()
    git(tmp_path, "init", "-q")
    per_image(tmp_path / "plots" / "per_image.csv", [0.5, 0.6], dsb=[0.2, 0.2])
    git(tmp_path, "add", "plots")
    git(tmp_path, "commit", "-q", "-m", "a")
    first = git(tmp_path, "rev-parse", "HEAD")
    per_image(tmp_path / "plots" / "per_image.csv", [0.7, 0.7], dsb=[0.1, 0.3])
    git(tmp_path, "commit", "-q", "-am", "b")
    head = git(tmp_path, "rev-parse", "HEAD")
    git(tmp_path, "update-ref", f"refs/exps/{head[:2]}/{head[2:]}/first-run", first)
    git(tmp_path, "update-ref", "refs/exps/exec/first-run", head)   # not an experiment's ref
    monkeypatch.chdir(tmp_path)
    return tmp_path, first, head


def test_revisions_and_experiment_names_read_the_committed_scores(repo, capsys):
    path, first, _ = repo
    for run_a in ("HEAD~1", "first-run", first):
        table, notes = compare(run_a, "HEAD")
        assert row(table)["difference"] == pytest.approx(0.15) and notes == []
        assert row(table, metric="dsb")["difference"] == pytest.approx(0.0)
    assert main(["compare", "first-run", "HEAD", "--out", "diff.json"]) == 0
    out = capsys.readouterr().out
    assert "a = first-run, b = HEAD" in out and "0.1500" in out
    written = {r["metric"]: r for r in json.loads((path / "diff.json").read_text())}
    assert written["dice"]["difference"] == pytest.approx(0.15) and written["dice"]["severity"] is None
    assert main(["compare", "HEAD~1", "HEAD", "--all", "--out", "diff.csv"]) == 0
    assert pd.read_csv(path / "diff.csv")["metric"].tolist() == ["dice", "native_dice", "dsb"]
    assert main(["compare", "no-such-run", "HEAD"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: no-such-run: neither a per-image CSV file nor a Git revision or DVC experiment")
    assert err.count("\n") == 1


def test_an_experiment_name_on_several_baselines_means_the_one_on_head(repo):
    path, first, head = repo
    git(path, "update-ref", f"refs/exps/{first[:2]}/{first[2:]}/first-run", head)   # same name, older baseline
    assert row(compare("first-run", "HEAD")[0])["difference"] == pytest.approx(0.15)
    git(path, "update-ref", "-d", f"refs/exps/{head[:2]}/{head[2:]}/first-run")
    git(path, "update-ref", f"refs/exps/{'ab' if head[:2] != 'ab' else 'cd'}/{head[2:]}/first-run", head)
    with pytest.raises(NucsegError, match="first-run: 2 DVC experiments have this name, none on HEAD; give one of"):
        compare("first-run", "HEAD")


def test_a_branch_named_like_an_experiment_wins_with_a_note(repo):
    path, _, head = repo
    git(path, "branch", "first-run", "HEAD")
    table, notes = compare("first-run", "HEAD")
    assert row(table)["difference"] == pytest.approx(0.0)
    assert notes == [f"first-run: the Git revision; for the experiment of that name give "
                     f"refs/exps/{head[:2]}/{head[2:]}/first-run"]


def test_outside_a_repository_and_unwritable_out_fail_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert main(["compare", "HEAD~1", "HEAD"]) == 1
    assert "is not in a Git repository; give two per-image CSV files" in capsys.readouterr().err
    good = per_image(tmp_path / "good.csv", [0.5])
    (tmp_path / "folder").mkdir()
    assert main(["compare", good, good, "--out", "folder"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("error: folder: a folder; give --out a file name")


def test_scores_are_checked_and_renamed_alike_for_files_and_revisions(repo):
    """nucseg evaluate --out's table (native scores under `dice`, no `native_dice`) and a robustness
    table, committed and as files: read the same, renamed the same; a bad cell is named where it is."""
    path, _, _ = repo
    evaluate_out = pd.DataFrame({"id": ["a", "b"], "method": "unet", "dice": [0.5, 0.75], "f1": [0.4, 1.0]})
    robust = pd.DataFrame({"degradation": "blur", "severity": [0.0, 3.0], "id": "a", "method": "unet",
                           "dice": [0.9, 0.6]})
    evaluate_out.to_csv(path / "plots" / "per_image.csv", index=False)
    robust.to_csv(path / "plots" / "robustness_per_image.csv", index=False)
    git(path, "add", "plots")
    git(path, "commit", "-q", "-m", "evaluate --out and robustness")
    from_git, _ = read_run("HEAD")
    from_files = {kind: read_run(f"plots/{name}")[0][kind] for kind, name in
                  (("evaluate", "per_image.csv"), ("robustness", "robustness_per_image.csv"))}
    for kind in ("evaluate", "robustness"):
        pd.testing.assert_frame_equal(from_git[kind], from_files[kind])
    assert from_git["evaluate"]["native_dice"].tolist() == [0.5, 0.75] and "dice" not in from_git["evaluate"]
    assert from_git["evaluate"]["f1_iou50"].tolist() == [0.4, 1.0]
    assert from_git["robustness"]["dice"].tolist() == [0.9, 0.6]   # robustness keeps its model-resolution Dice
    evaluate_out.astype({"dice": object}).assign(dice=["0.5", "0,75"]).to_csv(path / "plots" / "per_image.csv",
                                                                             index=False)
    git(path, "commit", "-q", "-am", "a bad cell")
    for run, where in (("HEAD", "HEAD:plots/per_image.csv"), ("plots/per_image.csv", "plots/per_image.csv")):
        with pytest.raises(NucsegError, match=f"^{where}: column dice holds a non-number \\('0,75', data row 2\\)"):
            read_run(run)

def _stage(deps=(), params=None, outs=()):
    """A dvc.lock stage entry: (path, md5) pairs of its deps and outs, its params.yaml values."""
    return {"deps": [{"path": path, "md5": md5} for path, md5 in deps], "params": {"params.yaml": params or {}},
            "outs": [{"path": path, "md5": md5} for path, md5 in outs]}


MODEL, PREDICTIONS = ("models/unet.keras", "aaa"), ("data/predict", "bbb.dir")
LOCK = {"schema": "2.0", "stages": {
    "train": _stage(params={"train.epochs": 10, "train.learning_rate": 0.001}, outs=[MODEL]),
    "predict": _stage(deps=[MODEL], outs=[PREDICTIONS]),
    "evaluate": _stage(deps=[PREDICTIONS], params={"evaluate": {"threshold": 0.5}},
                       outs=[("plots/per_image.csv", "ccc")]),
    "robustness": _stage(deps=[MODEL], params={"evaluate.threshold": 0.5, "robustness": {"severities": {"blur": [0.0, 1.0]}}},
                         outs=[("plots/robustness_per_image.csv", "ddd")])}}
PARAMS = {"train": {"epochs": 10, "learning_rate": 0.001}, "evaluate": {"threshold": 0.5},
          "robustness": {"severities": {"blur": [0.0, 1.0]}}}
DVC_YAML = {"stages": {name: {"cmd": f"python -m stages.{name}"} for name in LOCK["stages"]}}


def stale(lock, params, dvc_yaml=DVC_YAML, files=None):
    """`stale_outputs` by stage: what changed after it ran."""
    from nucseg.compare import stale_outputs

    return {stage: why for stage, why in stale_outputs(lock, params, dvc_yaml, files).values()}


def test_stale_outputs_are_those_of_stages_run_before_a_param_or_an_input_changed():
    """`dvc exp run -S evaluate.threshold=0.4 evaluate` reruns evaluate, not robustness; `-S
    train.epochs=20 train` leaves predict, and through it evaluate, on the old model; an edit of
    a stage's code after it ran leaves it out of date too."""
    import copy

    lock = copy.deepcopy(LOCK)
    assert stale(lock, PARAMS) == {}
    params = copy.deepcopy(PARAMS)
    params["evaluate"]["threshold"] = 0.4
    reran = copy.deepcopy(lock)
    reran["stages"]["evaluate"]["params"]["params.yaml"]["evaluate"]["threshold"] = 0.4
    assert stale(reran, params) == {"robustness": "evaluate.threshold"}
    params = copy.deepcopy(PARAMS)
    params["train"]["epochs"] = 20
    reran = copy.deepcopy(lock)
    reran["stages"]["train"]["params"]["params.yaml"]["train.epochs"] = 20
    reran["stages"]["train"]["outs"][0]["md5"] = "eee"
    assert stale(reran, params) == {"predict": "models/unet.keras", "evaluate": "stage predict, out of date itself",
                                    "robustness": "models/unet.keras"}
    params["robustness"]["severities"]["blur"] = [0.0, 2.0]
    assert stale(lock, params)["robustness"] == "robustness"
    code = b"def main(): ...\n"
    reran = copy.deepcopy(lock)
    reran["stages"]["evaluate"]["deps"].append({"path": "stages/evaluate.py", "hash": "md5",
                                                "md5": hashlib.md5(code).hexdigest()})
    assert stale(reran, PARAMS, files={"stages/evaluate.py": code}) == {}
    assert stale(reran, PARAMS, files={"stages/evaluate.py": code + b"# edited\n"}) == {"evaluate": "stages/evaluate.py"}


def test_stale_outputs_follow_dvc_yaml_frozen_stages_and_files_inside_output_folders():
    """dvc.lock keeps a removed or renamed stage's entry: only dvc.yaml's stages count. A frozen
    stage is never out of date. A stage reading a file inside another's output folder follows it."""
    import copy

    lock = copy.deepcopy(LOCK)
    params = copy.deepcopy(PARAMS)
    params["evaluate"]["threshold"] = 0.4
    renamed = copy.deepcopy(lock)
    renamed["stages"]["score"] = copy.deepcopy(renamed["stages"]["evaluate"])
    renamed["stages"]["score"]["params"]["params.yaml"]["evaluate"]["threshold"] = 0.4
    renamed["stages"]["robustness"]["params"]["params.yaml"]["evaluate.threshold"] = 0.4
    defined = copy.deepcopy(DVC_YAML)
    defined["stages"]["score"] = defined["stages"].pop("evaluate")
    assert stale(renamed, params, defined) == {}
    defined = copy.deepcopy(DVC_YAML)
    defined["stages"]["robustness"]["frozen"] = True
    assert stale(lock, params, defined) == {"evaluate": "evaluate"}
    inside = copy.deepcopy(lock)
    inside["stages"]["evaluate"]["deps"] = [{"path": "data/predict/probs.npy", "md5": "fff"}]
    params = copy.deepcopy(PARAMS)
    params["train"]["epochs"] = 20
    assert stale(inside, params)["evaluate"] == "stage predict, out of date itself"


def test_a_runs_scores_from_a_stage_that_did_not_rerun_are_not_compared(repo):
    """An experiment run up to evaluate keeps the robustness scores of the run before it: they are
    left out with a note, not compared as if the experiment had scored the same. params.yaml is
    read as DVC reads it: a learning rate written 1e-3 is the 0.001 of dvc.lock."""
    import copy

    import yaml

    path, _, _ = repo
    robustness_rows(path / "plots" / "robustness_per_image.csv", {("blur", 0.0): [0.9, 0.8], ("blur", 1.0): [0.5, 0.4]})
    (path / "dvc.lock").write_text(yaml.safe_dump(LOCK))
    (path / "params.yaml").write_text(yaml.safe_dump(PARAMS).replace("learning_rate: 0.001", "learning_rate: 1e-3"))
    (path / "dvc.yaml").write_text(yaml.safe_dump(DVC_YAML))
    git(path, "add", ".")
    git(path, "commit", "-q", "-m", "pipeline")
    robustness_rows(path / "plots" / "robustness_per_image.csv", {("blur", 0.0): [0.9, 0.8], ("blur", 1.0): [0.6, 0.6]})
    per_image(path / "plots" / "per_image.csv", [0.8, 0.8])
    git(path, "commit", "-q", "-am", "an experiment run up to evaluate: robustness rerun by hand, not in dvc.lock")
    lock = copy.deepcopy(LOCK)
    lock["stages"]["evaluate"]["params"]["params.yaml"]["evaluate"]["threshold"] = 0.4
    (path / "dvc.lock").write_text(yaml.safe_dump(lock))
    (path / "params.yaml").write_text(yaml.safe_dump({**PARAMS, "evaluate": {"threshold": 0.4}}))
    git(path, "commit", "-q", "-am", "threshold 0.4, evaluate only")
    table, notes = compare("HEAD~1", "HEAD")
    assert set(table["what"]) == {"test images"} and row(table)["difference"] == pytest.approx(0.0)
    assert notes == ["HEAD: plots/robustness_per_image.csv is from an earlier run of the robustness stage "
                     "(evaluate.threshold changed after it; an experiment run up to another stage?): not compared"]
    table, notes = compare("HEAD~2", "HEAD~1")   # both up to date: robustness compared
    assert row(table, what="blur", severity=1.0)["difference"] == pytest.approx(0.15) and notes == []
    (path / "dvc.yaml").write_text("stages: [not, a: mapping")                 # DVC could not read it either
    git(path, "commit", "-q", "-am", "a broken dvc.yaml")
    table, notes = compare("HEAD~3", "HEAD")   # not judged: compared as committed
    assert "blur" in set(table["what"]) and notes == []
