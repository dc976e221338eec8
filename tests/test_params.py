import runpy

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import ROOT
from nucseg.degrade import DEGRADATIONS
from nucseg.io import NucsegError
from nucseg.params import DEGRADATIONS as DEGRADATION_NAMES
from nucseg.params import SCHEMA, check_params, load_params

BASE = {"seed": 1, "img_size": 64, "tile": 0}


def committed():
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def test_sections_merge_over_base(tmp_path):
    path = tmp_path / "params.yaml"
    ingest, predict = {"normalization": "none"}, {"batch_size": 8, "tta": False, "overlap": 0}
    path.write_text(yaml.safe_dump({**committed(), "base": BASE, "ingest": ingest, "predict": predict}))
    assert load_params("ingest", path=path) == {**BASE, **ingest}
    assert load_params("ingest", "predict", path=path) == {**BASE, **ingest, **predict}
    assert load_params("predict", path=path, with_base=False) == predict


def test_a_missing_section_stops_every_stage(tmp_path):
    """A section removed whole is named by the first stage, not only by the one that reads it
    (the instances section: by evaluate, after training)."""
    path = tmp_path / "params.yaml"
    params = committed()
    del params["instances"]
    path.write_text(yaml.safe_dump(params))
    with pytest.raises(NucsegError, match="no 'instances' section; add it"):
        load_params("ingest", path=path)


def test_sections_asked_for_together_may_not_share_a_key(tmp_path):
    path = tmp_path / "params.yaml"
    train = {**committed()["train"], "batch_size": 16}
    path.write_text(yaml.safe_dump({**committed(), "base": BASE, "train": train,
                                    "predict": {"batch_size": 8, "tta": False, "overlap": 0}}))
    assert load_params("train", path=path)["seed"] is None    # a section may override base: train.seed
    with pytest.raises(ValueError, match="batch_size in more than one section"):
        load_params("train", "predict", path=path)


