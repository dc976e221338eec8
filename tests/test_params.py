import pytest
import yaml

from conftest import ROOT
from nucseg.io import NucsegError
from nucseg.params import load_params


def test_sections_merge_over_base(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"base": {"seed": 1, "img_size": 64}, "a": {"x": 1}, "b": {"x": 2, "y": 3}}))
    assert load_params("a", path=path) == {"seed": 1, "img_size": 64, "x": 1}
    assert load_params("a", "b", path=path) == {"seed": 1, "img_size": 64, "x": 2, "y": 3}
    assert load_params("b", path=path, with_base=False) == {"x": 2, "y": 3}
    with pytest.raises(NucsegError, match="no 'c' section"):
        load_params("c", path=path)


def test_every_param_dvc_tracks_exists():
    """Each params entry of dvc.yaml names a key of params.yaml, so no stage silently ignores one."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        for entry in stage.get("params", []):
            node = params
            for key in entry.split("."):
                assert key in node, f"stage {name} tracks {entry}, absent from params.yaml"
                node = node[key]
