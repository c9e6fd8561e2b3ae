"""Search-space YAML loading and validation."""

from __future__ import annotations

import pytest

from tfnas.errors import ConfigError
from tfnas.mbv2.space import load_space, space_from_dict


def test_imagenet_space_matches_the_paper():
    s = load_space("tfnas_imagenet")
    assert [st.layers for st in s.stages] == [2, 3, 4, 4, 4, 1]
    assert [st.out for st in s.stages] == [24, 40, 80, 112, 192, 320]
    assert len(s.ops) == 8 and s.num_layers() == 18
    assert s.final_size() == 7
    # e3 bound = 4*in, e6 bound = 8*in, lower bound half of that; search starts at in*e
    assert s.width_bounds("k3_e3", 24) == (48, 96)
    assert s.width_bounds("k5_e6_se", 24) == (96, 192)
    assert s.default_width("k5_e6_se", 24) == 144
    assert s.se_width("k3_e6_se", 40) == 80 and s.se_width("k3_e3", 40) == 0


def test_cifar_variant_needs_no_code_change():
    s = load_space("tfnas_cifar")
    assert s.resolution == 32 and s.stem.stride == 1
    assert s.final_size() == 4
    assert s.layers()[0].in_size == 32


def test_space_from_yaml_path(tmp_path, tiny_space_dict):
    import yaml

    p = tmp_path / "mine.yaml"
    p.write_text(yaml.safe_dump(tiny_space_dict))
    assert load_space(p).name == "tiny"


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda d: d["stages"][1].update(stride=3), "stages[1].stride"),
        (lambda d: d["stages"][0].pop("out"), "missing key 'stages[0].out'"),
        (lambda d: d["ops"]["k3_e3"].update(kernel=4), "ops.k3_e3.kernel"),
        (lambda d: d["ops"]["k3_e3"].update(expansion=5), "width.bound_factor"),
        (lambda d: d.update(colour="red"), "unknown key 'colour'"),
        (lambda d: d["stem"].update(act="gelu"), "stem.act"),
        (lambda d: d["width"].update(min_fraction=1.5), "width.min_fraction"),
    ],
)
def test_validation_errors_name_file_key_and_value(tiny_space_dict, mutate, expected):
    mutate(tiny_space_dict)
    with pytest.raises(ConfigError) as e:
        space_from_dict(tiny_space_dict, "tiny.yaml")
    assert "tiny.yaml" in str(e.value) and expected in str(e.value)


def test_unknown_space_lists_available():
    with pytest.raises(ConfigError, match="tfnas_imagenet"):
        load_space("nope")


def test_malformed_yaml_names_file_and_line(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("name: x\nstages: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad.yaml is not valid YAML \(line"):
        load_space(p)