def test_encoder_weights_keywords_in_any_case_and_a_path_that_exists(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = committed()

    def load(section, value):
        params["train"]["encoder_weights"] = value
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
        return load_params(section)

    for value in ("Imagenet", "NONE", "none"):
        load("train", value)
    (tmp_path / "w.h5").write_bytes(b"")
    load("train", "w.h5")
    with pytest.raises(NucsegError, match=r"^params.yaml: train.encoder_weights is 'weights/w.h5', which is no "
                                          r"file \(from .*\); use imagenet, none or the path"):
        load("train", "weights/w.h5")
    # only training reads it: a queued experiment's copy lacks an untracked .h5, and its other stages run
    load("evaluate", "weights/w.h5")


def test_numbers_read_as_dvc_writes_them_and_bad_yaml_in_one_line(tmp_path):
    """`dvc exp run -S train.lr_decay=1e-5` writes 1e-05: YAML 1.2 (DVC's) reads a number there,
    YAML 1.1 (PyYAML's) text."""
    from dvc.utils.hydra import apply_overrides

    path = tmp_path / "params.yaml"
    path.write_text((ROOT / "params.yaml").read_text())
    apply_overrides(path, ["train.lr_decay=1e-5", "train.learning_rate=2e-4"])
    assert "lr_decay: 1e-05" in path.read_text()
    p = load_params("train", path=path)
    assert (p["lr_decay"], p["learning_rate"]) == (1e-5, 2e-4)
    path.write_text("base: {seed: 1\n")
    with pytest.raises(NucsegError, match=f"^{path}: not valid YAML \\(.*\\); fix it there$"):
        load_params(path=path)


def test_every_param_dvc_tracks_exists():
    """Each params entry of dvc.yaml names a key of params.yaml, so no stage silently ignores one."""
    params = committed()
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        for entry in stage.get("params", []):
            node = params
            for key in entry.split("."):
                assert key in node, f"stage {name} tracks {entry}, absent from params.yaml"
                node = node[key]


@pytest.mark.parametrize("override", ["evaluate.threshold=0.4", "train.seed=7",
                                      "robustness.severities.blur=[0.0,0.5,1.0,2.0,4.0]"])
def test_a_sweep_changes_one_line_of_params_yaml(tmp_path, override):
    """params.yaml is written as `dvc exp run -S` writes it (lists a line per item, null as an empty
    value), so that an experiment's params.yaml differs from the committed one by the line it changed."""
    from dvc.utils.hydra import apply_overrides

    swept = tmp_path / "params.yaml"
    swept.write_text((ROOT / "params.yaml").read_text())
    apply_overrides(str(swept), [override])
    before, after = (ROOT / "params.yaml").read_text().splitlines(), swept.read_text().splitlines()
    changed = [(a, b) for a, b in zip(before, after) if a != b]
    key, value = override.split("=")
    assert len(before) == len(after) and len(changed) == 1, changed
    assert yaml.safe_load(swept.read_text()) == _set(committed(), key, yaml.safe_load(value))


def _set(params, key, value):
    node = params
    *path, last = key.split(".")
    for name in path:
        node = node[name]
    node[last] = value
    return params


def test_the_committed_params_pass_and_every_key_has_a_rule():
    params = committed()
    check_params(params)
    for section, values in params.items():
        assert set(values) == set(SCHEMA[section]), section
    assert set(params["train"]["augment"]) == set(SCHEMA["train.augment"])
    assert DEGRADATION_NAMES == tuple(DEGRADATIONS)
    from nucseg.data import normalize
    from nucseg.params import NORMALIZATIONS

    for method in NORMALIZATIONS:   # the choices the schema allows are the methods normalize knows
        normalize(np.zeros((2, 2)), method)
    with pytest.raises(ValueError, match="unknown normalisation"):
        normalize(np.zeros((2, 2)), "zscore")


@pytest.mark.parametrize("key, value, message", [
    ("split.val", 1.5, "split.val is 1.5; use a number from 0 to 1 (above 0 and below 1), e.g. 0.1"),
    ("split.test", 0, "split.test is 0; use a number from 0 to 1 (above 0 and below 1)"),
    ("split.val", "0.1", "split.val is '0.1'; use a number from 0 to 1"),
    ("base.seed", -1, "base.seed is -1; use an integer from 0 to 4294967295"),
    ("base.seed", 1.5, "base.seed is 1.5; use an integer from 0 to 4294967295"),
    ("base.seed", 2**32, "base.seed is 4294967296; use an integer from 0 to 4294967295"),
    ("base.img_size", 100, "base.img_size is 100; use an integer from 32 to 1024, a multiple of 32"),
    ("base.img_size", 12800, "base.img_size is 12800; use an integer from 32 to 1024"),   # a typo for 128
    ("base.img_size", "128", "base.img_size is '128'; use an integer"),
    ("base.tile", -5, "base.tile is -5; use 0 (whole images) or an integer from 32 to 4096"),
    ("base.tile", 200000, "base.tile is 200000; use 0 (whole images) or an integer from 32 to 4096"),
    ("ingest.normalization", "zscore", "ingest.normalization is 'zscore'; use one of percentile, none"),
    ("otsu.invert_above", 5, "otsu.invert_above is 5; use a number from 0 to 1"),
    ("train.loss", "focal", "train.loss is 'focal'; use one of bce, dice, bce_dice"),
    ("train.strategy", "tpu", "train.strategy is 'tpu'; use one of default, mirrored, multi_worker"),
    ("train.seed", -1, "train.seed is -1; use null (base.seed) or an integer from 0 to 2**32 - 1"),
    ("train.epochs", 0, "train.epochs is 0; use an integer >= 1"),
    ("train.pos_weight", 0, "train.pos_weight is 0; use a number > 0"),
    ("train.learning_rate", "fast", "train.learning_rate is 'fast'; use a number > 0"),
    ("train.freeze_encoder", "yes please", "train.freeze_encoder is 'yes please'; use null"),
    ("train.dropout", 1.0, "train.dropout is 1.0; use a number from 0 to 1 (below 1)"),
    ("train.learnng_rate", 0.1, "train.learnng_rate is not a nucseg param; fix its spelling or remove it"),
    ("predict.tta", "maybe", "predict.tta is 'maybe'; use true or false"),
    ("predict.overlap", 256, "predict.overlap is 256 with base.tile 256; use an overlap of at most half the tile "
                            "(128: four windows a tile), e.g. a quarter of it (64)"),
    ("predict.overlap", 255, "predict.overlap is 255 with base.tile 256; use an overlap of at most half"),   # 2 M windows
    ("instances.fill_holes", True, "instances.fill_holes is True; use one of all, nucleus, none (true was all, false none)"),
    ("instances.split_depth", -1, "instances.split_depth is -1; use a number > 0"),
    ("instances.split_depth", 0, "instances.split_depth is 0; use a number > 0"),
    ("evaluate.threshold", 50, "evaluate.threshold is 50; use a number from 0 to 1 (above 0 and below 1)"),
    ("evaluate.gallery_images", 0, "evaluate.gallery_images is 0; use an integer >= 1"),
    ("export.precision", "fp16", "export.precision is 'fp16'; use one of float32, int8"),
    ("robustness.degradations", ["blur", "fog"], "robustness.degradations names 'fog', which nucseg does not know"),
])
def test_a_bad_value_is_named_with_what_to_use(key, value, message):
    params = committed()
    section, name = key.split(".")
    params[section][name] = value
    with pytest.raises(NucsegError) as error:
        check_params(params)
    assert str(error.value).startswith(f"params.yaml: {message}")
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("name, levels, message", [
    ("gaussian_noise", [0.0, -0.05], "use 0 (no damage) first, then one or more severities, each a sigma >= 0 "
                                     "on [0, 1] intensities, e.g. [0, 0.1]"),
    ("poisson_noise", [0, -5], "each photons at the brightest pixel, >= 0 (0: no noise)"),
    ("salt_and_pepper", [0.0, 5], "each a fraction of pixels from 0 to 1"),
    ("low_contrast", [1.0, 0.0], "use 1 (no damage) first, then one or more severities, each a remaining contrast "
                                 "above 0, up to 1, e.g. [1, 0.2]"),
    ("low_contrast", [0.5, 0.2], "use 1 (no damage) first"),   # a first level that is not clean
    ("blur", [1.0, 2.0], "use 0 (no damage) first"),
    ("blur", [0.0], "then one or more severities"),                # nothing for training to draw
    ("linear_gradient", [0.0, 1.5], "each a strength from 0 to 1"),
])
def test_severities_start_clean_and_stay_in_range(name, levels, message):
    """Each would otherwise fail inside numpy or tf.data (negative sigma or photons, no level to
    draw), or silently measure something else (5 meant as 5%, a "clean" column that is not)."""
    params = committed()
    params["robustness"]["severities"][name] = levels
    with pytest.raises(NucsegError) as error:
        check_params(params)
    assert str(error.value).startswith(f"params.yaml: robustness.severities.{name} is {levels}; ")
    assert message in str(error.value) and "\n" not in str(error.value)
    params["robustness"]["severities"][name] = [1.0 if name == "low_contrast" else 0.0, 0.5]
    check_params(params)


def test_every_degradation_has_a_severity_rule_whose_clean_level_changes_nothing():
    from nucseg.params import SEVERITIES

    assert set(SEVERITIES) == set(DEGRADATION_NAMES)
    image = np.random.default_rng(0).random((16, 16))
    for name, (_, clean, _) in SEVERITIES.items():
        np.testing.assert_array_equal(DEGRADATIONS[name](image, clean, np.random.default_rng(1)), image)


def test_a_holdout_must_leave_a_severity_to_train_on():
    params = committed()
    params["train"]["augment"]["degrade_holdout"] = 4   # every list has 4 severities after the clean level
    with pytest.raises(NucsegError, match=r"train.augment.degrade_holdout is 4 but robustness.severities.\w+ has 4 "
                                          r"severities; leave at least one to train on"):
        check_params(params)
    params["train"]["augment"]["degrade_holdout"] = 3
    check_params(params)
    params["train"]["augment"].update(degrade_holdout=4, degrade=0.0)   # nothing drawn: nothing to check
    check_params(params)


def test_blur_sigma_must_fit_the_image():
    """Its kernel reaches ceil(3 sigma) pixels: at least the image size fails in tf.pad mid-training."""
    params = committed()
    params["train"]["augment"]["blur_sigma"] = 42.34   # radius ceil(127.02) = 128 at img_size 128
    with pytest.raises(NucsegError, match=r"train.augment.blur_sigma is 42.34 with base.img_size 128; "
                                          r"use a sigma of at most 42.33 "):
        check_params(params)
    params["train"]["augment"]["blur_sigma"] = 127 / 3   # radius 127: the largest that fits
    check_params(params)


def test_a_file_that_is_not_params_is_one_line(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_bytes("base: {seed: 1}\n# caf\xe9\n".encode("latin-1"))
    with pytest.raises(NucsegError, match=f"^{path}: not UTF-8 text \\(byte 21\\); save it as UTF-8$"):
        load_params(path=path)
    path.write_text("- base\n- train\n")
    with pytest.raises(NucsegError, match="not a mapping of sections"):
        load_params(path=path)
    params = committed()
    del params["base"]
    path.write_text(yaml.safe_dump(params))
    with pytest.raises(NucsegError, match="no 'base' section; add it"):
        load_params("ingest", path=path)
    path.write_text("base: {seed: 1\ningest: {}\n")
    with pytest.raises(NucsegError, match=f"^{path}: not valid YAML .*in {path}, line 2.*; fix it there$"):
        load_params("ingest", path=path)


def test_nested_missing_and_cross_checks():
    params = committed()
    params["train"]["augment"]["brightness"] = 0.1
    with pytest.raises(NucsegError, match=r"train.augment.brightness is 0.1; use a range \[low, high\]"):
        check_params(params)
    params = committed()
    del params["instances"]["smooth"]          # reported by every stage, not only when evaluate runs
    with pytest.raises(NucsegError, match="instances.smooth is missing; add it"):
        check_params(params)
    params = committed()
    params["robustness"]["severities"]["blur"] = 1.0   # -S robustness.severities.blur=1.0: the entry is named
    with pytest.raises(NucsegError, match=r"robustness.severities.blur is 1.0; use 0 \(no damage\) first"):
        check_params(params)
    for levels in ([], [0], [0, "1"], None, [0, float("nan")]):
        params["robustness"]["severities"]["blur"] = levels
        with pytest.raises(NucsegError, match=r"robustness.severities.blur is .*; use 0 \(no damage\) first"):
            check_params(params)
    params = committed()
    params["split"].update(val=0.6, test=0.5)
    with pytest.raises(NucsegError, match="split.val \\+ split.test is 1.1; use fractions"):
        check_params(params)
    params = committed()
    del params["robustness"]["severities"]["blur"]
    with pytest.raises(NucsegError, match="robustness.degradations names blur but robustness.severities does not"):
        check_params(params)
    params["robustness"]["severities"] = {}       # none at all: was a KeyError in the robustness stage
    with pytest.raises(NucsegError, match="robustness.degradations names gaussian_noise but robustness.severities "
                                          "does not; add its severities"):
        check_params(params)
    params = committed()
    params["evalute"] = {"threshold": 0.3}
    with pytest.raises(NucsegError, match="'evalute' is not a nucseg section; fix its spelling or remove it"):
        check_params(params)
    params = committed()
    params["train"]["augment"] = None          # no augmentation
    check_params(params)


def test_a_stage_with_a_bad_param_stops_in_one_line_and_keeps_its_outputs(tmp_path, monkeypatch, capsys):
    """The split stage, as `dvc repro` runs it: a bad value stops it before anything is written;
    a value that leaves a split empty is refused too, and the previous lists stay."""
    params = committed()
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    pd.DataFrame({"id": [f"img{i}" for i in range(5)]}).to_csv(tmp_path / "meta.csv", index=False)
    out = tmp_path / "split"
    out.mkdir()
    for name in ("train", "val", "test"):
        (out / f"{name}.txt").write_text(f"previous {name}\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", ["split.py", "--meta", "meta.csv", "--out", "split"])

    for split, expected in [({"val": "0.1"}, "error: params.yaml: split.val is '0.1'; use a number from 0 to 1"),
                            ({"val": 0.1, "test": 0.5}, "error: params.yaml: split.val is 0.1, which gives an empty "
                                                        "val split of the 5 images; raise it, or add images")]:
        params["split"].update(split)
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
        with pytest.raises(SystemExit) as stop:
            runpy.run_path(str(ROOT / "stages" / "split.py"), run_name="__main__")
        assert stop.value.code == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(expected), err
        assert [(out / f"{n}.txt").read_text() for n in ("train", "val", "test")] == \
            ["previous train\n", "previous val\n", "previous test\n"]
        assert sorted(p.name for p in out.iterdir()) == ["test.txt", "train.txt", "val.txt"]   # no leftovers


def test_a_stage_failing_after_writing_leaves_all_its_previous_outputs(tmp_path, monkeypatch):
    """The augmentations stage, as `dvc repro` runs it, fails at its third figure: the two it has
    drawn stay aside and vanish, every previous figure is as it was (`run` wraps the stage in
    `all_or_nothing`); run again, all five are new."""
    import numpy as np

    import nucseg.plots

    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    rng = np.random.default_rng(0)
    np.save(tmp_path / "images.npy", rng.random((2, 32, 32), dtype=np.float32))
    np.save(tmp_path / "masks.npy", (rng.random((2, 32, 32)) > 0.7).astype(np.uint8))
    pd.DataFrame({"id": ["a", "b"]}).to_csv(tmp_path / "meta.csv", index=False)
    (tmp_path / "train.txt").write_text("b\n")
    out = tmp_path / "figures"
    out.mkdir()
    names = ["brightness.png", "contrast.png", "blur.png", "shift.png", "flip.png"]
    for name in names:
        (out / name).write_bytes(b"previous")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", ["augmentations.py", "--images", "images.npy", "--masks", "masks.npy",
                                     "--meta", "meta.csv", "--ids", "train.txt", "--out", "figures"])
    real, calls = nucseg.plots.augmentation_gallery, []

    def third_fails(*args, **kwargs):
        calls.append(args[3])
        if len(calls) == 3:
            raise MemoryError("drawing the third figure")
        return real(*args, **kwargs)

    monkeypatch.setattr(nucseg.plots, "augmentation_gallery", third_fails)
    with pytest.raises(MemoryError):
        runpy.run_path(str(ROOT / "stages" / "augmentations.py"), run_name="__main__")
    assert sorted(p.name for p in out.iterdir()) == sorted(names)          # no temporary files left
    assert all((out / name).read_bytes() == b"previous" for name in names)  # the two drawn did not land

    monkeypatch.setattr(nucseg.plots, "augmentation_gallery", real)
    runpy.run_path(str(ROOT / "stages" / "augmentations.py"), run_name="__main__")
    assert all((out / name).read_bytes()[:4] == b"\x89PNG" for name in names)


