"""The encode dtype `auto` resolves to on this CPU, and the reason the latent files record."""

from __future__ import annotations

import pytest
import torch

from model import DtypeChoice, SlowPrecisionError, cpu_capability
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
    gpu = encode_precision(EncoderSettings(), gpus=True)
    assert (gpu.dtype, gpu.reason) == (torch.bfloat16, "auto on CUDA workers")
    assert encode_precision(EncoderSettings(dtype="float32"), gpus=False).dtype == torch.float32


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
