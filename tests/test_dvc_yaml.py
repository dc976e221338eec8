"""dvc.yaml tracks what each stage really uses, so a code change reruns every stage it affects."""
import ast
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
