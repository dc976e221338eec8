import runpy

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
    path.write_text(yaml.safe_dump({"base": BASE, "a": {"x": 1}, "b": {"x": 2, "y": 3}}))
    assert load_params("a", path=path) == {**BASE, "x": 1}
    assert load_params("a", "b", path=path) == {**BASE, "x": 2, "y": 3}
    assert load_params("b", path=path, with_base=False) == {"x": 2, "y": 3}
    with pytest.raises(NucsegError, match="no 'c' section"):
        load_params("c", path=path)


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


def test_the_committed_params_pass_and_every_key_has_a_rule():
    params = committed()
    check_params(params, required=set(params))
    for section, values in params.items():
        assert set(values) == set(SCHEMA[section]), section
    assert set(params["train"]["augment"]) == set(SCHEMA["train.augment"])
    assert DEGRADATION_NAMES == tuple(DEGRADATIONS)


@pytest.mark.parametrize("key, value, message", [
    ("split.val", 1.5, "split.val is 1.5; use a number from 0 to 1 (below 1), e.g. 0.1"),
    ("split.val", "0.1", "split.val is '0.1'; use a number from 0 to 1"),
    ("base.seed", -1, "base.seed is -1; use an integer >= 0"),
    ("base.seed", 1.5, "base.seed is 1.5; use an integer >= 0"),
    ("base.img_size", 100, "base.img_size is 100; use an integer >= 32, a multiple of 32"),
    ("base.img_size", "128", "base.img_size is '128'; use an integer"),
    ("base.tile", -5, "base.tile is -5; use 0 (whole images) or an integer >= 32"),
    ("ingest.normalization", "zscore", "ingest.normalization is 'zscore'; use one of percentile, none"),
    ("otsu.invert_above", 5, "otsu.invert_above is 5; use a number from 0 to 1"),
    ("train.loss", "focal", "train.loss is 'focal'; use one of bce, dice, bce_dice"),
    ("train.strategy", "tpu", "train.strategy is 'tpu'; use one of default, mirrored, multi_worker"),
    ("train.epochs", 0, "train.epochs is 0; use an integer >= 1"),
    ("train.pos_weight", 0, "train.pos_weight is 0; use a number > 0"),
    ("train.learning_rate", "fast", "train.learning_rate is 'fast'; use a number > 0"),
    ("train.freeze_encoder", "yes please", "train.freeze_encoder is 'yes please'; use null"),
    ("train.dropout", 1.0, "train.dropout is 1.0; use a number from 0 to 1 (below 1)"),
    ("train.learnng_rate", 0.1, "train.learnng_rate is not a nucseg param; fix its spelling or remove it"),
    ("predict.tta", "maybe", "predict.tta is 'maybe'; use true or false"),
    ("predict.overlap", 256, "predict.overlap is 256 with base.tile 256; use an overlap below the tile"),
    ("instances.fill_holes", "maybe", "instances.fill_holes is 'maybe'; use true or false"),
    ("instances.split_depth", -1, "instances.split_depth is -1; use a number >= 0"),
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


def test_nested_missing_and_cross_checks():
    params = committed()
    params["train"]["augment"]["brightness"] = 0.1
    with pytest.raises(NucsegError, match=r"train.augment.brightness is 0.1; use a range \[low, high\]"):
        check_params(params)
    params = committed()
    del params["train"]["pos_weight"]
    check_params(params)                       # only a section a stage asks for must be complete
    with pytest.raises(NucsegError, match="train.pos_weight is missing; add it"):
        check_params(params, required={"train"})
    params = committed()
    params["split"].update(val=0.6, test=0.5)
    with pytest.raises(NucsegError, match="split.val \\+ split.test is 1.1; use fractions"):
        check_params(params)
    params = committed()
    del params["robustness"]["severities"]["blur"]
    with pytest.raises(NucsegError, match="robustness.degradations names blur but robustness.severities does not"):
        check_params(params)
    params = committed()
    params["train"]["learning_rate"] = "1e-3"  # YAML reads 1e-3 (no point) as text: a number all the same
    params["train"]["augment"] = None          # no augmentation
    check_params(params, required=set(params))


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
                            ({"val": 0.1, "test": 0.5}, "error: params.yaml: split.val is 0.1, an empty val split "
                                                        "of 5 images; raise it, or add images")]:
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