def params_read(source, params):
    """The params (``section.key``) that a stage script's `source` reads, found in its syntax tree.

    Each `load_params(...)` result is followed by name through its function, and into the script's
    own functions it is passed to (export.py's `inputs_of(ids_path, p, args)`). ``r["key"]`` and
    ``r.get("key")`` read that key, from the last named section that holds it, else from base; a
    computed key (split.py's ``params[name]``, name val or test) any key of the named sections; any
    other use (``**r``, saved in a file, given to a library function) every key the result holds.
    A key that none of its sections holds is returned as ``?key``.
    """
    import ast

    tree = ast.parse(source)
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            child.parent = node
    functions = {f.name: f for f in ast.walk(tree) if isinstance(f, ast.FunctionDef)}

    def constant(node):
        return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None

    def enclosing(node):
        while not isinstance(node, (ast.FunctionDef, ast.Module)):
            node = node.parent
        return node

    def uses(name, scope, seen):
        if (name, id(scope)) in seen:
            return set()
        seen.add((name, id(scope)))
        return set().union(*(keys(n, seen) for n in ast.walk(scope)
                             if isinstance(n, ast.Name) and n.id == name and isinstance(n.ctx, ast.Load)))

    def keys(node, seen):
        """The keys read from the value of `node`: names, "*" (a computed one) or "**" (all)."""
        parent = node.parent
        if isinstance(parent, ast.Subscript) and parent.value is node:
            return {constant(parent.slice) or "*"}
        if isinstance(parent, ast.Attribute) and parent.attr == "get" and getattr(parent.parent, "func", 0) is parent:
            return {constant(parent.parent.args[0]) or "*"}
        if isinstance(parent, ast.Assign) and parent.value is node and [type(t) for t in parent.targets] == [ast.Name]:
            return uses(parent.targets[0].id, enclosing(parent), seen)
        call = parent.parent if isinstance(parent, ast.keyword) else parent
        if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id in functions \
                and (isinstance(parent, ast.keyword) and parent.arg or node in call.args):   # not **r: all keys
            function = functions[call.func.id]
            names = [a.arg for a in function.args.posonlyargs + function.args.args]
            return uses(parent.arg if isinstance(parent, ast.keyword) else names[call.args.index(node)], function, seen)
        return {"**"}

    read = set()
    for call in ast.walk(tree):
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "load_params"):
            continue
        sections = [constant(a) for a in call.args]
        assert None not in sections, f"load_params with a section computed at run time: {ast.unparse(call)}"
        with_base = next((k.value.value for k in call.keywords if k.arg == "with_base"), True)
        merged = [*reversed(sections), *(["base"] if with_base else [])]   # a key: from the first holding it
        for key in keys(call, set()):
            if key == "**":
                read |= {f"{s}.{k}" for s in merged for k in params[s]}
            elif key == "*":
                read |= {f"{s}.{k}" for s in sections for k in params[s]}
            else:
                read.add(next((f"{s}.{key}" for s in merged if key in params[s]), f"?{key}"))
    return read


