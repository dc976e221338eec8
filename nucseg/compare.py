"""Two runs' per-image scores, image by image: is a difference in `dvc metrics diff` real?

A run is a per-image CSV (`plots/per_image.csv` or `plots/robustness_per_image.csv` of the
pipeline, `<name>.per_image.csv` of `nucseg evaluate --out`) or a Git revision or DVC experiment
name, whose committed `plots/per_image.csv` and `plots/robustness_per_image.csv` are read
(`read_run`, the only part that touches files and Git). The images both runs scored are paired
(`compare_tables`): the mean difference, its 95% paired bootstrap interval
(`nucseg.robustness.paired_interval`) and on how many images each run scores higher.
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
# dice: at the model's input size (the pipeline's own); the rest at native resolution
EVALUATE_METRICS = ("dice", "native_dice", "dsb", "f1_iou50")
ROBUSTNESS_METRICS = ("dice", "dsb")
CLEAN = "no damage"
FIX = "give a per-image CSV written by nucseg (plots/per_image.csv, plots/robustness_per_image.csv or " \
      "nucseg evaluate --out's <name>.per_image.csv)"


# ---------------------------------------------------------------- reading runs (files and Git)

def _git(args, cwd):
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)


def resolve(rev, cwd="."):
    """The commit a Git revision or a DVC experiment name stands for.

    Parameters
    ----------
    rev : str
        A commit, branch, tag or other Git revision, or the name of a DVC experiment (its ref
        ``refs/exps/<2 hex>/<38 hex>/<name>``, the hex digits being its baseline commit). A name
        used by experiments on several baselines means the one on HEAD, as in DVC.
    cwd : path inside the repository

    Returns
    -------
    commit : str, and a note (str, or None) when the name was ambiguous
    """
    if _git(["rev-parse", "--git-dir"], cwd).returncode:
        raise NucsegError(f"{rev}: not a file, and {Path(cwd).resolve()} is not in a Git repository; give two "
                          "per-image CSV files, or run nucseg compare inside the project")
    refs = _git(["for-each-ref", "--format=%(refname) %(objectname)", "refs/exps"], cwd).stdout.split()
    experiments = [(ref, commit) for ref, commit in zip(refs[::2], refs[1::2])
                   if len(ref.split("/")) == 5 and ref.rsplit("/", 1)[1] == rev]
    found = _git(["rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], cwd)
    if found.returncode == 0:
        note = f"{rev}: the Git revision; for the experiment of that name give {experiments[0][0]}" \
            if experiments else None
        return found.stdout.strip(), note
    if len(experiments) > 1:
        head = _git(["rev-parse", "HEAD"], cwd).stdout.strip()
        on_head = [(ref, commit) for ref, commit in experiments if "".join(ref.split("/")[2:4]) == head]
        if len(on_head) != 1:
            raise NucsegError(f"{rev}: {len(experiments)} DVC experiments have this name, none on HEAD; give one "
                              f"of {', '.join(ref for ref, _ in experiments)}")
        experiments = on_head
    if not experiments:
        what = "no such file" if rev.lower().endswith(".csv") else \
            "neither a per-image CSV file nor a Git revision or DVC experiment here"
        raise NucsegError(f"{rev}: {what}; give a file, a commit or branch, or an experiment name from "
                          "dvc exp show")
    return experiments[0][1], None


def stale_outputs(lock, params, dvc_yaml, files=None):
    """The outputs in a commit that an earlier run of their stage left: the stage ran before a
    param of it in `params.yaml`, a file of it (`files`: path -> bytes as Git holds them, e.g.
    its code) or another stage's output it reads changed, or reads an output of a stage that is
    itself out of date. `dvc exp run -S ... evaluate` leaves robustness so: it stops before it.

    `lock`, `params`, `dvc_yaml`: the commit's dvc.lock, params.yaml and dvc.yaml as read (YAML
    1.2, as DVC reads them: `_stale_in`). The stages are those `dvc.yaml` defines (`dvc.lock`
    keeps a removed or renamed stage's entry), a frozen one never out of date.

    Returns
    -------
    dict: output path -> (its stage, what changed after that stage ran)
    """
    import hashlib

    defined = dvc_yaml.get("stages", {})
    stages = {name: stage for name, stage in lock.get("stages", {}).items()
              if name.split("@")[0] in defined and not defined[name.split("@")[0]].get("frozen")}
    files = files or {}

    def param(key):
        node = params
        for name in key.split("."):
            if not isinstance(node, dict) or name not in node:
                return None
            node = node[name]
        return node

    made_by = {out["path"]: (name, out.get("md5")) for name, stage in stages.items() for out in stage.get("outs", [])}

    def producer(path):   # the stage making `path`, or the output folder holding it (md5 not comparable)
        if path in made_by:
            return made_by[path]
        inside = [out for out in made_by if path.startswith(out.rstrip("/") + "/")]
        return (made_by[inside[0]][0], None) if inside else (None, None)

    stale = {}
    for _ in stages:   # until nothing more changes: staleness passes down the chain
        for name, stage in stages.items():
            if name in stale:
                continue
            why = [key for key, value in stage.get("params", {}).get("params.yaml", {}).items() if param(key) != value]
            for dep in stage.get("deps", []):
                maker, md5 = producer(dep["path"])
                if maker in stale:
                    why.append(f"stage {maker}, out of date itself")
                elif maker and md5 and dep.get("md5") != md5:
                    why.append(dep["path"])
                elif not maker and dep["path"] in files and dep.get("hash") == "md5" \
                        and hashlib.md5(files[dep["path"]]).hexdigest() != dep.get("md5"):
                    why.append(dep["path"])
            if why:
                stale[name] = why[0]
    return {out["path"]: (name, stale[name]) for name in stale for out in stages[name].get("outs", [])}


def _git_files(commit, paths, cwd):
    """{path: bytes} of the `paths` that Git holds at `commit` (one `git cat-file --batch`)."""
    query = "".join(f"{commit}:{path}\n" for path in paths)
    out = subprocess.run(["git", "cat-file", "--batch"], cwd=cwd, input=query.encode(), capture_output=True).stdout
    files, at = {}, 0
    for path in paths:
        end = out.find(b"\n", at)
        if end < 0:   # git stopped short: the rest unknown, not checked
            break
        header = out[at:end].split()
        at = end + 1
        if len(header) == 3 and header[1] == b"blob":
            size = int(header[2])
            files[path] = out[at:at + size]
            at += size + 1
    return files


def _stale_in(commit, cwd):
    """`stale_outputs` of a commit (none where it has no dvc.lock, params.yaml or dvc.yaml)."""
    texts = [_git(["show", f"{commit}:{name}"], cwd) for name in ("dvc.lock", "params.yaml", "dvc.yaml")]
    if any(t.returncode for t in texts):
        return {}
    from ruamel.yaml import YAML, YAMLError

    try:   # YAML 1.2, as DVC reads and writes it: 1e-05 is a number (YAML 1.1 would read text)
        lock, params, dvc_yaml = (YAML(typ="safe").load(t.stdout) or {} for t in texts)
        deps = sorted({dep["path"] for stage in lock.get("stages", {}).values() for dep in stage.get("deps", [])})
        return stale_outputs(lock, params, dvc_yaml, files=_git_files(commit, deps, cwd))
    except (YAMLError, AttributeError, KeyError, TypeError):   # files DVC itself could not read: not judged
        return {}


def _read_csv(source, where):
    try:
        return pd.read_csv(source, dtype={"id": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise NucsegError(f"{where}: not a per-image CSV ({' '.join(str(exc).split())}); {FIX}") from None


def read_run(run, cwd="."):
    """A run's per-image scores.

    Parameters
    ----------
    run : str
        A per-image CSV file (relative to `cwd`), or a revision or experiment name (`resolve`).
    cwd : path

    Returns
    -------
    tables : dict with "evaluate" and "robustness", each a DataFrame (`check_scores`) or None
    notes : list of str
    """
    path = Path(cwd) / run
    if path.is_file():
        table = _read_csv(path, run)
        kind = "robustness" if "degradation" in table.columns else "evaluate"
        return {"evaluate": None, "robustness": None, kind: check_scores(table, kind, run)}, []
    commit, note = resolve(run, cwd)
    notes = [note] if note else []
    stale = _stale_in(commit, cwd)
    tables = {}
    for kind, name in (("evaluate", EVALUATE_CSV), ("robustness", ROBUSTNESS_CSV)):
        shown = _git(["show", f"{commit}:{name}"], cwd)
        where = f"{run}:{name}"
        tables[kind] = check_scores(_read_csv(io.StringIO(shown.stdout), where), kind, where) \
            if shown.returncode == 0 else None
        if tables[kind] is not None and name in stale:
            stage, why = stale[name]
            notes.append(f"{run}: {name} is from an earlier run of the {stage} stage ({why} changed after it; an "
                         "experiment run up to another stage?): not compared")
            tables[kind] = None
    if all(t is None for t in tables.values()):
        raise NucsegError(f"{run}: has no up-to-date {EVALUATE_CSV} or {ROBUSTNESS_CSV} committed"
                          + (f" ({'; '.join(notes)})" if notes else "")
                          + "; compare runs of a pipeline that keeps per-image scores (dvc exp run)")
    return tables, notes


# ---------------------------------------------------------------- pairing (pure)

def check_scores(table, kind, where="scores"):
    """Validate one per-image table and give it the pipeline's column names.

    A test-image table with `f1` and without `native_dice` is `nucseg evaluate --out`'s, which
    scores at native resolution only: its `dice` becomes `native_dice` (and `f1`, `f1_iou50`), so
    that it pairs with the pipeline's native scores and never with its model-resolution Dice. The
    pipeline's own table had no `native_dice` either before that column came (9751494): its
    `dice` is at the model's resolution and stays `dice`.

    Returns
    -------
    DataFrame with str ids, numeric scores (and severities), one row per image and method
    (and degradation, severity).
    """
    keys = ["id", "method"] + (["degradation", "severity"] if kind == "robustness" else [])
    missing = sorted(set(keys + ["dice"]) - set(table.columns))
    if missing:
        raise NucsegError(f"{where}: no {', '.join(missing)} column; {FIX}")
    table = table.copy()
    metrics = ROBUSTNESS_METRICS if kind == "robustness" else EVALUATE_METRICS + ("f1",)
    for column in [c for c in metrics if c in table.columns] + (["severity"] if kind == "robustness" else []):
        values = pd.to_numeric(table[column], errors="coerce")
        bad = values.isna() & table[column].notna()
        if bad.any():
            row = int(np.argmax(bad.to_numpy()))
            raise NucsegError(f"{where}: column {column} holds a non-number ({table[column].iloc[row]!r}, data row "
                              f"{row + 1}); {FIX}")
        table[column] = values
    if kind == "evaluate" and "f1" in table.columns and "native_dice" not in table.columns:
        table = table.drop(columns=["f1_iou50"] if "f1_iou50" in table.columns else [])
        table = table.rename(columns={"dice": "native_dice", "f1": "f1_iou50"})
    repeated = table.duplicated(keys, keep=False)
    if repeated.any():
        first = table[repeated].iloc[0]
        raise NucsegError(f"{where}: image {first['id']} appears {int(repeated.sum())} times for "
                          f"{', '.join(str(first[k]) for k in keys[1:])}; keep one row per image")
    return table


def paired(a, b, metric, seed=0):
    """Pair two runs' scores of one metric on the images both scored (a value each).

    Parameters
    ----------
    a, b : DataFrame with columns id and `metric`
    metric : str
    seed : int, of the bootstrap

    Returns
    -------
    dict: n (images with a score in both), means a and b, difference (b - a), ci95_low and
    ci95_high (its 95% paired bootstrap interval), b_higher and a_higher (image counts); None
    when no image has the score in both runs.
    """
    both = a[["id", metric]].merge(b[["id", metric]], on="id", suffixes=("_a", "_b")).dropna()
    if both.empty:
        return None
    x, y = both[f"{metric}_a"].to_numpy(np.float64), both[f"{metric}_b"].to_numpy(np.float64)
    low, high = paired_interval(y, x, seed)
    return {"n": len(both), "a": float(x.mean()), "b": float(y.mean()), "difference": float((y - x).mean()),
            "ci95_low": low, "ci95_high": high, "b_higher": int(np.sum(y > x)), "a_higher": int(np.sum(x > y))}


def _image_sets(a, b, what, common):
    ids_a, ids_b = set(a["id"]), set(b["id"])
    shared = len(ids_a & ids_b)
    if ids_a == ids_b:
        return []
    message = f"{what}: a scored {len(ids_a)} images, b {len(ids_b)}, {shared} of them both"
    if not common or not shared:
        raise NucsegError(f"{message}; compare runs on the same images (same base.seed and split)"
                          + (", or pass --common to pair the shared ones" if shared and not common else ""))
    return [f"{message}: only those paired (--common)"]


def compare_tables(a, b, method="unet", seed=0, common=False):
    """Pair two runs' per-image tables (as `read_run` gives them).

    Parameters
    ----------
    a, b : dict with "evaluate" and "robustness" DataFrames (or None)
    method : "unet" or "otsu", whose rows are compared
    seed : int, of the bootstrap
    common : bool
        Pair the images both runs scored even when their image sets differ (else refused).

    Returns
    -------
    table : DataFrame, one row per score: what ("test images" or a degradation), severity,
        metric, then `paired`'s columns
    notes : list of str (images or severities that only one run has)
    """
    rows, notes = [], []
    for kind in ("evaluate", "robustness"):
        if a[kind] is None or b[kind] is None:
            continue
        ta, tb = (t[t["method"] == method] for t in (a[kind], b[kind]))
        if ta.empty or tb.empty:
            raise NucsegError(f"{'a' if ta.empty else 'b'} has no {method} rows in its {kind} scores; "
                              f"use --method {'otsu' if method == 'unet' else 'unet'}")
        notes += _image_sets(ta, tb, "test images" if kind == "evaluate" else "degraded images", common)
        if kind == "evaluate":
            groups = [("test images", np.nan, ta, tb)]
        else:
            tb = tb.assign(severity=[_match(s, ta["severity"].unique()) for s in tb["severity"]])
            levels_a = list(dict.fromkeys(zip(ta["degradation"], ta["severity"])))
            levels_b = set(zip(tb["degradation"], tb["severity"]))
            alone = [level for level in levels_a if level not in levels_b] + \
                sorted(level for level in levels_b if level not in set(levels_a))
            if alone:
                notes.append("only one run has " + ", ".join(f"{name} {severity:g}" for name, severity in alone)
                             + ": not compared")
            groups = [(name, severity, ta[(ta["degradation"] == name) & (ta["severity"] == severity)],
                       tb[(tb["degradation"] == name) & (tb["severity"] == severity)])
                      for name, severity in levels_a if (name, severity) in levels_b]
        metrics = EVALUATE_METRICS if kind == "evaluate" else ROBUSTNESS_METRICS
        for what, severity, ga, gb in groups:
            for metric in (m for m in metrics if m in ga.columns and m in gb.columns):
                scores = paired(ga, gb, metric, seed)
                if scores:
                    rows.append({"what": what, "severity": severity, "metric": metric, **scores})
    if not rows:
        raise NucsegError("the two runs have no score for the same images (one has test-image scores, the other "
                          "robustness scores, or no image has a score in both); give two runs of the same kind")
    return pd.DataFrame(rows), notes


def _match(value, levels):
    """A severity written by another run (float text) as this run's own level, when equal."""
    close = [level for level in levels if np.isclose(level, value)]
    return close[0] if close else value


def summary(table):
    """The printed rows: every test-image score, the undamaged images' Dice once, and each
    degradation's Dice at its worst severity (the last of its rows, as the robustness stage
    writes them from no damage to worst)."""
    tests = table[table["what"] == "test images"]
    dice = table[(table["what"] != "test images") & (table["metric"] == "dice")]
    if dice.empty:
        return tests
    clean = dice.iloc[[0]].assign(what=CLEAN, severity=np.nan)
    damaged = dice.groupby("what", sort=False).filter(lambda rows: len(rows) > 1)
    return pd.concat([tests, clean, damaged.groupby("what", sort=False).tail(1)])


def compare(run_a, run_b, method="unet", seed=0, common=False, cwd="."):
    """`compare_tables` of two runs given as files, revisions or experiment names (`read_run`).
    Returns the table and the notes."""
    (a, notes_a), (b, notes_b) = read_run(run_a, cwd), read_run(run_b, cwd)
    table, notes = compare_tables(a, b, method, seed, common)
    return table, notes_a + notes_b + notes
