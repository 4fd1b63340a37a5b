"""PipelineSettings: every knob of a pipeline run in one pydantic model, from a YAML/JSON file, env or CLI."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from model.latents import EncoderSettings
from model.media import ClipSettings
from model.storage import StorageSettings

__all__ = ["PipelineSettings", "TextSettings", "load_settings", "parse_concurrency", "pool_sizes"]

CONCURRENCY = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")  # "4" or "2-8"


def parse_concurrency(value: object) -> int | str | None:
    """An actor pool's size: a number (4), a range (2-8) as "2-8", or None (the default)."""
    if value is None:
        return None
    match = CONCURRENCY.match(str(value))
    if isinstance(value, bool) or match is None:
        raise ValueError(f"concurrency must be a number (4) or a range (2-8), got {value!r}")
    low, high = int(match.group(1)), int(match.group(2) or match.group(1))
    if low < 1 or high < low:
        raise ValueError(f"concurrency {value!r}: need 1 <= smallest <= largest")
    return low if low == high else f"{low}-{high}"


def pool_sizes(concurrency: int | str | None, cluster_gpus: float) -> tuple[int, int]:
    """(smallest, largest) number of actors; one per GPU present by default (1 without GPUs)."""
    if concurrency is None:
        size = max(1, int(cluster_gpus))
        return size, size
    if isinstance(concurrency, int):
        return concurrency, concurrency
    low, high = concurrency.split("-")
    return int(low), int(high)


class TextSettings(BaseModel):
    """The optional text stage: a Hugging Face text encoder over the clips' captions, in an actor
    pool of its own (`pipeline.text`). No `encoder`: no text stage."""

    model_config = ConfigDict(extra="forbid")

    encoder: str | None = Field(
        default=None,
        description="Hugging Face id or local folder of a text encoder (T5, UMT5, CLIP text, any "
        "encoder with a last_hidden_state); safetensors weights only",
    )
    max_tokens: int | None = Field(
        default=None,
        ge=1,
        description="tokens per caption, longer ones truncated; default: the tokenizer's length, "
        "else the model's positions, else 512",
    )
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        default="auto",
        description="auto: bfloat16 on GPU and on CPUs with AMX-BF16, else float32 (model.precision)",
    )
    force_dtype: bool = Field(
        default=False, description="run bfloat16/float16 on a CPU without fast kernels for it"
    )
    device: str = Field(default="auto", description="auto: cuda when available, else cpu")
    batch_size: int = Field(default=32, ge=1, description="captions per text encoder call")
    concurrency: int | str | None = Field(
        default=None,
        description="text encoder actors: a number or a range (2-8); default: one per GPU on a "
        "GPU cluster, else 1",
    )
    num_cpus: float = Field(default=1.0, gt=0, description="CPUs reserved per text encoder actor")

    @field_validator("concurrency", mode="before")
    @classmethod
    def _parse_concurrency(cls, value: object) -> int | str | None:
        return parse_concurrency(value)

    def pool(self, cluster_gpus: float) -> tuple[int, int]:
        """(smallest, largest) number of text encoder actors."""
        return pool_sizes(self.concurrency, cluster_gpus)


