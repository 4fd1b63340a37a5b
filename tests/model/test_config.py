"""The config reads and writes the official config.json field for field and rejects what it can't honour."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from model import ConfigError, WFVAEConfig, preset


@pytest.mark.parametrize("name", ["wfvae-tiny-parity", "wfvae-l-16chn"])
def test_official_config_round_trips(tiny_parity_dir: Path, name: str) -> None:
    path = tiny_parity_dir.parent / name / "config.json"
    official = json.loads(path.read_text())
    config = WFVAEConfig.from_file(path)
    assert config.to_official_dict() == official
    assert json.loads(config.to_json()) == official


def test_unknown_fields_and_values_are_rejected(tiny_parity_dir: Path) -> None:
    official = json.loads((tiny_parity_dir / "config.json").read_text())
    with pytest.raises(ConfigError, match="extra_knob"):
        WFVAEConfig.from_dict({**official, "extra_knob": 1})
    with pytest.raises(ConfigError, match="l1_dowmsample_block"):
        WFVAEConfig.from_dict({**official, "l1_dowmsample_block": "Spatial2xTime2x3DDownsample"})
    with pytest.raises(ConfigError, match="norm_type"):
        WFVAEConfig.from_dict({**official, "norm_type": "batchnorm"})
    with pytest.raises(ConfigError, match="multiples of 32"):
        WFVAEConfig.from_dict({**official, "norm_type": "groupnorm"})  # base_channels 16


def test_unreadable_config_file(tmp_path: Path) -> None:
    bad = tmp_path / "config.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="cannot read config"):
        WFVAEConfig.from_file(bad)
    bad.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="JSON object"):
        WFVAEConfig.from_file(bad)


def test_presets() -> None:
    assert [preset(s).base_channels for s in "SML"] == [128, 160, 192]
    assert preset("S", 8).latent_dim == 8
    with pytest.raises(ConfigError, match="unknown preset"):
        preset("XL")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="8 or 16"):
        preset("S", 4)  # type: ignore[arg-type]
