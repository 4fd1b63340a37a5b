"""Causal residual blocks run in slabs of frames, as a stream: the same result, less memory."""

from __future__ import annotations

import pytest
import torch
from tolerances import assert_reordered

from model import WFVAE, FastPath
from model.causal import WHOLE_CLIP, CausalContext, StreamState
from model.fast_path import Plan, SlabSettings, causal_slabs, engaged
from model.fast_path.causal_slabs import even_slabs, run_block, run_block_in_slabs, slab_frames
from model.layers import ResnetBlock3D
from model.tensor_memory import peak_live_bytes

PARITY_TOL = 1e-4  # as tests/model/test_parity.py


def _block(in_channels: int, out_channels: int, seed: int, norm_type: str = "layernorm") -> ResnetBlock3D:
    torch.manual_seed(seed)
    block = ResnetBlock3D(in_channels, out_channels, norm_type, 0.0).eval()
    with torch.no_grad():  # norms away from identity, so a slab seeing other frames would show
        for p in block.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    block.conv1.cache_key, block.conv2.cache_key = "conv1", "conv2"
    if block.nin_shortcut is not None:
        block.nin_shortcut.cache_key = "nin_shortcut"
    return block


def _clip(channels: int, frames: int, seed: int) -> torch.Tensor:
    return torch.randn(2, channels, frames, 6, 5, generator=torch.Generator().manual_seed(seed)) * 2 + 0.5


@pytest.mark.parametrize("frames", [1, 2, 4, 7, 9])
def test_slabs_written_over_the_input_equal_the_block(frames: int) -> None:
    block, x = _block(8, 8, seed=0), _clip(8, 7, seed=1)
    with torch.inference_mode():
        expected = block(x.clone(), WHOLE_CLIP)
        out = run_block_in_slabs(block, x, WHOLE_CLIP, frames)
    assert out.data_ptr() == x.data_ptr()  # written over its input
    assert_reordered(out, expected)


@pytest.mark.parametrize("frames", [1, 3])
def test_slabs_of_a_block_changing_channels_fill_a_new_output(frames: int) -> None:
    block, x = _block(8, 4, seed=2), _clip(8, 7, seed=3)
    original = x.clone()
    with torch.inference_mode():
        expected = block(x, WHOLE_CLIP)
        out = run_block_in_slabs(block, x, WHOLE_CLIP, frames)
    assert out.shape == expected.shape == (2, 4, 7, 6, 5)
    assert_reordered(out, expected)
    assert torch.equal(x, original)  # read only


def test_slabs_inside_stream_chunks_equal_the_whole_clip() -> None:
    # Chunks of 3, 1 and 5 frames, each in slabs of 2, through one stream state.
    block, x = _block(8, 8, seed=4), _clip(8, 9, seed=5)
    with torch.inference_mode():
        expected = block(x.clone(), WHOLE_CLIP)
        stream = CausalContext(StreamState(), final=False)
        outputs = [run_block_in_slabs(block, x[:, :, a:b].clone(), stream, 2) for a, b in ((0, 3), (3, 4), (4, 9))]
    assert_reordered(torch.cat(outputs, dim=2), expected)


def test_slabs_hold_a_slab_of_activations_beside_the_input() -> None:
    block, x = _block(32, 32, seed=6), _clip(32, 12, seed=7)
    activation = x.numel() * x.element_size()
    with torch.inference_mode():
        whole = peak_live_bytes(lambda: block(x.clone(), WHOLE_CLIP)) - activation
        in_slabs = peak_live_bytes(lambda: run_block_in_slabs(block, x.clone(), WHOLE_CLIP, 2)) - activation
    # Whole: a window (14 of 12 frames) and an output, 2.17 activations or more. In 2-frame
    # slabs: windows of 4 frames, outputs of 2 and two 2-frame tails, about one in all.
    assert whole > 2 * activation
    assert in_slabs < 1.2 * activation


def test_slab_plan() -> None:
    block = _block(8, 8, seed=8)
    frame = 2 * 8 * 6 * 5 * 4  # bytes of one frame of _clip(8, ...) at the block's width
    default = SlabSettings()
    under_nine = SlabSettings(slab_bytes=9 * frame - 1)
    assert slab_frames(block, _clip(8, 9, seed=9), default) == 9  # the clip fits: whole
    assert slab_frames(block, _clip(8, 9, seed=9), under_nine) == 3  # max_slabs of 3
    assert slab_frames(block, _clip(8, 17, seed=9), under_nine) == 6  # 6 + 6 + 5
    assert slab_frames(block, _clip(8, 8, seed=9), under_nine) == 8  # under the size threshold again
    assert slab_frames(_block(8, 16, seed=10), _clip(8, 8, seed=9), under_nine) == 3  # the wider side counts
    none = SlabSettings(slab_bytes=0)
    assert slab_frames(block, _clip(8, 5, seed=9), none) == none.min_slab_frames == 3  # 3 + 2, not 5 x 1
    # GroupNorm's statistics span the clip: such blocks run whole.
    assert slab_frames(_block(32, 32, seed=11, norm_type="groupnorm"), _clip(32, 9, 12), none) == 9


