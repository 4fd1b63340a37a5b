"""WF-VAE configuration: the official `config.json`, field for field, validated."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import ConfigError

__all__ = ["WFVAEConfig", "PRESET_BASE_CHANNELS", "preset"]

# Spatial sizes are halved three times (input Haar, level-1 downsample, level-2 downsample).
SPATIAL_COMPRESSION = 8
# Time is halved twice (input Haar, level-2 downsample); T = 1 + 4k gives 1 + k latent frames.
TEMPORAL_COMPRESSION = 4
RGB_CHANNELS = 3  # the model's videos are RGB, in dim 1
GROUPNORM_GROUPS = 32

# Paper Table 3: S / M / L differ in base channels only.
PRESET_BASE_CHANNELS: dict[str, int] = {"S": 128, "M": 160, "L": 192}


class WFVAEConfig(BaseModel):
    """Reads and writes the official `config.json` (spellings such as `dowmsample` included)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    class_name: Literal["WFVAEModel"] = Field("WFVAEModel", alias="_class_name")
    diffusers_version: str = Field("0.30.2", alias="_diffusers_version")
    latent_dim: int = Field(8, ge=1)
    base_channels: int = Field(128, ge=1)
    encoder_num_resblocks: int = Field(2, ge=0)
    encoder_energy_flow_hidden_size: int = Field(64, ge=1)
    decoder_num_resblocks: int = Field(2, ge=1)
    decoder_energy_flow_hidden_size: int = Field(128, ge=1)
    attention_type: Literal["AttnBlock3DFix"] = "AttnBlock3DFix"
    use_attention: bool = True
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    norm_type: Literal["layernorm", "groupnorm"] = "groupnorm"
    t_interpolation: Literal["trilinear", "nearest"] = "nearest"
    connect_res_layer_num: int = Field(1, ge=0)
    scale: list[float] = Field(default_factory=lambda: [0.18215] * 4)
    shift: list[float] = Field(default_factory=lambda: [0.0] * 4)
    # Only the 4x8x8 layout of the released models is implemented; the official code's
    # 8x temporal variant changes channel counts and is rejected with a clear message.
    l1_dowmsample_block: Literal["Downsample"] = "Downsample"
    l1_downsample_wavelet: Literal["HaarWaveletTransform2D"] = "HaarWaveletTransform2D"
    l2_dowmsample_block: Literal["Spatial2xTime2x3DDownsample"] = "Spatial2xTime2x3DDownsample"
    l2_downsample_wavelet: Literal["HaarWaveletTransform3D"] = "HaarWaveletTransform3D"
    l1_upsample_block: Literal["Upsample"] = "Upsample"
    l1_upsample_wavelet: Literal["InverseHaarWaveletTransform2D"] = "InverseHaarWaveletTransform2D"
    l2_upsample_block: Literal["Spatial2xTime2x3DUpsample"] = "Spatial2xTime2x3DUpsample"
    l2_upsample_wavelet: Literal["InverseHaarWaveletTransform3D"] = "InverseHaarWaveletTransform3D"

    @model_validator(mode="after")
    def _check_groupnorm_channels(self) -> WFVAEConfig:
        if self.norm_type == "groupnorm":
            widths = {
                "base_channels": self.base_channels,
                "encoder_energy_flow_hidden_size": self.encoder_energy_flow_hidden_size,
                "decoder_energy_flow_hidden_size": self.decoder_energy_flow_hidden_size,
            }
            bad = {k: v for k, v in widths.items() if v % GROUPNORM_GROUPS}
            if bad:
                raise ValueError(
                    f"norm_type 'groupnorm' uses {GROUPNORM_GROUPS} groups, so these widths must "
                    f"be multiples of {GROUPNORM_GROUPS}: {bad}"
                )
        return self

    @property
    def streams_exactly(self) -> bool:
        """Per-position LayerNorm never mixes frames; GroupNorm over (C, T, H, W) does."""
        return self.norm_type == "layernorm"

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> WFVAEConfig:
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            raise ConfigError(f"invalid WF-VAE config: {err}") from err

    @classmethod
    def from_file(cls, path: str | Path) -> WFVAEConfig:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ConfigError(f"cannot read config {path}: {err}") from err
        if not isinstance(data, dict):
            raise ConfigError(f"config {path} must hold a JSON object")
        return cls.from_dict(data)

    def to_official_dict(self) -> dict[str, object]:
        return self.model_dump(by_alias=True)

    def to_json(self) -> str:
        return json.dumps(self.to_official_dict(), indent=2, sort_keys=True) + "\n"


def preset(size: Literal["S", "M", "L"], latent_dim: Literal[8, 16] = 16) -> WFVAEConfig:
    """The paper's S / M / L models with the released WF-VAE-L-16Chn settings otherwise."""
    if size not in PRESET_BASE_CHANNELS:
        raise ConfigError(f"unknown preset {size!r}; choose one of {sorted(PRESET_BASE_CHANNELS)}")
    if latent_dim not in (8, 16):
        raise ConfigError(f"latent_dim must be 8 or 16 for a preset, got {latent_dim}")
    return WFVAEConfig(
        latent_dim=latent_dim,
        base_channels=PRESET_BASE_CHANNELS[size],
        encoder_energy_flow_hidden_size=128,
        decoder_energy_flow_hidden_size=128,
        norm_type="layernorm",
        t_interpolation="trilinear",
    )
