"""The encode dtype `auto` resolves to on this CPU, and the reason the latent files record."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from model import DtypeChoice, SlowPrecisionError, choose_dtype, cpu_capability
from model.latents import ClipEncoder, EncoderSettings
from pipeline.planning import encode_precision


def test_auto_encoder_runs_and_records_the_dtype_this_cpu_pays_for() -> None:
    amx = cpu_capability().amx_bf16
    encoder = ClipEncoder(dtype="auto", device="cpu")
    assert encoder.dtype == (torch.bfloat16 if amx else torch.float32)
    assert next(encoder.vae.parameters()).dtype == encoder.dtype
    meta = encoder.metadata()
    assert meta["encode_dtype"] == ("bfloat16" if amx else "float32")
    assert meta["encode_dtype_reason"].startswith("auto on a CPU " + ("with" if amx else "without"))
    latent = encoder.encode_clips([torch.zeros(5, 16, 16, 3, dtype=torch.uint8).numpy()])
    assert latent.dtype == "float32" and latent.shape[2:] == (2, 2, 2)


def test_a_run_decides_auto_once_on_the_driver() -> None:
    cpu = encode_precision(EncoderSettings(), gpus=False)
    assert cpu.dtype == (torch.bfloat16 if cpu_capability().amx_bf16 else torch.float32)
    assert encode_precision(EncoderSettings(dtype="float32"), gpus=False).dtype == torch.float32


# A cluster that declares a GPU on this CPU-only machine: the worker holding it answers as a GPU
# without native bfloat16 would (torch.cuda reports none), so the driver adopts float16.
GPU_CLUSTER_RUN = """
import ray
from model.latents import EncoderSettings
from pipeline.planning import encode_precision
ray.init(num_cpus=1, num_gpus=1, include_dashboard=False, log_to_driver=False)
choice = encode_precision(EncoderSettings(), gpus=True)
print(choice.name, "|", choice.reason)
"""


def test_on_a_gpu_cluster_a_gpu_worker_decides_auto() -> None:
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    run = subprocess.run(
        [sys.executable, "-c", GPU_CLUSTER_RUN],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip().splitlines()[-1] == (
        "float16 | auto on CUDA: float16 (this GPU lacks bfloat16)"
    )


def test_bf16_on_a_gpu_without_it_is_refused_unless_forced(monkeypatch: pytest.MonkeyPatch) -> None:
    # No GPU here: the rule reads torch.cuda, so a pre-Ampere GPU is what torch.cuda says it is.
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla V100")
    with pytest.raises(SlowPrecisionError, match="Tesla V100.*use dtype 'float16'"):
        choose_dtype("bf16", "cuda")
    assert choose_dtype(torch.bfloat16, "cuda", force=True).dtype == torch.bfloat16
    assert choose_dtype("auto", "cuda").dtype == torch.float16
    assert choose_dtype("fp16", "cuda").dtype == torch.float16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert choose_dtype("auto", "cuda").dtype == torch.bfloat16


def test_actors_encode_in_the_dtype_decided_for_them_and_keep_its_reason() -> None:
    decided = DtypeChoice(torch.float32, "decided on the driver")
    encoder = ClipEncoder.from_settings(EncoderSettings(device="cpu"), decided)
    assert next(encoder.vae.parameters()).dtype == torch.float32
    assert (encoder.metadata()["encode_dtype"], encoder.metadata()["encode_dtype_reason"]) == (
        "float32",
        "decided on the driver",
    )


def test_an_actor_refuses_a_decided_dtype_its_own_cpu_runs_slowly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A driver with AMX decides bf16; a worker without it must not encode hundreds of times slower.
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")  # this process: oneDNN held below AMX
    decided = DtypeChoice(torch.bfloat16, "auto on a CPU with AMX-BF16 (the driver's)")
    with pytest.raises(SlowPrecisionError, match="far slower than float32"):
        ClipEncoder.from_settings(EncoderSettings(device="cpu"), decided)
    forced = ClipEncoder.from_settings(EncoderSettings(device="cpu", force_dtype=True), decided)
    assert forced.dtype == torch.bfloat16
