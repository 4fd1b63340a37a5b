"""PipelineSettings from a YAML file, environment and CLI flags, and what they refuse."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from pipeline.settings import PipelineSettings, load_settings


def test_cli_flags_override_the_file_and_env_fills_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "inputs": ["s3://b/shard-{00000..00009}.tar"],
                "output": "s3://b/latents",
                "clips": {
                    "num_frames": 17,
                    "height": 256,
                    "width": 256,
                    "clip_mode": "uniform",
                    "num_clips": 2,
                },
                "storage": {"endpoint_url": "http://127.0.0.1:9000"},
            }
        )
    )
    monkeypatch.setenv("WFVAE_PIPELINE_CONCURRENCY", "3")
    settings = load_settings(
        config, ["--clips.num_frames", "33", "--encoder.latent_kind", "sample"]
    )
    assert settings.clips.num_frames == 33 and settings.clips.num_clips == 2
    assert settings.encoder.latent_kind == "sample"
    assert settings.concurrency == 3
    assert settings.storage.endpoint_url == "http://127.0.0.1:9000"


def test_output_hash_tracks_what_changes_the_rows() -> None:
    base = PipelineSettings(inputs=["a.tar"], output="out")
    assert base.output_hash("m") == base.model_copy(
        update={"concurrency": 4, "inputs": ["b.tar"]}
    ).output_hash("m")
    assert base.output_hash("m") != base.output_hash("other-model")
    changed = base.model_copy(update={"clips": base.clips.model_copy(update={"height": 128})})
    assert changed.output_hash("m") != base.output_hash("m")
    bf16 = base.model_copy(
        update={"encoder": base.encoder.model_copy(update={"dtype": "bfloat16"})}
    )
    assert bf16.output_hash("m") != base.output_hash("m")
    cpus = base.model_copy(update={"encoder_num_cpus": 2, "batch_size": 16})
    assert cpus.output_hash("m") == base.output_hash("m")
    # Every decoder gives the same clips to the codecs' rounding: outputs written before decoders
    # were a setting, and refreshes from machines with other decoders, keep their prefix.
    pyav = base.model_copy(update={"clips": base.clips.model_copy(update={"decoder": "pyav"})})
    assert pyav.output_hash("m") == base.output_hash("m")
    assert base.output_hash("m") == "d8b2c82b454d8c74"  # what these settings hashed to before, at f8b0cd3


@pytest.mark.parametrize(
    "values",
    [
        {"output": "out"},  # no inputs
        {"inputs": ["a.tar"], "output": "out", "clips": {"num_frames": 16}},
        {"inputs": ["a.tar"], "output": "out", "latent_dtype": "int8"},
        {"inputs": ["a.tar"], "output": "out", "unknown": 1},
    ],
)
def test_bad_settings_are_refused(values: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValidationError):
        PipelineSettings(**values)


@pytest.mark.parametrize(
    ("given", "stored", "pool"),
    [
        (None, None, (4, 4)),
        (3, 3, (3, 3)),
        ("5", 5, (5, 5)),
        ("2-8", "2-8", (2, 8)),
        (" 2 - 2 ", 2, (2, 2)),
    ],
)
def test_concurrency_is_a_size_or_a_range_and_defaults_to_one_encoder_per_gpu(
    given: object, stored: object, pool: tuple[int, int]
) -> None:
    settings = PipelineSettings(inputs=["x.tar"], output="out", concurrency=given)
    assert settings.concurrency == stored
    assert settings.encoder_pool(cluster_gpus=4.0) == pool
    assert PipelineSettings(inputs=["x.tar"], output="out").encoder_pool(0.0) == (1, 1)  # CPUs


@pytest.mark.parametrize("bad", ["0", "8-2", "two", "2-", "-3", 0])
def test_bad_concurrency_is_refused_with_the_forms_it_takes(bad: object) -> None:
    with pytest.raises(ValidationError, match="concurrency"):
        PipelineSettings(inputs=["x.tar"], output="out", concurrency=bad)


def test_a_range_becomes_ray_datas_autoscaling_actor_pool() -> None:
    from pipeline.dataset import encoder_strategy

    scaling = encoder_strategy((2, 8))
    assert (scaling.min_size, scaling.max_size) == (2, 8)
    fixed = encoder_strategy((3, 3))
    assert (fixed.min_size, fixed.max_size) == (3, 3)