def stage_scripts():
    """dvc.yaml's stages that run a script of stages/: name -> (script, the params it tracks)."""
    import re

    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    module = {name: re.match(r"python -m stages\.(\w+) ", stage["cmd"])[1] for name, stage in stages.items()}
    return {name: (ROOT / "stages" / f"{module[name]}.py", stage.get("params", [])) for name, stage in stages.items()}


def untracked(read, tracked):
    """The params of `read` that none of `tracked` (a section, or a dotted key or prefix) covers."""
    return sorted(key for key in read if not any(key == t or key.startswith(t + ".") for t in tracked))


def test_every_param_a_stage_reads_is_tracked_by_it():
    """The other direction of `test_every_param_dvc_tracks_exists`: each param a stage script reads
    is listed in that stage's params, so that changing it reruns the stage."""
    params, scripts = committed(), stage_scripts()
    reading = {path for path in (ROOT / "stages").glob("*.py") if "load_params(" in path.read_text()}
    assert reading <= {script for script, _ in scripts.values()}, "a stage script that no dvc.yaml stage runs"
    for name, (script, tracked) in scripts.items():
        read = params_read(script.read_text(), params)
        assert bool(read) == (script in reading), name
        assert not untracked(read, tracked), f"stage {name} reads {untracked(read, tracked)}; add them to its params"


