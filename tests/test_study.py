import re

import numpy as np
import pytest

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
    ]
    table = study_table("loss", rows)
    assert table["setting"].tolist() == ["bce", "dice"]
    assert table["dice"].tolist() == [0.8, 0.85] and np.allclose(table["otsu_dice"], 0.75)
