"""The Winograd convolution computes what direct convolution computes, and runs only where it may."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from tolerances import reordered_float32, winograd_float32
from torch import nn

from model import WFVAE, layers
from model.fast_path import FastPath, WinogradSettings, winograd
from model.fast_path.winograd import winograd_conv3d
from model.precision import cpu_capability

PARITY_TOL = 1e-4  # as tests/model/test_parity.py: the official reference's float32 tolerance


def _direct_float64(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return F.conv3d(x.double(), weight.double(), None if bias is None else bias.double(), padding=(0, 1, 1))


# The same algorithm in float64 carries 29 more bits: anything above this is not rounding.
WINOGRAD_FLOAT64_REL = 1e-10


def _within_winograd_rounding(got: torch.Tensor, expected: torch.Tensor) -> bool:
    return (got.double() - expected).abs().max().item() < winograd_float32(expected)


@settings(max_examples=40, deadline=None)
@given(
    batch=st.integers(1, 2),
    c_in=st.integers(1, 6),
    c_out=st.integers(1, 6),
    taps=st.sampled_from([1, 3]),
    extra_frames=st.integers(0, 4),
    height=st.integers(1, 13),
    width=st.integers(1, 13),
    with_bias=st.booleans(),
    workspace_bytes=st.sampled_from([1, 4096, 1 << 26]),
    seed=st.integers(0, 2**16),
)
def test_equals_direct_convolution_for_any_shape_and_block_plan(
    batch: int, c_in: int, c_out: int, taps: int, extra_frames: int, height: int, width: int,
    with_bias: bool, workspace_bytes: int, seed: int,
) -> None:
    gen = torch.Generator().manual_seed(seed)
    frames = taps + extra_frames
    x = torch.randn(batch, c_in, frames, height, width, generator=gen)
    weight = torch.randn(c_out, c_in, taps, 3, 3, generator=gen) / (c_in * taps * 9) ** 0.5
    bias = torch.randn(c_out, generator=gen) if with_bias else None
    expected = _direct_float64(x, weight, bias)
    with torch.inference_mode():
        got = winograd_conv3d(x, weight, bias, workspace_bytes=workspace_bytes)
        exact = winograd_conv3d(x.double(), weight.double(), None if bias is None else bias.double(),
                                workspace_bytes=workspace_bytes)
    assert got.shape == expected.shape and got.is_contiguous()
    assert (exact - expected).abs().max() < WINOGRAD_FLOAT64_REL * max(1.0, expected.abs().max().item())
    assert _within_winograd_rounding(got, expected)


@pytest.mark.parametrize("workspace_bytes", [1, 1 << 26])  # several blocks, or one
def test_kernel_slices_sharing_one_buffer_match_direct(workspace_bytes: int) -> None:
    # Kernels too large to transform at once go in slices of output channels, all through one
    # buffer; 2 channels a slice makes slices of 2, 2 and a shorter last one of 1.
    c_in, c_out, taps = 4, 5, 3
    settings = WinogradSettings(kernel_block_bytes=4 * 36 * taps * c_in * 2)
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(2, c_in, 6, 11, 9, generator=gen)
    weight = torch.randn(c_out, c_in, taps, 3, 3, generator=gen) / (c_in * taps * 9) ** 0.5
    bias = torch.randn(c_out, generator=gen)
    expected = _direct_float64(x, weight, bias)
    with torch.inference_mode():
        got = winograd_conv3d(x, weight, bias, settings, workspace_bytes=workspace_bytes)
    assert _within_winograd_rounding(got, expected)


def _spy_on_columns_path(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the calls that go one transform column at a time."""
    calls: list[int] = []
    by_columns = winograd._convolve_by_columns

    def counting(*args: object) -> None:
        calls.append(1)
        by_columns(*args)

    monkeypatch.setattr(winograd, "_convolve_by_columns", counting)
    return calls


