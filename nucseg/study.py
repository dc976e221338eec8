"""The original notebook's studies (loss, class weight, augmentation) as DVC experiment sweeps.

    nucseg study queue loss        # one queued `dvc exp run` per setting
    dvc queue start                # run them (dvc queue status / dvc queue logs to follow)
    nucseg study report loss       # bar chart and table in plots/studies/

Every run of a study shares `COMMON`: fewer epochs than the default, a single training phase
and no TTA, so that a study costs minutes per setting, not the default's 15 to 30 minutes; its
numbers compare settings with each other, not with the default model.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pandas as pd

from .io import NucsegError

NO_AUGMENT = {"train.augment.brightness": [0.0, 0.0], "train.augment.contrast": [1.0, 1.0],
              "train.augment.shift": 0.0, "train.augment.blur_sigma": 0.0, "train.augment.flip": False,
              "train.augment.degrade": 0.0}
COMMON = {"train.epochs": 10, "train.finetune_epochs": 0, "train.patience": 15, "predict.tta": False}


def _augment(**changes):
    return {**NO_AUGMENT, **{f"train.augment.{k}": v for k, v in changes.items()}}


STUDIES = {
    "loss": {name: {"train.loss": name} for name in ("bce", "dice", "bce_dice")},
    # the notebook's background:nucleus weights 10000:1, 1:1, 1:1e4, 1:1e6 as nucleus weights
    "pos_weight": {label: {"train.pos_weight": w} for label, w in
                   (("1e-4", 1e-4), ("1", 1.0), ("1e4", 1e4), ("1e6", 1e6))},
    "augment": {
        "none": _augment(),
        "brightness -.1..+.8": _augment(brightness=[-0.1, 0.8]),
        "brightness -.1..+.5": _augment(brightness=[-0.1, 0.5]),
        "brightness -.1..+.2": _augment(brightness=[-0.1, 0.2]),
        "contrast 1": _augment(contrast=[1.0, 1.0]),
        "contrast .6": _augment(contrast=[0.6, 1.0]),
        "contrast .2": _augment(contrast=[0.2, 1.0]),
        "blur 2": _augment(blur_sigma=2.0),
        "blur 4": _augment(blur_sigma=4.0),
        "blur 6": _augment(blur_sigma=6.0),
        "shift .001": _augment(shift=0.001),
        "shift .005": _augment(shift=0.005),
        "combined": _augment(brightness=[-0.1, 0.2], contrast=[0.6, 1.0], blur_sigma=2.0, shift=0.005, flip=True),
    },
}


def exp_name(study, label):
    """A DVC experiment name for one setting: letters, digits and dashes only."""
    safe = "".join(c if c.isalnum() else "-" for c in label.replace("..", "-to-").replace(".", "p"))
    return f"study-{study}-{'-'.join(filter(None, safe.split('-')))}"


def _value(v):
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, list):
        return "[" + ",".join(str(x) for x in v) + "]"
    return str(v)


def queue_commands(study, common=COMMON):
    """The `dvc exp run --queue` command lines of a study, one per setting."""
    if study not in STUDIES:
        raise KeyError(f"unknown study {study!r}: one of {', '.join(STUDIES)}")
    commands = []
    for label, settings in STUDIES[study].items():
        cmd = ["dvc", "exp", "run", "--queue", "-n", exp_name(study, label), "evaluate"]
        for key, value in {**common, **settings}.items():
            cmd += ["-S", f"{key}={_value(value)}"]
        commands.append(cmd)
    return commands


def queue(study, dry_run=False):
    """Queue every setting of `study` (print the commands only with `dry_run`)."""
    commands = queue_commands(study)
    for done, cmd in enumerate(commands):
        print(" ".join(cmd))
        if dry_run:
            continue
        try:
            status = subprocess.run(cmd).returncode
        except FileNotFoundError:
            raise NucsegError("dvc: not found; install the project ('pip install -e .') and run it in its "
                              "environment") from None
        if status:
            raise NucsegError(f"queuing {exp_name(study, list(STUDIES[study])[done])} failed (dvc exit status "
                              f"{status}, its message above); {done} of {len(commands)} settings queued "
                              "('dvc queue status'; 'dvc queue remove --queued' to start again)")


def _metric(row, key):
    """A metric from a `dvc.api.exp_show` row, whether or not its key is prefixed by the file;
    NaN where it has none (exp_show gives the text 'None' for a metric missing from a row's file)."""
    for k, v in row.items():
        if k == key or k.endswith(":" + key):
            try:
                return float(v)
            except (TypeError, ValueError):
                return np.nan
    return np.nan


def study_table(study, rows):
    """Test metrics of each finished setting of `study`, from `dvc.api.exp_show()` rows.

    A queued, running or failed experiment's row carries its baseline's metrics, not its own:
    only rows without a state (run in the workspace) or with state "Success" count. A setting
    run again on a later commit counts once, with its latest run: rows come newest commit first."""
    by_name = {}
    for r in rows:
        if r.get("Experiment") and r.get("State") in (None, "Success"):
            by_name.setdefault(r["Experiment"], r)
    records = []
    for label in STUDIES[study]:
        row = by_name.get(exp_name(study, label))
        if row is None or np.isnan(_metric(row, "unet.mean.dice")):
            continue
        records.append({"setting": label,
                        **{m: _metric(row, f"unet.mean.{m}") for m in ("precision", "recall", "dice")},
                        "otsu_dice": _metric(row, "otsu.mean.dice"),
                        "dsb": _metric(row, "unet.instance.dsb")})
    return pd.DataFrame(records, columns=["setting", "precision", "recall", "dice", "otsu_dice", "dsb"])


def report(study, out_dir="plots/studies"):
    """Write ``<out_dir>/<study>.png`` (bars) and ``<study>.csv``; return the table."""
    import dvc.api
    from dvc.exceptions import DvcException

    from .io import all_or_nothing, save_csv
    from .plots import study_bars

    # experiments hang off the commit they were queued from: look back over recent commits too
    try:
        rows = dvc.api.exp_show(num=50)
    except DvcException as exc:
        raise NucsegError(f"{Path.cwd()}: no DVC experiments to read ({exc}); run 'nucseg study report' in the "
                          "nucseg checkout") from None
    table = study_table(study, rows)
    if table.empty:
        raise NucsegError(f"no finished experiment of study {study!r} yet: run 'nucseg study queue {study}' "
                          "and 'dvc queue start' first")
    with all_or_nothing():   # the table and its plot land together
        save_csv(f"{out_dir}/{study}.csv", table)
        study_bars(table, f"{out_dir}/{study}.png", title=f"study: {study} (test split)")
    return table