def test_the_params_scan_sees_each_way_a_stage_reads():
    """What `params_read` finds in three stages, and a read that dvc.yaml does not track, planted in
    copies of the sources of train.py and evaluate.py."""
    params, scripts = committed(), stage_scripts()
    source = {name: script.read_text() for name, (script, _) in scripts.items()}
    instances = {f"instances.{k}" for k in params["instances"]}                # **instance_params: all of them
    assert params_read(source["evaluate"], params) == {"evaluate.threshold", "evaluate.gallery_images", *instances}
    export = params_read(source["export"], params)                             # base.tile: in inputs_of only
    assert {"base.tile", "base.img_size", "ingest.normalization", "export.precision"} <= export
    assert "base.seed" not in export
    assert params_read(source["split"], params) == {"base.seed", "split.val", "split.test"}   # params[name]

    for name, old, new, missing in [
        ("train", "    levels = load_params(",
         '    cut = load_params("otsu")["invert_above"]\n    levels = load_params(', "otsu.invert_above"),
        ("evaluate", 'threshold = params["threshold"]', 'threshold, seed = params["threshold"], params.get("seed")',
         "base.seed"),                                                      # load_params("evaluate") holds base
    ]:
        assert source[name].count(old) == 1
        assert untracked(params_read(source[name].replace(old, new), params), scripts[name][1]) == [missing]
    assert "?no_such_key" in params_read(source["masks"].replace('["img_size"]', '["no_such_key"]'), params)