@pytest.mark.parametrize(
    ("batch", "taps", "frames", "height", "width"),
    [(1, 3, 6, 20, 20), (2, 3, 4, 13, 18), (1, 3, 3, 9, 9), (2, 1, 5, 7, 10), (1, 3, 5, 16, 12)],
)
def test_convolution_by_transform_columns_matches_direct(
    monkeypatch: pytest.MonkeyPatch, batch: int, taps: int, frames: int, height: int, width: int
) -> None:
    # The transformed kernel (36 x taps x 32 x 32 floats, 147 or 442 KB) outweighs each input
    # here, so the call goes one column of the transform at a time; odd sides pad the images.
    c = 32
    calls = _spy_on_columns_path(monkeypatch)
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(batch, c, frames, height, width, generator=gen)
    weight = torch.randn(c, c, taps, 3, 3, generator=gen) / (c * taps * 9) ** 0.5
    bias = torch.randn(c, generator=gen)
    assert 4 * 36 * taps * c * c > x.numel() * 4
    expected = _direct_float64(x, weight, bias)
    with torch.inference_mode():
        got = winograd_conv3d(x, weight, bias)
    assert calls == [1]
    assert got.shape == expected.shape and got.is_contiguous()
    assert _within_winograd_rounding(got, expected)


@pytest.mark.parametrize(("frames", "kept", "by_columns"), [(8, True, True), (16, True, False), (8, False, False)])
def test_goes_by_columns_only_for_a_kept_kernel_larger_than_its_input(
    monkeypatch: pytest.MonkeyPatch, frames: int, kept: bool, by_columns: bool
) -> None:
    c = 32  # kernel: 442 KB transformed; input: 32 KB a frame
    # Not kept: too large to keep whole, so slices of output channels.
    settings = WinogradSettings() if kept else WinogradSettings(kernel_block_bytes=4 * 36 * 3 * c * 2)
    calls = _spy_on_columns_path(monkeypatch)
    x = torch.randn(1, c, frames, 16, 16)
    weight = torch.randn(c, c, 3, 3, 3)
    with torch.inference_mode():
        got = winograd_conv3d(x, weight, None, settings, workspace_bytes=4096)
    assert bool(calls) is by_columns
    assert _within_winograd_rounding(got, _direct_float64(x, weight, None))


def test_strided_input_and_wide_layer_match_direct() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 9, 256, 20, 20, generator=gen).transpose(1, 2)  # (1, 256, 9, 20, 20), channels-last memory
    weight = torch.randn(192, 256, 3, 3, 3, generator=gen) / (256 * 27) ** 0.5
    bias = torch.randn(192, generator=gen)
    with torch.inference_mode():
        got = winograd_conv3d(x, weight, bias)
        exact = winograd_conv3d(x.double(), weight.double(), bias.double())
    expected = _direct_float64(x, weight, bias)
    assert (exact - expected).abs().max() < WINOGRAD_FLOAT64_REL * expected.abs().max()
    assert _within_winograd_rounding(got, expected)


def _wide_conv(**kwargs: object) -> nn.Conv3d:
    fields: dict[str, object] = {"kernel_size": 3, "padding": (0, 1, 1)}
    fields.update(kwargs)
    return nn.Conv3d(192, 192, **fields)  # type: ignore[arg-type]


def test_applies_only_to_wide_3x3_layers_with_enough_output() -> None:
    applies = WinogradSettings().applies
    big = torch.zeros(1, 192, 6, 32, 32)  # 4 output frames x 64 tiles = 256 columns
    conv = _wide_conv()
    assert applies(conv, big)
    assert not applies(conv, big[:, :, :, :8, :8])  # 4 frames x 4 tiles: too small to bother
    assert not applies(_wide_conv(stride=(1, 2, 2)), big)
    assert not applies(_wide_conv(padding=(1, 1, 1)), big)
    assert not applies(_wide_conv(kernel_size=(3, 1, 1), padding=(0, 0, 0)), big)
    assert not applies(nn.Conv3d(128, 128, 3, padding=(0, 1, 1)), torch.zeros(1, 128, 6, 32, 32))
    # Per-frame 3x3 kernels from 384 channels (1.83x there; at 192 no gain inside the model).
    assert applies(nn.Conv2d(384, 384, 3, padding=1), torch.zeros(1, 384, 6, 32, 32))
    assert not applies(nn.Conv2d(192, 192, 3, padding=1), big)
    assert not applies(conv.double(), big.double())
    assert not WinogradSettings(min_channels=256).applies(conv, big)


