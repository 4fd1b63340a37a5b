"""The encode dtype `auto` resolves to on this CPU, and the reason the latent files record."""

from __future__ import annotations

import torch

from model import cpu_capability
from model.latents import ClipEncoder, EncoderSettings
from pipeline.run import _encode_dtype


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


def test_cpu_runs_decide_auto_once_on_the_driver_gpu_runs_on_the_workers() -> None:
    cpu = _encode_dtype(EncoderSettings(), gpus=False)
    assert cpu.dtype == (torch.bfloat16 if cpu_capability().amx_bf16 else torch.float32)
    gpu = _encode_dtype(EncoderSettings(), gpus=True)
    assert (gpu.dtype, gpu.reason) == (torch.bfloat16, "auto on CUDA workers")
    assert _encode_dtype(EncoderSettings(dtype="float32"), gpus=False).dtype == torch.float32
