import re
import subprocess
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from nucseg.cli import main
from nucseg.study import COMMON, STUDIES, exp_name, queue_commands, study_table


def test_names_are_valid_and_distinct():
    for study, settings in STUDIES.items():
        names = [exp_name(study, label) for label in settings]
        assert len(set(names)) == len(names)
        assert all(re.fullmatch(r"[A-Za-z0-9_-]+", n) for n in names)   # valid git ref names
    assert exp_name("augment", "brightness -.1..+.8") == "study-augment-brightness-p1-to-p8"


def test_queue_commands_set_each_setting_over_the_common_params():
    commands = queue_commands("pos_weight")
    assert len(commands) == 4
    first = commands[0]
    assert first[:7] == ["dvc", "exp", "run", "--queue", "-n", "study-pos_weight-1e-4", "evaluate"]
    sets = [first[i + 1] for i, a in enumerate(first) if a == "-S"]
    assert "train.pos_weight=0.0001" in sets and f"train.epochs={COMMON['train.epochs']}" in sets
    augment_none = queue_commands("augment")[0]
    assert "train.augment.brightness=[0.0,0.0]" in augment_none and "train.augment.flip=false" in augment_none
    with pytest.raises(KeyError, match="unknown study"):
        queue_commands("optimizer")


def test_table_from_exp_show_rows():
    rows = [
        {"Experiment": "study-loss-bce", "metrics/evaluate.json:unet.mean.dice": 0.8,
         "metrics/evaluate.json:unet.mean.precision": 0.7, "metrics/evaluate.json:unet.mean.recall": 0.9,
         "metrics/evaluate.json:otsu.mean.dice": 0.75, "metrics/evaluate.json:unet.instance.dsb": 0.4},
        {"Experiment": "study-loss-dice", "State": "Success", "unet.mean.dice": 0.85, "unet.mean.precision": 0.8,
         "unet.mean.recall": 0.88, "otsu.mean.dice": 0.75, "unet.instance.dsb": 0.45},
        {"Experiment": "study-loss-bce-dice", "State": "Queued"},   # queued: left out
        # running: exp_show gives it the baseline's metrics, which must not pass for its own
        {"Experiment": "study-loss-bce-dice", "State": "Running", "unet.mean.dice": 0.92,
         "unet.mean.precision": 0.9, "unet.mean.recall": 0.9, "otsu.mean.dice": 0.75, "unet.instance.dsb": 0.5},
        {"Experiment": "something-else", "unet.mean.dice": 0.1},
        # finished without a Dice (its evaluate.json lacks it): exp_show gives the text 'None'; left out
        {"Experiment": "study-loss-bce-dice", "State": "Success", "unet.mean.dice": "None", "otsu.mean.dice": 0.75},
    ]
    table = study_table("loss", rows)
    assert table["setting"].tolist() == ["bce", "dice"]
    assert table["dice"].tolist() == [0.8, 0.85] and np.allclose(table["otsu_dice"], 0.75)


def _row(name, dice, **more):
    return {"Experiment": name, "State": "Success", "unet.mean.dice": dice, "unet.mean.precision": 0.8,
            "unet.mean.recall": 0.9, "otsu.mean.dice": 0.75, "unet.instance.dsb": 0.45, **more}


def test_a_setting_run_again_on_a_later_commit_reports_its_latest_run():
    # as dvc.api.exp_show lists them: the workspace, then each commit newest first, its experiments after it
    rows = [{"Experiment": None, "rev": "workspace"}, {"Experiment": None, "rev": "main"},
            _row("study-loss-bce", 0.877), {"Experiment": None, "rev": "a1b2c3d"}, _row("study-loss-bce", 0.85),
            _row("study-loss-dice", 0.81)]
    table = study_table("loss", rows)
    assert dict(zip(table["setting"], table["dice"])) == {"bce": 0.877, "dice": 0.81}


def test_report_writes_the_table_and_the_chart(tmp_path, monkeypatch, capsys):
    import dvc.api

    monkeypatch.setattr(dvc.api, "exp_show", lambda num: [_row("study-loss-bce", 0.8), _row("study-loss-dice", 0.85)])
    assert main(["study", "report", "loss", "--out", str(tmp_path)]) == 0
    written = pd.read_csv(tmp_path / "loss.csv")
    assert written["setting"].tolist() == ["bce", "dice"] and written["dice"].tolist() == [0.8, 0.85]
    assert (tmp_path / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert "0.8500" in capsys.readouterr().out


def test_report_outside_a_dvc_repository_or_before_any_run_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)   # not a Git or DVC repository
    assert main(["study", "report", "loss", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {tmp_path}: no DVC experiments to read") and "\n" not in err
    import dvc.api

    monkeypatch.setattr(dvc.api, "exp_show", lambda num: [])
    assert main(["study", "report", "loss", "--out", str(tmp_path)]) == 1
    assert capsys.readouterr().err.strip() == ("error: no finished experiment of study 'loss' yet: run 'nucseg study "
                                               "queue loss' and 'dvc queue start' first")


def test_queue_stops_at_the_first_failure_and_says_how_far_it_got(monkeypatch, capsys):
    calls = []

    def run(cmd):
        calls.append(cmd)
        return SimpleNamespace(returncode=0 if len(calls) < 2 else 255)

    monkeypatch.setattr(subprocess, "run", run)
    assert main(["study", "queue", "loss"]) == 1
    assert len(calls) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("error: queuing study-loss-dice failed (dvc exit status 255, its message above); 1 of 3 settings "
                   "queued ('dvc queue status'; 'dvc queue remove --queued' to start again)")

