"""The service's parts without Ray: settings, the typed builder, the config YAML, errors, batching, codecs."""

from __future__ import annotations

import importlib
import inspect
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from safetensors.torch import save

import serve
from model.errors import CheckpointError, ConfigError, InputShapeError, VideoDecodeError
from serve.engine import DecodeJob, EncodeJob, run_grouped
from serve.errors import (
    LimitExceeded,
    MalformedInput,
    PayloadTooLarge,
    RequestTimeout,
    Unauthorized,
    UnsupportedMediaType,
    status_for,
)
from serve.formats import LatentLimits, parse_latent
from serve.settings import ServeArgs, ServeSettings, resolve_settings

REPO = Path(__file__).resolve().parents[2]
CONFIG_YAML = REPO / "serve" / "serve_config.yaml"
LIMITS = LatentLimits(
    latent_dim=8,
    max_latent_elements=10_000,
    max_json_elements=10_000,
    max_frames=129,
    max_pixels=512 * 512,
)


# --- settings ---------------------------------------------------------------------------------
def test_environment_fills_what_args_leave_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WFVAE_SERVE_MAX_FRAMES", "17")
    monkeypatch.setenv("WFVAE_SERVE_MAX_CLIPS", "2")
    monkeypatch.setenv("WFVAE_SERVE_ENCODER__CHUNK_FRAMES", "8")
    monkeypatch.setenv("WFVAE_SERVE_AUTH_TOKEN", "from-env")
    resolved = resolve_settings(ServeArgs.model_validate({"max_clips": 5}))
    assert (resolved.max_frames, resolved.max_clips) == (17, 5)  # env, then args win
    assert resolved.encoder.chunk_frames == 8
    assert resolved.auth_token is not None and resolved.auth_token.get_secret_value() == "from-env"
    assert "from-env" not in repr(resolved)


def test_bad_environment_fails_with_the_field_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WFVAE_SERVE_MAX_FRAMES", "many")
    with pytest.raises(ValidationError, match="max_frames"):
        ServeSettings()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"min_replicas": 3, "max_replicas": 2}, "exceeds max_replicas"),
        ({"max_batch_size": 64, "max_ongoing_requests": 8}, "keep batches from filling"),
        ({"allowed_uri_prefixes": ["file:///data/"]}, "not an object-storage URI"),
        ({"allowed_uri_prefixes": ["s3://b/x::memory://y"]}, "fsspec chain"),
        ({"allowed_uri_prefixes": ["s3:///videos/"]}, "empty, '.' or '..'"),
        ({"max_body_bytes": 0}, "greater than or equal to 1"),
        ({"max_frame": 3}, "Extra inputs"),
    ],
)
def test_invalid_args_are_refused(args: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ServeArgs.model_validate(args)


def test_autoscaling_config_is_one_serve_accepts() -> None:
    from ray.serve.config import AutoscalingConfig

    config = AutoscalingConfig(**ServeArgs(min_replicas=1, max_replicas=4).autoscaling_config())
    assert (config.min_replicas, config.max_replicas) == (1, 4)


# --- the builder and the config YAML ----------------------------------------------------------
def test_build_app_is_typed_so_serve_validates_args() -> None:
    """Serve converts a config's `args:` into the builder's annotated model (a string would not)."""
    from ray.serve._private.api import call_user_app_builder_with_args_if_necessary
    from ray.serve.deployment import Application

    assert inspect.signature(serve.build_app).parameters["args"].annotation is ServeArgs
    app = call_user_app_builder_with_args_if_necessary(serve.build_app, {"max_frames": 17})
    assert isinstance(app, Application)
    with pytest.raises(ValidationError, match="max_frames"):
        call_user_app_builder_with_args_if_necessary(serve.build_app, {"max_frames": 0})


def test_config_yaml_is_a_valid_serve_config_for_this_app() -> None:
    from ray.serve.schema import ServeDeploySchema

    document = yaml.safe_load(CONFIG_YAML.read_text())
    config = ServeDeploySchema.model_validate(document)
    (app,) = config.applications
    module, _, attribute = app.import_path.partition(":")
    assert getattr(importlib.import_module(module), attribute) is serve.build_app
    args = ServeArgs.model_validate(app.args)
    assert args.encoder.chunk_frames and args.num_gpus == "auto"


def test_python_m_serve_documents_its_options() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "serve", "--help"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "--port" in result.stdout and "WFVAE_SERVE_" in result.stdout


# --- errors -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("error", "status"),
    [
        (VideoDecodeError("unreadable", "x"), 400),
        (InputShapeError("x"), 422),
        (ConfigError("x"), 503),
        (CheckpointError("x"), 503),
        (Unauthorized(), 401),
        (PayloadTooLarge("body", 10, 5), 413),
        (UnsupportedMediaType("text/plain", ["video/*"]), 415),
        (MalformedInput("x"), 400),
        (LimitExceeded("x"), 422),
        (RequestTimeout(1.0), 504),
        (RuntimeError("a bug"), 500),
    ],
)
def test_one_table_maps_errors_to_statuses(error: Exception, status: int) -> None:
    assert status_for(error) == status


