"""The encoder's per-frame level 1 runs in slabs of frames: the official result, less memory."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from tolerances import assert_reordered
from training_helpers import tiny_model_config

from model import WFVAE, FastPath, WFVAEConfig
from model.backbone import run_frame_stack
from model.fast_path import SlabSettings, frame_slabs
from model.fast_path.frame_slabs import add_frame_slabs_, frames_per_slab, map_frame_slabs
from model.tensor_memory import peak_live_bytes


def _level1(vae: WFVAE) -> Callable[[torch.Tensor], torch.Tensor]:
    """The encoder's level 1 as a per-frame function, run plainly (no plan in force)."""
    return lambda coeffs: run_frame_stack(vae.encoder.down1, coeffs)

PARITY_TOL = 1e-4


@pytest.mark.parametrize("case", [0, 1, 2])
def test_encoder_in_one_frame_slabs_reproduces_official_moments(
        tiny_vae: WFVAE, parity_cases, case: int, monkeypatch: pytest.MonkeyPatch) -> None:
    x = parity_cases[f"case{case}.input"]
    monkeypatch.setattr(tiny_vae, "fast_path", FastPath(slabs=SlabSettings(slab_bytes=1)))  # one frame per slab
    with torch.inference_mode():
        moments = tiny_vae.encode(x).moments
    assert (moments - parity_cases[f"case{case}.moments"]).abs().max() < PARITY_TOL


