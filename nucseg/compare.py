"""Two runs' per-image scores, image by image: is a difference in `dvc metrics diff` real?

A run is a per-image CSV (`plots/per_image.csv` or `plots/robustness_per_image.csv` of the
pipeline, `<name>.per_image.csv` of `nucseg evaluate --out`) or a Git revision or DVC experiment
name, whose committed `plots/per_image.csv` and `plots/robustness_per_image.csv` are read. The
same images scored by both runs are paired: the mean difference, its 95% paired bootstrap
interval (`nucseg.robustness.paired_interval`) and on how many images each run scores higher.
"""
from __future__ import annotations

import io
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd

from .io import NucsegError
from .robustness import paired_interval

EVALUATE_CSV = "plots/per_image.csv"
ROBUSTNESS_CSV = "plots/robustness_per_image.csv"
EVALUATE_METRICS = ("dice", "native_dice", "dsb", "f1_iou50")   # those present are compared
ROBUSTNESS_METRICS = ("dice", "dsb")


def _git(*args, cwd="."):
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)


def resolve(rev, cwd="."):
    """The commit of a Git revision, or of a DVC experiment by name (its ref refs/exps/../../<name>)."""
    found = _git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", cwd=cwd)
    if found.returncode == 0:
        return found.stdout.strip()
    refs = _git("for-each-ref", "--format=%(refname) %(objectname)", "refs/exps", cwd=cwd).stdout.split("\n")
    named = [line.split()[1] for line in refs if line and len(line.split()[0].split("/")) == 5
             and line.split()[0].rsplit("/", 1)[1] == rev]
    if len(named) > 1:
        raise NucsegError(f"{rev}: {len(named)} DVC experiments have this name; give one's commit "
                          "(dvc exp show --sha)")
    if not named:
        raise NucsegError(f"{rev}: neither a per-image CSV file nor a Git revision or DVC experiment here; "
                          "give a file, a commit or branch, or an experiment name from dvc exp show")
    return named[0]


def read_run(run, cwd="."):
    """{"evaluate": DataFrame or None, "robustness": DataFrame or None} of one run (file or revision)."""
    path = Path(run)
    if path.is_file():
        try:
            table = pd.read_csv(path)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise NucsegError(f"{run}: not a per-image CSV ({' '.join(str(exc).split())}); give a per_image.csv "
                              "written by nucseg") from None
        kind = "robustness" if {"degradation", "severity"} <= set(table.columns) else "evaluate"
        _check_columns(table, kind, run)
        return {"evaluate": None, "robustness": None, kind: table}
    commit = resolve(run, cwd)
    tables = {}
    for kind, name in (("evaluate", EVALUATE_CSV), ("robustness", ROBUSTNESS_CSV)):
        shown = _git("show", f"{commit}:{name}", cwd=cwd)
        tables[kind] = None
        if shown.returncode == 0:
            tables[kind] = pd.read_csv(io.StringIO(shown.stdout))
            _check_columns(tables[kind], kind, f"{run}:{name}")
    if all(t is None for t in tables.values()):
        raise NucsegError(f"{run}: has neither {EVALUATE_CSV} nor {ROBUSTNESS_CSV} committed; "
                          "compare runs of a pipeline that keeps per-image scores (dvc exp run)")
    return tables


def _check_columns(table, kind, where):
    need = {"id", "method", "dice"} | ({"degradation", "severity"} if kind == "robustness" else set())
    if not need <= set(table.columns):
        raise NucsegError(f"{where}: no {', '.join(sorted(need - set(table.columns)))} column; give a per-image "
                          "CSV written by nucseg (plots/per_image.csv, plots/robustness_per_image.csv or "
                          "nucseg evaluate --out's <name>.per_image.csv)")


def paired(a, b, keys, metric, seed=0):
    """Rows of `a` and `b` matched on `keys`: mean of each, of b - a, its 95% interval, and on how
    many images b (a) scores higher."""
    both = a[keys + [metric]].merge(b[keys + [metric]], on=keys, suffixes=("_a", "_b")).dropna()
    x, y = both[f"{metric}_a"].to_numpy(np.float64), both[f"{metric}_b"].to_numpy(np.float64)
    low, high = paired_interval(y, x, seed) if len(both) else (np.nan, np.nan)
    return {"n": len(both), "a": float(x.mean()) if len(both) else np.nan, "b": float(y.mean()) if len(both) else np.nan,
            "difference": float((y - x).mean()) if len(both) else np.nan, "ci95_low": low, "ci95_high": high,
            "b_higher": int(np.sum(y > x)), "a_higher": int(np.sum(x > y))}


def _same_images(a, b, what):
    ids_a, ids_b = set(a["id"]), set(b["id"])
    if not ids_a & ids_b:
        raise NucsegError(f"the two runs' {what} scores share no image; compare runs scored on the same "
                          "images (same split and test set)")
    return len(ids_a ^ ids_b)


def compare(run_a, run_b, method="unet", seed=0, cwd="."):
    """A DataFrame, one row per compared score: what (evaluate or degradation), severity, metric,
    then `paired`'s columns."""
    a, b = read_run(run_a, cwd), read_run(run_b, cwd)
    rows = []
    for kind in ("evaluate", "robustness"):
        if a[kind] is None or b[kind] is None:
            continue
        ta, tb = (t[t["method"] == method] for t in (a[kind], b[kind]))
        if ta.empty or tb.empty:
            raise NucsegError(f"{run_a if ta.empty else run_b}: no {method} rows in its {kind} scores; "
                              f"use --method {'otsu' if method == 'unet' else 'unet'}")
        _same_images(ta, tb, kind)
        if kind == "evaluate":
            for metric in (m for m in EVALUATE_METRICS if m in ta and m in tb):
                rows.append({"what": "test images", "severity": np.nan, "metric": metric,
                             **paired(ta, tb, ["id"], metric, seed)})
            continue
        for (name, severity), _ in ta.groupby(["degradation", "severity"], sort=False):
            sa = ta[(ta["degradation"] == name) & (ta["severity"] == severity)]
            sb = tb[(tb["degradation"] == name) & np.isclose(tb["severity"], severity)]
            for metric in (m for m in ROBUSTNESS_METRICS if m in sa and m in sb):
                if len(sb):
                    rows.append({"what": name, "severity": severity, "metric": metric,
                                 **paired(sa, sb, ["id"], metric, seed)})
    if not rows:
        raise NucsegError(f"{run_a} and {run_b} have no kind of per-image score in common (one has test scores, "
                          "the other robustness scores); give two of the same kind")
    return pd.DataFrame(rows)


def worst(table):
    """The test-image rows and, per degradation, its clean and worst severity's Dice (the
    printed summary; the full table goes to --out)."""
    keep = table["what"] == "test images"
    for name, rows in table[table["what"] != "test images"].groupby("what", sort=False):
        dice = rows[rows["metric"] == "dice"]
        keep |= table.index.isin(dice.index[[0, -1]] if len(dice) > 1 else dice.index)
    return table[keep]
