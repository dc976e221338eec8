"""dvc.yaml tracks what each stage really uses, so a code change reruns every stage it affects."""
import ast
import re
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def nucseg_imports(path, seen=None):
    """Every nucseg module a file imports, directly or through other nucseg modules."""
    seen = set() if seen is None else seen
    tree = ast.parse(Path(path).read_text())
    package = "nucseg" if Path(path).parent.name == "nucseg" else None
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom):
            if node.level and package:
                base = package if not node.module else f"{package}.{node.module}"
                names = [base] + [f"{base}.{a.name}" for a in node.names]
            elif node.module and node.module.split(".")[0] == "nucseg":
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] != "nucseg":
                continue
            module = ROOT / "nucseg" / (f"{parts[1]}.py" if len(parts) > 1 else "__init__.py")
            if module.exists() and module not in seen:
                seen.add(module)
                nucseg_imports(module, seen)
    if seen:
        seen.add(ROOT / "nucseg" / "__init__.py")
    return seen


def test_a_copy_of_the_repository_runs_its_own_package(tmp_path):
    """Queued experiments run in a temporary copy of the repository, while `pip install -e .`
    points `import nucseg` at the checkout. Each stage's command must import the copy's nucseg/,
    the files DVC hashed for it: here a copy whose package announces itself."""
    import shutil
    import subprocess
    import sys

    shutil.copytree(ROOT / "stages", tmp_path / "stages", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "nucseg").mkdir()
    (tmp_path / "nucseg" / "__init__.py").write_text("raise SystemExit('the copy of nucseg')\n")
    for name, stage in STAGES.items():
        words = stage["cmd"].split()
        assert words[:3] == ["python", "-m", f"stages.{name}"], name
        result = subprocess.run([sys.executable, *words[1:3], "--help"], cwd=tmp_path, capture_output=True, text=True)
        assert "the copy of nucseg" in result.stderr, f"{name}: {result.stderr[-300:]}"


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_lists_its_script_and_every_module_it_imports(name):
    deps = set(STAGES[name].get("deps", []))
    script = f"stages/{name}.py"
    assert script in deps
    needed = {str(p.relative_to(ROOT)) for p in nucseg_imports(ROOT / script)}
    assert needed <= deps, f"{name} imports {sorted(needed - deps)} without tracking them"


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_tracks_no_module_it_does_not_import(name):
    deps = {d for d in STAGES[name].get("deps", []) if d.startswith("nucseg/")}
    needed = {str(p.relative_to(ROOT)) for p in nucseg_imports(ROOT / f"stages/{name}.py")}
    assert deps <= needed, f"{name} tracks {sorted(deps - needed)} but does not import them"


@pytest.mark.parametrize("name", sorted(STAGES))
def test_every_path_the_command_names_is_a_dep_or_an_output(name):
    stage = STAGES[name]
    declared = set(stage.get("deps", []))
    for key in ("outs", "metrics", "plots"):
        declared |= {next(iter(o)) if isinstance(o, dict) else o for o in stage.get(key, [])}
    words = stage["cmd"].split()
    paths = [w for flag, w in zip(words, words[1:]) if flag.startswith("--") and "/" in w]
    # a path is declared itself, lies in a declared folder, or is the folder of declared files
    undeclared = [p for p in paths if not any(p == d or p.startswith(d.rstrip("/") + "/")
                                              or d.startswith(p.rstrip("/") + "/") for d in declared)]
    assert not undeclared, f"{name} reads {undeclared} without tracking them"


def test_dvc_reads_this_pipeline_with_the_c_yaml_parser():
    """Every DVC command parses dvc.yaml, dvc.lock and params.yaml: in pure Python that was a
    sixth of a no-op `dvc repro` (ruamel.yaml.clib is a dependency for it). The C parser also
    has to read these files to the same values as the pure one."""
    from dvc.utils.serialize._yaml import parse_yaml
    from ruamel.yaml import YAML
    from ruamel.yaml.main import CParser

    assert CParser is not None, "ruamel.yaml.clib is not installed: pip install -e ."
    assert YAML(typ="safe").Parser is CParser   # what DVC's parse_yaml constructs
    for name in ("dvc.yaml", "dvc.lock", "params.yaml"):
        text = (ROOT / name).read_text()
        assert parse_yaml(text, name) == YAML(typ="safe", pure=True).load(text), name


TEMPLATES = {"linear", "simple", "scatter", "smooth", "confusion", "confusion_normalized", "bar_horizontal",
             "bar_horizontal_sorted"}   # DVC's built-in ones (`dvc plots templates`)


def test_top_level_plots_draw_columns_their_files_have():
    """`dvc plots show` draws each top-level plot from the columns it names: a misspelt one is an
    error there, found only when someone runs it. The CSVs are committed outputs (cache: false)."""
    import pandas as pd

    plots = yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"]
    for entry in plots:
        if isinstance(entry, str):
            assert (ROOT / entry).exists(), entry
            continue
        (name, spec), = entry.items()
        template = spec.get("template", "linear")
        custom = ROOT / ".dvc" / "plots" / f"{template}.json"   # where DVC looks for a project's own
        assert template in TEMPLATES or custom.is_file(), f"plot {name}: template {template}"
        y = spec["y"] if isinstance(spec["y"], dict) else {name: spec["y"]}
        x = spec["x"] if isinstance(spec["x"], dict) else {path: spec["x"] for path in y}
        # a template of our own also names columns itself (DVC adds rev, the revision)
        named = set(re.findall(r'"field": "(\w+)"', custom.read_text())) - {"rev"} if template not in TEMPLATES else set()
        for axis in (x, y):
            for path, fields in axis.items():
                columns = pd.read_csv(ROOT / path, nrows=0).columns
                missing = (set([fields] if isinstance(fields, str) else fields) | named) - set(columns)
                assert not missing, f"plot {name}: {path} has no column {sorted(missing)}"


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_level_plots_are_images(name):
    """A stage's plots hold images: tables are outputs, drawn by the top-level plots, which name
    their columns (a table among a stage's plots without x and y is drawn against its row number,
    as plots/history.csv and plots/per_image.csv were)."""
    for entry in STAGES[name].get("plots", []):
        path = ROOT / (next(iter(entry)) if isinstance(entry, dict) else entry)
        files = list(path.glob("*")) if path.is_dir() else [path]
        assert files and all(f.suffix == ".png" for f in files), f"{name}: {path}"