def test_slabs_are_even() -> None:
    assert even_slabs(9, 4) == [(0, 3), (3, 6), (6, 9)]  # not 4 + 4 + 1
    assert even_slabs(17, 3) == [(0, 3), (3, 6), (6, 9), (9, 12), (12, 15), (15, 17)]
    assert even_slabs(5, 5) == even_slabs(5, 8) == [(0, 5)]
    assert even_slabs(2, 1) == [(0, 1), (1, 2)]


def test_run_block_picks_slabs_where_the_plan_has_them_over_the_size_threshold() -> None:
    block, x = _block(8, 8, seed=13), _clip(8, 5, seed=14)
    with torch.inference_mode():
        expected = block(x.clone(), WHOLE_CLIP)
        whole = x.clone()
        assert run_block(block, whole, WHOLE_CLIP).data_ptr() != whole.data_ptr()  # no plan: the block
        with engaged(Plan(slabs=SlabSettings())):
            assert run_block(block, whole, WHOLE_CLIP).data_ptr() != whole.data_ptr()  # small: the block
        sliced = x.clone()
        with engaged(Plan(slabs=SlabSettings(slab_bytes=0))):
            out = run_block(block, sliced, WHOLE_CLIP)
    assert out.data_ptr() == sliced.data_ptr()  # in slabs, over its input
    assert_reordered(out, expected)


def test_slab_errors() -> None:
    block, x = _block(8, 8, seed=15), _clip(8, 3, seed=16)
    with pytest.raises(ValueError, match="frames per slab must be positive"):
        run_block_in_slabs(block, x, WHOLE_CLIP, 0)
    with pytest.raises(ValueError, match="under autograd"):
        run_block_in_slabs(block, x.clone().requires_grad_(True), WHOLE_CLIP, 1)
    with pytest.raises(ValueError, match="GroupNorm spans the whole clip"):
        run_block_in_slabs(_block(32, 32, seed=17, norm_type="groupnorm"), _clip(32, 3, 18), WHOLE_CLIP, 1)
    unnamed = ResnetBlock3D(8, 8, "layernorm", 0.0).eval()
    with pytest.raises(ValueError, match="distinct cache keys"):
        run_block_in_slabs(unnamed, x, WHOLE_CLIP, 1)


@pytest.mark.parametrize("case", [0, 1, 2])
def test_model_in_one_frame_slabs_reproduces_official_moments_and_decoding(
        tiny_vae: WFVAE, parity_cases, case: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # Every causal block in slabs of one frame, and level 1 a frame at a time.
    one_frame = SlabSettings(slab_bytes=0, residual_slab_bytes=0, max_slabs=1 << 30, min_slab_frames=1)
    monkeypatch.setattr(tiny_vae, "fast_path", FastPath(slabs=one_frame))
    with torch.inference_mode():
        moments = tiny_vae.encode(parity_cases[f"case{case}.input"]).moments
        z = parity_cases[f"case{case}.moments"].chunk(2, dim=1)[0]  # the official mean
        decoded = tiny_vae.decode(z)
        chunked = tiny_vae.decode(z, chunk_latents=1)
    assert (moments - parity_cases[f"case{case}.moments"]).abs().max() < PARITY_TOL
    expected = parity_cases[f"case{case}.decoded"]
    assert (decoded - expected).abs().max() < PARITY_TOL
    assert (chunked - expected).abs().max() < PARITY_TOL


def test_every_causal_block_of_the_model_runs_in_slabs_over_the_threshold(
        tiny_vae: WFVAE, parity_cases, monkeypatch: pytest.MonkeyPatch) -> None:
    # Records the blocks that go through the real slab loop, which it still runs.
    ran: list[ResnetBlock3D] = []
    real = causal_slabs.run_block_in_slabs

    def recorded(block: ResnetBlock3D, x: torch.Tensor, ctx: CausalContext, frames: int) -> torch.Tensor:
        ran.append(block)
        return real(block, x, ctx, frames)

    monkeypatch.setattr(causal_slabs, "run_block_in_slabs", recorded)
    x = parity_cases["case0.input"]  # 9 frames: every block sees 3 frames or more
    with torch.inference_mode():
        tiny_vae.decode(tiny_vae.encode(x).mean)
        assert ran == []  # the tiny model's activations are far under the default slab_bytes
        monkeypatch.setattr(tiny_vae, "fast_path", FastPath(slabs=SlabSettings(slab_bytes=0, min_slab_frames=1)))
        tiny_vae.decode(tiny_vae.encode(x).mean)
    blocks = [m for m in tiny_vae.modules() if isinstance(m, ResnetBlock3D)]
    assert {id(b) for b in ran} == {id(b) for b in blocks}
