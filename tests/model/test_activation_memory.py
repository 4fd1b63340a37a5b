"""A residual block's normalised activations are made once, in the causal window the convolution reads."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from tolerances import assert_reordered, winograd_float32

from model.causal import WHOLE_CLIP
from model.fast_path import Plan, engaged, winograd
from model.layers import ChannelNorm, ResnetBlock3D
from model.tensor_memory import peak_live_bytes


def _layernorm(channels: int, seed: int) -> ChannelNorm:
    norm = ChannelNorm(channels, "layernorm")
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        norm.norm.weight.copy_(torch.randn(channels, generator=gen))
        norm.norm.bias.copy_(torch.randn(channels, generator=gen))
    return norm


def test_activated_frames_equal_layer_norm_then_silu() -> None:
    norm = _layernorm(8, seed=1)
    x = torch.randn(2, 8, 5, 6, 7, generator=torch.Generator().manual_seed(2)) * 3 + 1
    expected = F.silu(F.layer_norm(x.movedim(1, -1), (8,), norm.norm.weight, norm.norm.bias, 1e-6)).movedim(-1, 1)
    with torch.inference_mode(), engaged(Plan(fused_norm=True)):
        frames = norm.activated_frames(x, 2)  # channels-first, written straight into the window
    assert frames.shape == (2, 8, 7, 6, 7) and frames.is_contiguous()
    assert_reordered(frames[:, :, 2:], expected)
    # Without the plan (under autograd, for one) the same frames come from the plain path.
    trained = norm.activated_frames(x, 2)
    assert trained.requires_grad
    assert_reordered(trained[:, :, 2:], expected)


def test_block_holds_one_window_and_one_output_at_a_time() -> None:
    # 16 channels: direct convolutions (the Winograd path's buffers would blur the count).
    torch.manual_seed(0)
    block = ResnetBlock3D(16, 16, "layernorm", 0.0).eval()
    x = torch.randn(1, 16, 9, 32, 32)
    activation = x.numel() * x.element_size()
    with torch.inference_mode(), engaged(Plan(fused_norm=True)):
        expected = block.conv2(F.silu(block.norm2(block.conv1(F.silu(block.norm1(x)), WHOLE_CLIP))), WHOLE_CLIP) + x
        peak = peak_live_bytes(lambda: block(x, WHOLE_CLIP))
        got = block(x, WHOLE_CLIP)
    assert_reordered(got, expected)
    # One window (11 frames of 9) and one output: 2.2 activations. Keeping the norm's output
    # beside its padded copy, or conv1's output through conv2, would take 3.2-4.2.
    assert peak <= 2.5 * activation, f"peak {peak / activation:.2f} activations"


def _measured_winograd_call(c: int, frames: int, side: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """A c-channel 3x3x3 Winograd call on (1, c, frames, side, side): input, output (checked
    against direct convolution) and the call's peak of live tensor bytes."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(1, c, frames, side, side, generator=gen)
    weight = torch.randn(c, c, 3, 3, 3, generator=gen) / (c * 27) ** 0.5
    with torch.inference_mode():
        peak = peak_live_bytes(lambda: winograd.winograd_conv3d(x, weight, None))
        got = winograd.winograd_conv3d(x, weight, None)
        expected = F.conv3d(x, weight, padding=(0, 1, 1))
    assert (got - expected).abs().max() < winograd_float32(expected)
    return x, got, peak


def test_winograd_blocks_beside_a_whole_kernel_stay_small() -> None:
    # 192 channels: the transformed kernel (16 MB) is kept whole beside its larger input (19 MB),
    # so the input goes in blocks of KEPT_KERNEL_WORKSPACE_BYTES; 32 MB blocks here would hold
    # about 2 x 32 MB of transforms.
    c = 192
    x, got, peak = _measured_winograd_call(c, frames=6, side=64, seed=3)
    output = got.numel() * 4
    kernel = 4 * 36 * 3 * c * c
    assert kernel <= 2 * winograd.WinogradSettings().kernel_block_bytes and kernel < x.numel() * 4
    budget = output + kernel + 2.5 * winograd.WinogradSettings().kept_kernel_workspace_bytes
    assert peak <= budget, f"peak {peak / 2**20:.0f} MB, budget {budget / 2**20:.0f} MB"


def test_winograd_never_holds_a_kernel_larger_than_its_input() -> None:
    # The encoder's level-2 layer at a 17x128x128 clip: a 61 MB transformed kernel beside a 17 MB
    # input. Kept whole, the call held 102 MB over its input. One transform column at a time it
    # holds the output and, for one column, 6 of the 36 points of the input (made a few MB at a
    # time), of the kernel and of the products, and the column's 4 output rows.
    c = 384
    x, got, peak = _measured_winograd_call(c, frames=11, side=32, seed=5)
    kernel = 4 * 36 * 3 * c * c
    inputs, output = x.numel() * 4, got.numel() * 4
    assert kernel > inputs
    chunk = winograd.STENCIL_CHUNK_BYTES
    budget = output * (1 + 6 / 16 + 4 / 16) + inputs * 6 / 16 + kernel * 6 / 36 + chunk + 2 * 2**20
    assert peak <= budget < kernel, f"peak {peak / 2**20:.0f} MB, budget {budget / 2**20:.0f} MB"
