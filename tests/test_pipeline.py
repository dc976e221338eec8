"""End to end: the real `dvc repro` on a tiny configuration in a temporary copy of the project.

Eight images (the first eight of ../shared's stage1_train when present, else synthetic ones in the
same layout), 32 px, one epoch, a randomly initialised encoder.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import ROOT, SHARED_ZIP, have_shared_zip, make_samples, subset_zip, write_kaggle_zip
from nucseg.modelinfo import embedded_settings
from nucseg.windows import windows

pytestmark = pytest.mark.slow
DATA_STAGES = {"fetch", "ingest", "masks", "split", "otsu", "augmentations"}
MODEL_STAGES = {"train", "export", "predict", "evaluate", "robustness"}
# the stages that only score saved predictions: all that the decision threshold may rerun
SCORING_STAGES = {"evaluate", "robustness"}


def dvc(project, *args, check=True):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(["dvc", *args], cwd=project, env=env, capture_output=True, text=True)
    if check and result.returncode:
        raise AssertionError(f"dvc {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def ran(result):
    return set(re.findall(r"Running stage '(\w+)'", result.stdout))


def set_params(project, **changes):
    path = project / "params.yaml"
    params = yaml.safe_load(path.read_text())
    for dotted, value in changes.items():
        section, key = dotted.split(".")
        params[section][key] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    project = tmp_path_factory.mktemp("project")
    for name in ("dvc.yaml", "params.yaml", ".gitignore"):
        shutil.copy(ROOT / name, project / name)
    for folder in ("stages", "nucseg"):
        shutil.copytree(ROOT / folder, project / folder, ignore=shutil.ignore_patterns("__pycache__"))
    raw = project / "data" / "raw"
    raw.mkdir(parents=True)
    if have_shared_zip():
        subset_zip(SHARED_ZIP, raw / "stage1_train.zip", 8)
    else:
        write_kaggle_zip(raw / "stage1_train.zip", make_samples(8, shape=(96, 120)))
    set_params(project, **{
        "base.img_size": 32, "split.val": 0.25, "split.test": 0.25,
        "train.encoder_weights": "none", "train.epochs": 1, "train.batch_size": 2,
        "train.finetune_epochs": 0, "evaluate.gallery_images": 2,
    })
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    dvc(project, "init", "-q")
    shutil.copytree(ROOT / ".dvc" / "plots", project / ".dvc" / "plots")   # the robustness plot's template
    dvc(project, "config", "core.analytics", "false")
    first = dvc(project, "repro")
    return project, first


def test_full_chain_runs_and_scores(project):
    project, first = project
    assert ran(first) == DATA_STAGES | MODEL_STAGES
    metrics = json.loads((project / "metrics" / "evaluate.json").read_text())
    assert metrics["n_images"] == 2
    for method in ("otsu", "unet"):
        for how in ("mean", "pooled", "native"):
            assert set(metrics[method][how]) == {"precision", "recall", "dice", "iou"}
            assert all(0 <= v <= 1 for v in metrics[method][how].values())
        assert set(metrics[method]["instance"]) == {"dsb", "f1_iou50", "count_mae"}
        assert 0 <= metrics[method]["instance"]["dsb"] <= 1
    # the scores, by hand from the stages' saved masks and predictions
    ids = (project / "data" / "split" / "test.txt").read_text().split()
    order = pd.read_csv(project / "data" / "ingest" / "meta.csv")["id"].tolist()
    rows = [order.index(i) for i in ids]
    truth = np.load(project / "data" / "masks" / "masks.npy")[rows] > 0
    threshold = metrics["threshold"]
    predicted = {"otsu": np.load(project / "data" / "otsu" / "otsu.npy")[rows] > 0,
                 "unet": np.load(project / "data" / "predict" / "unet_test.npy").astype(np.float32) > threshold}
    per_image = pd.read_csv(project / "plots" / "per_image.csv").set_index(["method", "id"])
    for method, pred in predicted.items():
        both = (truth & pred).sum(axis=(1, 2))
        dice = [2 * b / (t.sum() + p.sum()) if t.any() or p.any() else 1.0 for b, t, p in zip(both, truth, pred)]
        assert per_image.loc[method].loc[ids, "dice"].to_numpy() == pytest.approx(dice, abs=1e-6)
        assert metrics[method]["mean"]["dice"] == pytest.approx(np.mean(dice), abs=1e-6)
    assert not np.array_equal(predicted["otsu"], predicted["unet"])
    with zipfile.ZipFile(project / "data" / "raw" / "stage1_train.zip") as raw:   # one mask PNG per nucleus
        nuclei = {i: sum(name.startswith(f"{i}/masks/") and name.endswith(".png") for name in raw.namelist())
                  for i in ids}
    for method in predicted:
        assert per_image.loc[method].loc[ids, "n_true"].tolist() == [nuclei[i] for i in ids]
    for png in ("training_curves.png", "metrics.png", "gallery.png", "robustness/blur.png", "augmentations/shift.png",
                "robustness/gallery_worst.png"):
        assert (project / "plots" / png).read_bytes()[:4] == b"\x89PNG"
    robust = json.loads((project / "metrics" / "robustness.json").read_text())
    assert set(robust["worst"]) == set(yaml.safe_load((project / "params.yaml").read_text())["robustness"]["degradations"])
    curves = pd.read_csv(project / "plots" / "robustness_curves.csv")   # the plot's table: the metrics' curves
    for row in curves.itertuples():
        expected = robust["curves"][row.degradation][f"{row.severity:g}"][row.method]["dice"]
        assert row.dice == pytest.approx(expected, abs=1e-6)   # written to 6 digits
    assert len(curves) == sum(map(len, robust["curves"].values())) * 2
    shown = json.loads(dvc(project, "plots", "show", "--json").stdout)
    assert "errors" not in shown and "errors" not in shown["data"]["robustness_dice"][0]
    assert len(shown["data"]["robustness_dice"][0]["content"]["data"]["values"]) == len(curves)
    config = json.loads((project / "models" / "config.json").read_text())
    assert config["img_size"] == 32 and config["params"]["encoder_weights"] == "none"
    assert config["params"]["seed"] == yaml.safe_load((project / "params.yaml").read_text())["base"]["seed"]
    assert config["val_overlap"] == yaml.safe_load((project / "params.yaml").read_text())["predict"]["overlap"]
    assert config["encoder_weights_file"] is None   # encoder_weights: none (imagenet: the file and its sha256)
    for model in ("unet.keras", "unet.tflite"):   # both files carry how the model saw its images
        assert embedded_settings(project / "models" / model) == {"tile": 256, "img_size": 32,
                                                                   "normalization": "percentile"}
    assert "Data and pipelines are up to date" in dvc(project, "status").stdout
    shown = dvc(project, "metrics", "show").stdout
    assert "unet.mean.dice" in shown and "otsu.mean.dice" in shown


def test_a_train_param_reruns_only_what_follows_and_the_seed_keeps_the_split(project):
    """train.seed, as any train param, reruns train and the stages after it (one test: each
    retraining costs two minutes of CI), and retrains on the same split."""
    project, _ = project
    split = {path.name: path.read_text() for path in (project / "data" / "split").glob("*.txt")}
    seed = yaml.safe_load((project / "params.yaml").read_text())["base"]["seed"] + 1
    before = json.loads((project / "metrics" / "train.json").read_text())
    set_params(project, **{"train.seed": seed})
    assert set(json.loads(dvc(project, "status", "--json").stdout)) == {"train"}
    assert ran(dvc(project, "repro")) == MODEL_STAGES
    assert json.loads((project / "models" / "config.json").read_text())["params"]["seed"] == seed
    # training is deterministic for a seed (test_train.py): another validation loss means another seed was used
    assert json.loads((project / "metrics" / "train.json").read_text())["best_val_loss"] != before["best_val_loss"]
    assert {path.name: path.read_text() for path in (project / "data" / "split").glob("*.txt")} == split


def test_threshold_reruns_scoring_only(project):
    project, _ = project
    set_params(project, **{"evaluate.threshold": 0.4})
    assert ran(dvc(project, "repro")) == SCORING_STAGES
    assert json.loads((project / "metrics" / "evaluate.json").read_text())["threshold"] == 0.4


def test_int8_export_reruns_export_and_what_follows(project):
    """export.precision reruns export and the stages that run its model; nothing is retrained.
    The model is calibrated on its training windows (tile 256 here). (min_agreement 0: this
    one-epoch 32 px model's probabilities hover near 0.5, where int8's rounding flips pixels;
    the real model's agree at Dice 0.98, README.)"""
    project, _ = project
    float32_size = (project / "models" / "unet.tflite").stat().st_size
    set_params(project, **{"export.precision": "int8", "export.min_agreement": 0.0})
    try:
        assert set(json.loads(dvc(project, "status", "--json").stdout)) == {"export"}
        result = dvc(project, "repro")
        assert ran(result) == MODEL_STAGES - {"train"}
        assert re.search(r"\(int8, [0-9.]+ MB; masks agree at Dice [0-9.]+ on \d+ validation windows\)",
                         result.stdout)
        assert (project / "models" / "unet.tflite").stat().st_size < 0.4 * float32_size
    finally:
        set_params(project, **{"export.precision": "float32", "export.min_agreement": 0.95})   # for the other tests
        dvc(project, "repro")
    assert (project / "models" / "unet.tflite").stat().st_size == float32_size


def test_tile_reruns_the_model_stages_only(project):
    project, _ = project
    windowed = json.loads((project / "models" / "config.json").read_text())
    sizes = pd.read_csv(project / "data" / "ingest" / "meta.csv", index_col="id", dtype={"id": str})
    train_ids = (project / "data" / "split" / "train.txt").read_text().split()
    half_apart = sum(len(windows((sizes.height[i], sizes.width[i]), 256, 128)) for i in train_ids)
    assert windowed["tile"] == 256 and windowed["train_windows"] == half_apart   # windows half a tile apart
    set_params(project, **{"base.tile": 0})
    # export reads base.tile too: int8 calibrates on what the model sees
    assert set(json.loads(dvc(project, "status", "--json").stdout)) == {"train", "export", "predict", "robustness"}
    assert ran(dvc(project, "repro")) == MODEL_STAGES
    whole = json.loads((project / "models" / "config.json").read_text())
    assert whole["tile"] == 0 and whole["train_windows"] == whole["n_train"]   # whole images, one each
    assert embedded_settings(project / "models" / "unet.tflite")["tile"] == 0


def test_corrupt_image_fails_in_one_line_and_keeps_results(project):
    project, _ = project
    metrics = (project / "metrics" / "evaluate.json").read_text()
    raw = project / "data" / "raw" / "stage1_train.zip"
    backup = raw.read_bytes()
    with zipfile.ZipFile(raw) as zin:
        names = zin.namelist()
        contents = {n: zin.read(n) for n in names}
    victim = sorted(n for n in names if "/images/" in n)[1]
    with zipfile.ZipFile(raw, "w") as zout:
        for n in names:
            zout.writestr(n, contents[n][:50] if n == victim else contents[n])
    try:
        result = dvc(project, "repro", check=False)
        assert result.returncode != 0
        errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and f"stage1_train.zip:{victim}: not a readable image" in errors[0]
        assert "Running stage 'ingest'" not in result.stdout      # refused at the door, by fetch
        assert (project / "metrics" / "evaluate.json").read_text() == metrics
        assert (project / "plots" / "gallery.png").exists()
        assert (project / "models" / "unet.keras").exists()       # nothing downstream was touched
    finally:
        raw.write_bytes(backup)
    # the good zip is the one dvc.lock recorded: nothing to redo
    assert "Data and pipelines are up to date" in dvc(project, "status").stdout
    assert ran(dvc(project, "repro")) == set()


def test_a_failing_train_keeps_every_previous_output(project):
    """Train fails once DVC has started it (its windows cut, the encoder being built): every output
    it had, cached (the model) or committed (metrics, plots), is as it was, nothing after it runs,
    and the error is one line. (DVC deletes a stage's non-persist outputs before running it; a
    stage failing after it has written is tests/test_params.py's.)"""
    project, _ = project
    outputs = ["models/unet.keras", "models/config.json", "metrics/train.json", "plots/history.csv",
               "models/unet.tflite", "metrics/evaluate.json"]
    before = {name: (project / name).read_bytes() for name in outputs}
    (project / "junk.h5").write_bytes(b"not an HDF5 file")
    set_params(project, **{"train.encoder_weights": "junk.h5"})
    try:
        result = dvc(project, "repro", check=False)
        assert result.returncode != 0 and ran(result) == {"train"}
        errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and errors[0].startswith("error: junk.h5: not MobileNetV2 no-top weights"), errors
        assert {name: (project / name).read_bytes() for name in outputs} == before
        assert not [p for p in (project / "models").iterdir() if ".train-" in p.name or ".tmp" in p.name]   # no leftovers
    finally:
        set_params(project, **{"train.encoder_weights": "none"})
    assert "Data and pipelines are up to date" in dvc(project, "status").stdout


def git(project, *args):
    subprocess.run(["git", "-c", "user.email=ci@nucseg", "-c", "user.name=ci", *args], cwd=project, check=True,
                   capture_output=True)


def test_remote_push_then_pull_in_a_fresh_clone(project, tmp_path):
    """`dvc push` to a directory remote; a fresh clone pulls the model and results, retrains nothing."""
    project, _ = project
    dvc(project, "remote", "add", "-d", "store", str(tmp_path / "remote"))
    git(project, "add", "-A")
    git(project, "commit", "-qm", "pipeline")
    dvc(project, "push")

    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(project), str(clone))
    assert not (clone / "models" / "unet.keras").exists()
    assert not (clone / "data" / "raw").exists()           # git-ignored: never committed
    dvc(clone, "pull")
    assert (clone / "data" / "raw" / "stage1_train.zip").read_bytes() == \
        (project / "data" / "raw" / "stage1_train.zip").read_bytes()   # the raw data travels too
    assert (clone / "models" / "unet.keras").read_bytes() == (project / "models" / "unet.keras").read_bytes()
    assert (clone / "metrics" / "evaluate.json").read_text() == (project / "metrics" / "evaluate.json").read_text()
    # everything matches dvc.lock: nothing at all reruns
    assert "Data and pipelines are up to date" in dvc(clone, "status").stdout
    assert ran(dvc(clone, "repro")) == set()