def test_plan_takes_winograd_only_in_float32_cpu_inference_where_it_pays(tiny_vae: WFVAE) -> None:
    x = torch.zeros(1, 3, 5, 16, 16)
    forced = FastPath(winograd=True)
    with torch.inference_mode():
        assert forced.plan_for(tiny_vae, x).winograd == forced.winograd_settings
        assert forced.plan_for(tiny_vae, x.double()).winograd is None
        assert forced.plan_for(tiny_vae, x.bfloat16()).winograd is None
        assert FastPath(winograd=False).plan_for(tiny_vae, x).winograd is None
        assert FastPath(enabled=False, winograd=True).plan_for(tiny_vae, x).winograd is None
        # Left to the policy: only where oneDNN's float32 convolution is held to AVX2.
        assert winograd.pays_on_this_cpu() == (not cpu_capability().avx512)
        assert (FastPath().plan_for(tiny_vae, x).winograd is not None) == winograd.pays_on_this_cpu()
    # Under autograd with trainable weights the direct path runs (Winograd buffers would be
    # saved for backward); with frozen weights it may run, unless the input tracks grad.
    try:
        assert forced.plan_for(tiny_vae.requires_grad_(True), x).winograd is None
        with torch.no_grad():
            assert forced.plan_for(tiny_vae, x).winograd is not None
    finally:
        tiny_vae.requires_grad_(False)
    assert forced.plan_for(tiny_vae, x).winograd is not None
    assert forced.plan_for(tiny_vae, x.clone().requires_grad_(True)).winograd is None


# Every 3x3 stride-1 convolution of the tiny reference model takes the Winograd path.
EVERY_LAYER = WinogradSettings(min_channels=0, min_frame_channels=0, min_columns=0)


@pytest.fixture
def winograd_everywhere(tiny_vae: WFVAE, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tiny_vae, "fast_path", FastPath(winograd=True, winograd_settings=EVERY_LAYER))


@pytest.mark.parametrize("kernels", ["default", "sliced"])
@pytest.mark.parametrize("case", [0, 1, 2])
def test_model_on_winograd_reproduces_the_official_reference(
    winograd_everywhere: None, tiny_vae: WFVAE, parity_cases: dict[str, torch.Tensor],
    monkeypatch: pytest.MonkeyPatch, case: int, kernels: str,
) -> None:
    # By default the tiny model's kernels outweigh its inputs (the transform-columns path);
    # kernels too large to keep go in slices of output channels through input blocks instead.
    if kernels == "sliced":
        sliced = FastPath(winograd=True, winograd_settings=replace(EVERY_LAYER, kernel_block_bytes=4096))
        monkeypatch.setattr(tiny_vae, "fast_path", sliced)
    calls = _spy_on_columns_path(monkeypatch)
    x = parity_cases[f"case{case}.input"]
    with torch.inference_mode():
        posterior = tiny_vae.encode(x)
        decoded = tiny_vae.decode(posterior.mean)
    assert bool(calls) is (kernels == "default")
    assert (posterior.moments - parity_cases[f"case{case}.moments"]).abs().max() < PARITY_TOL
    assert (decoded - parity_cases[f"case{case}.decoded"]).abs().max() < PARITY_TOL


def test_model_on_winograd_counts_its_winograd_layers(
    winograd_everywhere: None, tiny_vae: WFVAE, parity_cases: dict[str, torch.Tensor], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[int, ...]] = []
    original = winograd.winograd_conv3d

    def counting(frames: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                 *args: object) -> torch.Tensor:
        calls.append(tuple(weight.shape))
        return original(frames, weight, bias, *args)

    monkeypatch.setattr(layers, "winograd_conv3d", counting)
    x = parity_cases["case0.input"]
    with torch.inference_mode():
        z = tiny_vae.encode(x).moments
        with_winograd = len(calls)
        monkeypatch.setattr(tiny_vae, "fast_path", FastPath(winograd=False))
        z_direct = tiny_vae.encode(x).moments
    assert with_winograd >= 10 and len(calls) == with_winograd  # FastPath(winograd=False) took none
    assert (z - z_direct).abs().max() < reordered_float32(z_direct)  # two float32 algorithms


def test_chunked_encode_and_decode_on_winograd_equal_whole_clip(
    winograd_everywhere: None, tiny_vae: WFVAE, parity_cases: dict[str, torch.Tensor]
) -> None:
    x = parity_cases["case2.input"]
    with torch.inference_mode():
        whole = tiny_vae.encode(x).mean
        chunked = tiny_vae.encode(x, chunk_frames=4).mean
        decoded = tiny_vae.decode(whole)
        decoded_chunked = tiny_vae.decode(whole, chunk_latents=1)
    assert (whole - chunked).abs().max() < reordered_float32(whole)
    assert (decoded - decoded_chunked).abs().max() < reordered_float32(decoded)