def test_slabs_of_any_size_equal_the_whole_clip(tiny_vae: WFVAE) -> None:
    level1 = _level1(tiny_vae)
    coeffs = torch.randn(1, 24, 7, 16, 12, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        whole = level1(coeffs)
        for frames in (1, 2, 3, 6):  # 3 leaves a last slab of one frame
            sliced = map_frame_slabs(level1, coeffs, frames)
            assert sliced.shape == whole.shape
            assert_reordered(sliced, whole, frames)


def test_slabs_train_like_the_whole_clip() -> None:
    # Under autograd the slabs are written into one output; gradients flow through every slab.
    torch.manual_seed(0)
    vae = WFVAE(tiny_model_config())
    encoder = vae.encoder
    coeffs = torch.randn(1, 24, 5, 16, 12, generator=torch.Generator().manual_seed(1))
    grads = []
    for frames in (5, 2):
        x = coeffs.clone().requires_grad_(True)
        encoder.zero_grad()
        map_frame_slabs(_level1(vae), x, frames).square().mean().backward()
        weight_grad = encoder.down1[0].weight.grad
        assert weight_grad is not None
        grads.append((x.grad, weight_grad.clone()))
    (x_whole, w_whole), (x_slabs, w_slabs) = grads
    assert_reordered(x_slabs, x_whole, scale_floor=0.0)  # gradients: no order-1 intermediates
    assert_reordered(w_slabs, w_whole, scale_floor=0.0)


def test_slab_plan_and_its_errors() -> None:
    assert frames_per_slab(3 * 2**20, slab_bytes=32 * 2**20) == 10
    assert frames_per_slab(50 * 2**20, slab_bytes=32 * 2**20) == 1  # one frame even when larger
    x = torch.zeros(1, 2, 4, 3, 3)
    with pytest.raises(ValueError, match="frames per slab must be positive"):
        map_frame_slabs(lambda v: v, x, 0)
    with pytest.raises(ValueError, match="must keep the frame count: 2 -> 1"):
        map_frame_slabs(lambda v: v[:, :, :1], x, 2)


def _small_config() -> WFVAEConfig:
    # Wider than `tiny_model_config`: level 1 must hold the encoder's peak for the test below.
    return WFVAEConfig(base_channels=32, latent_dim=8, encoder_energy_flow_hidden_size=16,
                       decoder_energy_flow_hidden_size=16, norm_type="layernorm")


def test_level1_peak_is_a_slab_not_the_clip() -> None:
    torch.manual_seed(0)
    vae = WFVAE(_small_config()).eval()
    x = torch.rand(1, 3, 17, 64, 64) * 2 - 1
    coeffs = torch.randn(1, 24, 9, 32, 32)  # what the input Haar transform gives level 1
    activation = 32 * 9 * 32 * 32 * 4  # one level-1 tensor of the whole clip: base x t x H/2 x W/2
    with torch.inference_mode():
        level1_whole = peak_live_bytes(lambda: _level1(vae)(coeffs))
        level1_sliced = peak_live_bytes(lambda: map_frame_slabs(_level1(vae), coeffs, 1))
        whole = vae.encode(x).moments
        whole_peak = peak_live_bytes(lambda: vae.encode(x))
        vae.fast_path = FastPath(slabs=SlabSettings(slab_bytes=activation // 9))  # one frame per slab
        sliced = vae.encode(x).moments
        sliced_peak = peak_live_bytes(lambda: vae.encode(x))
    # A residual block on the whole clip holds three activations at once; in one-frame slabs
    # that is a third of one, beside the output (a quarter of one: half the side).
    assert level1_whole >= 3 * activation, f"whole-clip level 1: {level1_whole / activation:.2f} activations"
    assert level1_sliced <= activation, f"level 1 in slabs: {level1_sliced / activation:.2f} activations"
    # The encoder runs level 1 in slabs: its peak falls by more than one activation (here the
    # next peak is at level 2), and the latents stay the same.
    assert_reordered(sliced, whole)
    assert sliced_peak <= whole_peak - activation, (
        f"encoder peak {sliced_peak / activation:.2f} vs whole-clip level 1 {whole_peak / activation:.2f} activations")


def test_level1_blocks_overwrite_their_input_a_few_frames_at_a_time() -> None:
    torch.manual_seed(0)
    encoder = WFVAE(_small_config()).eval().encoder
    coeffs = torch.randn(1, 24, 9, 32, 32, generator=torch.Generator().manual_seed(2))
    block = encoder.down1[1]
    with torch.inference_mode():
        hidden = encoder.down1[0](coeffs)
        activation = hidden.numel() * hidden.element_size()
        expected_block = block(hidden)
        reference = encoder.down1[-1](encoder.down1[2](expected_block))  # the layers one by one
        block_peak = peak_live_bytes(lambda: block(hidden))
        for frames in (1, 4, 9):  # 4 leaves a last slab of one frame
            own = hidden.clone()
            got = add_frame_slabs_(block.residual, own, frames)
            assert got.data_ptr() == own.data_ptr()  # written over its input
            assert_reordered(got, expected_block, frames)
        scratch = hidden.clone()
        slab_peak = peak_live_bytes(lambda: add_frame_slabs_(block.residual, scratch, 1))
        one_frame = SlabSettings(residual_slab_bytes=activation // 9)  # one frame a slab
        level1 = frame_slabs.run_stack_in_slabs(encoder.down1, coeffs, one_frame)
    assert_reordered(level1, reference)
    # A new output beside the body's activations: 2+ activations. In place, one frame at a time:
    # the body's activations of one frame (and the convolutions' copies of their slab input).
    assert block_peak >= 2 * activation, f"block: {block_peak / activation:.2f} activations"
    assert slab_peak <= 0.6 * activation, f"in place: {slab_peak / activation:.2f} activations"


def test_in_place_residual_refuses_autograd_and_shape_changes() -> None:
    x = torch.zeros(1, 2, 4, 3, 3)
    with pytest.raises(ValueError, match="frames per slab must be positive"):
        add_frame_slabs_(lambda v: v, x, 0)
    with pytest.raises(ValueError, match="must keep the slab's shape"):
        add_frame_slabs_(lambda v: v[:, :1], x, 2)
    with pytest.raises(ValueError, match="cannot run under autograd"):
        add_frame_slabs_(lambda v: v, x.clone().requires_grad_(True), 2)
