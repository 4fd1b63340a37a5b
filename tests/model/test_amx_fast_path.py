"""The bf16 fast path on AMX CPUs: channels-last from input to output, the same results as channels-first."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from model import WFVAE, FastPath, cpu_capability, load_wfvae
from model.fast_path.channels_last import CHANNELS_LAST, set_weight_layout
from model.layers import FrameConv2d

HAS_AMX_BF16 = cpu_capability().amx_bf16
needs_amx = pytest.mark.skipif(not HAS_AMX_BF16, reason="bf16 convolutions are only fast (and this path only on) with AMX")
# bf16 keeps 8 bits of mantissa: two layouts may take oneDNN kernels that sum in different orders,
# and each layer's output is rounded to bf16, so the outputs may differ by a few bf16 steps
# (2^-8 relative) after a dozen layers; 2% of the largest value bounds that with margin.
LAYOUT_RELATIVE_TOL = 2e-2


def _conv_weights(vae: WFVAE) -> list[torch.Tensor]:
    return [m.weight for m in vae.modules() if isinstance(m, nn.Conv3d | nn.Conv2d)]


def test_plan_takes_channels_last_only_in_cpu_bf16_inference(tiny_parity_dir: Path) -> None:
    vae = load_wfvae(tiny_parity_dir)
    x = torch.zeros(1, 3, 5, 16, 16)
    policy = FastPath()
    assert not policy.plan_for(vae, x).channels_last
    with torch.inference_mode():
        assert policy.plan_for(vae, x.bfloat16()).channels_last == HAS_AMX_BF16
        assert not FastPath(channels_last=False).plan_for(vae, x.bfloat16()).channels_last
        assert FastPath(channels_last=True).plan_for(vae, x.bfloat16()).channels_last  # forced
        assert not FastPath(channels_last=True).plan_for(vae, x).channels_last  # float32: never
    vae.requires_grad_(True)  # training: autograd keeps the plain layout
    assert not FastPath(channels_last=True).plan_for(vae, x.bfloat16()).channels_last


def test_weights_go_channels_last_and_back(tiny_parity_dir: Path) -> None:
    vae = load_wfvae(tiny_parity_dir, dtype=torch.bfloat16, force_dtype=True)
    before = [w.clone() for w in _conv_weights(vae)]
    set_weight_layout(vae, True)
    for weight in _conv_weights(vae):
        layout = CHANNELS_LAST if weight.dim() == 5 else torch.channels_last
        assert weight.is_contiguous(memory_format=layout)
    set_weight_layout(vae, False)
    assert all(w.is_contiguous() and torch.equal(w, b) for w, b in zip(_conv_weights(vae), before, strict=True))


@needs_amx
def test_channels_last_runs_every_wide_layer_and_matches_channels_first(
    tiny_parity_dir: Path, parity_cases
) -> None:
    vae = load_wfvae(tiny_parity_dir, dtype=torch.bfloat16)
    x = parity_cases["case0.input"]
    seen: list[bool] = []

    def record(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        # The Haar transforms' 12- and 24-channel outputs enter their first convolutions as they
        # are; a channel slice of a channels-last tensor (the decoder's backbone without its
        # energy-flow channels) still has its channels innermost.
        if module.in_channels > 24:
            seen.append(args[0].stride(1) == 1)

    for module in vae.modules():
        if isinstance(module, nn.Conv3d | FrameConv2d):
            module.register_forward_pre_hook(record)
    with torch.inference_mode():
        moments = vae.encode(x).moments
        video = vae.decode(moments[:, :8])
        assert seen and all(seen)
        vae.fast_path = FastPath(channels_last=False)
        seen.clear()
        plain_moments = vae.encode(x).moments
        plain_video = vae.decode(moments[:, :8])
        assert seen and not any(seen)
    assert _conv_weights(vae)[0].is_contiguous()  # moved back once the plan changed
    assert (moments.float() - plain_moments.float()).abs().max() <= LAYOUT_RELATIVE_TOL * plain_moments.abs().max()
    assert (video.float() - plain_video.float()).abs().max() <= LAYOUT_RELATIVE_TOL * plain_video.abs().max()