class PipelineSettings(BaseSettings):
    """A pipeline run: inputs, output prefix, clip sampling, model, and Ray resources."""

    model_config = SettingsConfigDict(
        env_prefix="WFVAE_PIPELINE_",
        env_nested_delimiter="__",
        extra="forbid",
        cli_prog_name="python -m pipeline",
        cli_kebab_case=False,
    )

    inputs: list[str] = Field(
        default_factory=list, description="URIs, globs or brace ranges (shard-{00000..00099}.tar)"
    )
    input_lists: list[str] = Field(
        default_factory=list, description="text files listing one input URI per line"
    )
    output: str = Field(description="output prefix (s3://…, gs://…, file://… or a local path)")
    storage: StorageSettings = Field(default_factory=StorageSettings)
    clips: ClipSettings = Field(default_factory=ClipSettings)
    encoder: EncoderSettings = Field(default_factory=EncoderSettings)
    # Not in `output_hash`: text lives apart from the latents (`pipeline.text`), so a text
    # encoder added or changed never touches them.
    text: TextSettings = Field(default_factory=TextSettings)
    latent_dtype: Literal["float32", "float16", "bfloat16"] = Field(
        default="float32", description="dtype of the latent bytes written"
    )
    files_per_unit: int = Field(
        default=64, ge=1, description="plain video files per work unit (one output file each)"
    )
    batch_size: int = Field(default=8, ge=1, description="clips per encoder call")
    concurrency: int | str | None = Field(
        default=None,
        description="encoder actors: a number (4), or a range (2-8) within which Ray Data scales "
        "the pool; default: one per GPU on a GPU cluster, else 1",
    )
    encoder_num_cpus: float = Field(
        default=1.0, gt=0, description="CPUs reserved per encoder actor"
    )
    decode_cpus_per_encoder: float | None = Field(
        default=None,
        gt=0,
        description="read/decode tasks (one CPU each) per encoder actor; default from the measured "
        "costs (pipeline.balance): 9 on GPU encoders, 1 on CPU encoders",
    )
    read_concurrency: int | None = Field(
        default=None,
        ge=1,
        description="at most this many read/decode tasks at once (wins over "
        "decode_cpus_per_encoder); default: encoders x decode_cpus_per_encoder, within the "
        "cluster's CPUs less those the encoders reserve, at least 1",
    )
    read_num_cpus: float = Field(
        default=0.0,
        ge=0,
        description="CPUs reserved per read/decode task; 0: none, so an encoder restarted after "
        "a node loss can never take the CPU reads need (read_concurrency caps them instead)",
    )
    read_memory_bytes: int = Field(
        default=512 * 2**20,
        gt=0,
        description="memory reserved per read/decode task (a video's bytes and its clips' frames)",
    )
    write_batch_rows: int = Field(
        default=256,
        ge=1,
        description="rows per write task, so at most this many clips per Parquet part file",
    )
    write_concurrency: int | None = Field(
        default=None, ge=1, description="at most this many write tasks at once; default as reads"
    )
    write_num_cpus: float = Field(
        default=0.0, ge=0, description="CPUs reserved per write task (0: as reads, none)"
    )
    stall_timeout_s: float = Field(
        default=600.0,
        gt=0,
        description="stop the job (exit 4) when no stage finishes a block for this long",
    )
    ray_address: str | None = Field(default=None, description="cluster to join; default: local")
    progress_bars: bool = True

    @field_validator("concurrency", mode="before")
    @classmethod
    def _parse_concurrency(cls, value: object) -> int | str | None:
        return parse_concurrency(value)

    def encoder_pool(self, cluster_gpus: float) -> tuple[int, int]:
        """(smallest, largest) number of encoder actors; one per GPU present by default."""
        return pool_sizes(self.concurrency, cluster_gpus)

    @model_validator(mode="after")
    def _check(self) -> PipelineSettings:
        if not self.inputs and not self.input_lists:
            raise ValueError("give at least one of inputs or input_lists")
        return self

    def output_hash(self, model_id: str) -> str:
        """Hash of every setting that changes the rows written (not inputs, not resources)."""
        relevant = {
            "model_id": model_id,
            # Which decoder made the frames is left out: every backend gives the same clips to
            # the codecs' rounding, and `auto` resolves per machine.
            "clips": self.clips.model_dump(mode="json", exclude={"decoder"}),
            # target_fps's frame rule (the frame shown nearest each instant, by timestamps, not a
            # stride of round(source fps / target fps)) decides which frames a prefix holds
            **({"target_fps_frames": "nearest_shown"} if self.clips.target_fps is not None else {}),
            "latent_kind": self.encoder.latent_kind,
            # bf16 and fp32 latents differ by ~1%: one output prefix holds one compute precision
            "encode_dtype": self.encoder.dtype,
            "seed": self.encoder.seed if self.encoder.latent_kind == "sample" else None,
            "latent_dtype": self.latent_dtype,
        }
        return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


def _read_file(path: str | Path) -> dict[str, Any]:
    text = Path(path).read_text()
    if str(path).endswith((".yaml", ".yml")):
        import yaml

        return yaml.safe_load(text) or {}
    return json.loads(text)


def load_settings(
    config: str | Path | None = None, cli_args: Sequence[str] | None = None
) -> PipelineSettings:
    """Settings from CLI flags, over a YAML/JSON file, over `WFVAE_PIPELINE_*` env, over defaults."""
    values = _read_file(config) if config else {}
    if cli_args is None:
        return PipelineSettings(**values)
    return PipelineSettings(_cli_parse_args=list(cli_args), **values)