def test_a_queued_sweep_runs_in_two_workers(project):
    """`dvc exp run --queue -S` twice, `dvc queue start -j 2`: each experiment runs in its own copy
    of the repository, reruns only what its param affects, and `dvc exp show` has both results."""
    import time

    project, _ = project
    git(project, "add", "-A")
    git(project, "commit", "-qm", "before the sweep", "--allow-empty")   # queued experiments start from a commit
    for threshold in (0.3, 0.7):
        dvc(project, "exp", "run", "--queue", "-n", f"t{threshold}", "-S", f"evaluate.threshold={threshold}")
    dvc(project, "queue", "start", "-j", "2")
    # `dvc queue logs -f` refuses a task not yet started, so poll; the limit only guards against a
    # hung worker (each task takes a minute or two here) and says so when it is reached
    limit, started = 1800, time.monotonic()
    while re.search(r"\b(Queued|Running)\b", status := dvc(project, "queue", "status").stdout):
        assert time.monotonic() - started < limit, f"the queue still runs after {limit} s:\n{status}"
        time.sleep(3)
    assert len(re.findall(r"\bSuccess\b", status)) == 2, status
    for threshold in (0.3, 0.7):
        assert ran(dvc(project, "queue", "logs", f"t{threshold}")) == SCORING_STAGES
    shown = json.loads(dvc(project, "exp", "show", "--json").stdout)
    runs = {rev["name"]: rev["data"] for commit in shown for exp in commit.get("experiments") or []
            for rev in exp["revs"]}
    for threshold in (0.3, 0.7):
        assert runs[f"t{threshold}"]["metrics"]["metrics/evaluate.json"]["data"]["threshold"] == threshold
    assert json.loads((project / "metrics" / "evaluate.json").read_text())["threshold"] not in (0.3, 0.7)   # workspace as it was