def test_the_params_scan_takes_unpacking_into_a_function_as_reading_every_key():
    source = ("from nucseg.params import load_params\n"
              "def helper(a=1, b=2):\n    pass\n"
              "def main():\n    p = load_params(\"otsu\", with_base=False)\n    helper(**p)\n")
    assert params_read(source, committed()) == {"otsu.invert_above"}


def test_excluded_degradations_must_be_known_and_leave_one_to_draw():
    params = committed()
    params["train"]["augment"]["degrade_exclude"] = ["blurr"]
    with pytest.raises(NucsegError, match=r"train.augment.degrade_exclude names 'blurr', which nucseg does not know; "
                                          r"use gaussian_noise, "):
        check_params(params)
    params["train"]["augment"]["degrade_exclude"] = list(params["robustness"]["severities"])
    with pytest.raises(NucsegError, match=r"degrade_exclude leaves no degradation to draw from; keep one out"):
        check_params(params)
    params["train"]["augment"]["degrade_exclude"] = list(params["robustness"]["severities"])[1:]
    check_params(params)
    params["train"]["augment"]["degrade_holdout"] = 2   # the severities of excluded kinds are not checked
    params["robustness"]["severities"]["blur"] = [0.0, 1.0]
    check_params(params)
    params["train"]["augment"]["degrade_exclude"] = []
    with pytest.raises(NucsegError, match=r"degrade_holdout is 2 but robustness.severities.blur has 1 severities"):
        check_params(params)
    params["train"]["augment"]["degrade_exclude"] = ["blur"]
    check_params(params)   # only blur's list is too short, and blur is never drawn
    params["train"]["augment"].update(degrade_exclude=list(params["robustness"]["severities"]), degrade=0.0)
    check_params(params)   # nothing drawn: nothing to check
    params["train"]["augment"]["degrade_exclude"] = "blur"
    with pytest.raises(NucsegError, match=r"train.augment.degrade_exclude is 'blur'; use a list of degradations"):
        check_params(params)