# --- batching ---------------------------------------------------------------------------------
def test_run_grouped_runs_each_shape_once_and_answers_in_order() -> None:
    jobs = [DecodeJob(torch.full((1, 8, 1, 2, 2), float(i))) for i in range(3)]
    jobs.insert(1, DecodeJob(torch.full((2, 8, 1, 4, 2), 9.0)))  # another shape, batch of 2
    calls: list[int] = []

    def run_group(group: list[DecodeJob]) -> list[torch.Tensor]:  # type: ignore[override]
        calls.append(len(group))
        return [job.latent * 2 for job in group]

    results = run_grouped(jobs, lambda job: job.group(), run_group)  # type: ignore[arg-type]
    assert sorted(calls) == [1, 3]
    assert [r.batch_size for r in results] == [3, 1, 3, 3]
    for job, result in zip(jobs, results, strict=True):
        assert torch.equal(result.unwrap(), job.latent * 2)


def test_encode_jobs_group_by_shape_kind_and_only_a_samples_seed() -> None:
    clip = np.zeros((9, 16, 16, 3), np.uint8)

    def job(kind: str, seed: int, frames: int = 9) -> EncodeJob:
        return EncodeJob(clip[:frames], kind, seed, key="k")  # type: ignore[arg-type]

    assert job("mean", 1).group() == job("mean", 2).group()
    assert job("sample", 1).group() != job("sample", 2).group()
    assert job("mean", 1).group() != job("moments", 1).group()
    assert job("mean", 1).group() != job("mean", 1, frames=5).group()


def test_a_failing_group_fails_only_its_own_jobs() -> None:
    good, bad = DecodeJob(torch.zeros(1, 8, 1, 2, 2)), DecodeJob(torch.zeros(1, 8, 1, 4, 4))

    def run_group(group: list[DecodeJob]) -> list[torch.Tensor]:  # type: ignore[override]
        if group[0].latent.shape[-1] == 4:
            raise InputShapeError("broken")
        return [job.latent for job in group]

    ok, failed = run_grouped([good, bad], lambda job: job.group(), run_group)  # type: ignore[arg-type]
    assert torch.equal(ok.unwrap(), good.latent)
    with pytest.raises(InputShapeError, match="broken"):
        failed.unwrap()


# --- latent codecs ----------------------------------------------------------------------------
latent_shapes = st.tuples(
    st.integers(1, 2), st.just(8), st.integers(1, 3), st.integers(1, 4), st.integers(1, 4)
)


@settings(max_examples=25, deadline=None)
@given(shape=latent_shapes, seed=st.integers(0, 2**16), four_d=st.booleans())
def test_every_latent_format_reads_back_the_same_tensor(
    shape: tuple[int, ...], seed: int, four_d: bool
) -> None:
    z = torch.randn(shape, generator=torch.Generator().manual_seed(seed))  # (B, C, t, h, w)
    sent = z[0] if four_d else z
    npy = io.BytesIO()
    np.save(npy, sent.numpy())
    bodies = {
        "application/vnd.safetensors": save({"latent": sent}),
        "application/x-npy": npy.getvalue(),
        "application/json": json.dumps({"latent": sent.tolist()}).encode(),
    }
    expected = sent[None] if four_d else sent
    for content_type, body in bodies.items():
        got = parse_latent(body, content_type, LIMITS)
        assert got.shape == expected.shape and torch.equal(got, expected), content_type
