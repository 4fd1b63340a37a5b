"""Causal Cache: every chunk plan gives the whole clip's result; streams never meet."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tolerances import assert_reordered

from model import WFVAE, InputShapeError, StreamingUnsupportedError, WFVAEConfig
from model.streaming import frame_chunks, latent_chunks


def chunk_plan(total: int) -> st.SearchStrategy[list[int]]:
    """Chunk sizes (zeros allowed) that add up to `total`."""
    return st.lists(st.integers(0, max(total, 1)), max_size=12).map(lambda sizes: _fit(sizes, total))


def _fit(sizes: list[int], total: int) -> list[int]:
    plan, used = [], 0
    for size in sizes:
        size = min(size, total - used)
        plan.append(size)
        used += size
    return plan + [total - used] if used < total else plan


def _split(t: torch.Tensor, plan: list[int]) -> list[torch.Tensor]:
    starts = [sum(plan[:i]) for i in range(len(plan))]
    return [t[:, :, s : s + n] for s, n in zip(starts, plan, strict=True)]


@settings(max_examples=25, deadline=None)
@given(data=st.data(), batch=st.sampled_from([1, 2]), k=st.integers(0, 4))
def test_any_encode_plan_equals_whole_clip(tiny_vae: WFVAE, data, batch: int, k: int) -> None:
    frames = 1 + 4 * k
    x = torch.rand(batch, 3, frames, 16, 24, generator=torch.Generator().manual_seed(k)) * 2 - 1
    plan = data.draw(chunk_plan(frames))
    with torch.inference_mode():
        whole = tiny_vae.encode(x).moments
        stream = tiny_vae.encode_stream()
        pieces = [stream.push(chunk) for chunk in _split(x, plan)]
        pieces.append(stream.flush())
    streamed = torch.cat(pieces, dim=2)
    assert streamed.shape == whole.shape
    assert_reordered(streamed, whole)


@settings(max_examples=25, deadline=None)
@given(data=st.data(), batch=st.sampled_from([1, 2]), latents=st.integers(1, 5))
def test_any_decode_plan_equals_whole_clip(tiny_vae: WFVAE, data, batch: int, latents: int) -> None:
    z = torch.randn(batch, 8, latents, 2, 3, generator=torch.Generator().manual_seed(latents))
    plan = data.draw(chunk_plan(latents))
    with torch.inference_mode():
        whole = tiny_vae.decode(z)
        stream = tiny_vae.decode_stream()
        pieces = [stream.push(chunk) for chunk in _split(z, plan)]
        pieces.append(stream.flush())
    streamed = torch.cat(pieces, dim=2)
    assert streamed.shape == whole.shape == (batch, 3, 1 + 4 * (latents - 1), 16, 24)
    assert_reordered(streamed, whole)


@pytest.mark.parametrize(
    ("frames", "chunk", "plan"),
    [(17, 16, [17]), (33, 16, [17, 16]), (41, 16, [17, 16, 8]), (9, 4, [5, 4]), (1, 4, [1]), (10, 3, [4, 3, 3])],
)
def test_chunks_end_on_latent_boundaries(frames: int, chunk: int, plan: list[int]) -> None:
    # The first latent frame covers one video frame, the others four: the first chunk is one longer.
    chunks = frame_chunks(frames, chunk)
    assert [c.stop - c.start for c in chunks] == plan
    assert chunks[0].start == 0 and chunks[-1].stop == frames
    assert all(a.stop == b.start for a, b in zip(chunks, chunks[1:], strict=False))


def test_chunk_plans_cover_the_clip_and_refuse_bad_sizes() -> None:
    assert [c.stop - c.start for c in latent_chunks(5, 2)] == [2, 2, 1]
    assert latent_chunks(5, None) == [slice(0, 5)] and frame_chunks(17, None) == [slice(0, 17)]
    with pytest.raises(InputShapeError, match="chunk_latents must be a positive integer"):
        latent_chunks(5, 0)
    with pytest.raises(InputShapeError, match="chunk_frames must be a positive integer"):
        frame_chunks(17, True)


def test_convenience_chunking_matches(tiny_vae: WFVAE) -> None:
    x = torch.rand(1, 3, 17, 16, 16) * 2 - 1
    with torch.inference_mode():
        whole = tiny_vae.encode(x).mean
        z = whole
        decoded = tiny_vae.decode(z)
        for n in (1, 4, 5, 17, 40):
            assert_reordered(tiny_vae.encode(x, chunk_frames=n).mean, whole)
        for n in (1, 2, 5):
            assert_reordered(tiny_vae.decode(z, chunk_latents=n), decoded)


def test_latents_leave_as_soon_as_determined(tiny_vae: WFVAE) -> None:
    """Latent m depends on frames up to 4m: pushing frame 4m releases it, nothing earlier does."""
    x = torch.rand(1, 3, 13, 16, 16) * 2 - 1
    with torch.inference_mode():
        whole = tiny_vae.encode(x).moments
        stream = tiny_vae.encode_stream()
        released = [stream.push(x[:, :, t : t + 1]) for t in range(13)]
    assert [r.shape[2] for r in released] == [1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1]
    assert_reordered(torch.cat(released, dim=2), whole)


def test_decoder_holds_back_only_undetermined_frames(tiny_vae: WFVAE) -> None:
    """After latents 0..m (m >= 1) frames 0..4m-2 are out; the rest waits for the next latent."""
    z = torch.randn(1, 8, 4, 2, 2)
    with torch.inference_mode():
        whole = tiny_vae.decode(z)
        stream = tiny_vae.decode_stream()
        released = [stream.push(z[:, :, m : m + 1]) for m in range(4)]
        released.append(stream.flush())
    assert [r.shape[2] for r in released] == [1, 2, 4, 4, 2]
    assert_reordered(torch.cat(released, dim=2), whole)


def _stream_frame_by_frame(make_stream, t: torch.Tensor) -> torch.Tensor:
    stream = make_stream()
    parts = [stream.push(t[:, :, i : i + 1]) for i in range(t.shape[2])]
    return torch.cat([*parts, stream.flush()], dim=2)


def test_interleaved_streams_equal_separate_ones(tiny_vae: WFVAE) -> None:
    a = torch.rand(1, 3, 9, 16, 16) * 2 - 1
    b = torch.rand(2, 3, 13, 24, 16) * 2 - 1
    with torch.inference_mode():
        alone_a = _stream_frame_by_frame(tiny_vae.encode_stream, a)
        alone_b = _stream_frame_by_frame(tiny_vae.encode_stream, b)
        sa, sb = tiny_vae.encode_stream(), tiny_vae.encode_stream()
        out_a, out_b = [], []
        for t in range(13):
            if t < 9:
                out_a.append(sa.push(a[:, :, t : t + 1]))
            out_b.append(sb.push(b[:, :, t : t + 1]))
        assert torch.equal(torch.cat([*out_a, sa.flush()], 2), alone_a)
        assert torch.equal(torch.cat([*out_b, sb.flush()], 2), alone_b)
        assert_reordered(alone_a, tiny_vae.encode(a).moments)

        za, zb = alone_a[:, :8], alone_b[:, :8]
        video_a = _stream_frame_by_frame(tiny_vae.decode_stream, za)
        video_b = _stream_frame_by_frame(tiny_vae.decode_stream, zb)
        da, db = tiny_vae.decode_stream(), tiny_vae.decode_stream()
        parts_a, parts_b = [], []
        for m in range(4):
            if m < 3:
                parts_a.append(da.push(za[:, :, m : m + 1]))
            parts_b.append(db.push(zb[:, :, m : m + 1]))
        assert torch.equal(torch.cat([*parts_a, da.flush()], 2), video_a)
        assert torch.equal(torch.cat([*parts_b, db.flush()], 2), video_b)
        assert_reordered(video_b, tiny_vae.decode(zb))


def test_streaming_leaves_the_module_untouched(tiny_vae: WFVAE) -> None:
    before = {k: v.clone() for k, v in tiny_vae.state_dict().items()}
    attributes = {name: dict(vars(m)) for name, m in tiny_vae.named_modules()}
    with torch.inference_mode():
        stream = tiny_vae.encode_stream()
        stream.push(torch.zeros(1, 3, 5, 16, 16))
    assert all(torch.equal(before[k], v) for k, v in tiny_vae.state_dict().items())
    after = {name: dict(vars(m)) for name, m in tiny_vae.named_modules()}
    assert after.keys() == attributes.keys()
    for name in after:
        assert after[name].keys() == attributes[name].keys(), name


def test_stream_misuse_is_reported(tiny_vae: WFVAE) -> None:
    with torch.inference_mode():
        stream = tiny_vae.encode_stream()
        stream.push(torch.zeros(1, 3, 6, 16, 16))
        with pytest.raises(InputShapeError, match="differ from the stream's first chunk"):
            stream.push(torch.zeros(1, 3, 1, 16, 24))
        with pytest.raises(InputShapeError, match="got 6; trim it to 5 frames"):
            stream.flush()
        done = tiny_vae.encode_stream()
        done.push(torch.zeros(1, 3, 1, 16, 16))
        done.flush()
        with pytest.raises(InputShapeError, match="flushed"):
            done.push(torch.zeros(1, 3, 1, 16, 16))
        with pytest.raises(InputShapeError, match="no latent frames"):
            tiny_vae.decode_stream().flush()


def test_single_image_streams(tiny_vae: WFVAE) -> None:
    x = torch.rand(2, 3, 1, 16, 16) * 2 - 1
    with torch.inference_mode():
        z = tiny_vae.encode(x, chunk_frames=1).mean
        assert torch.equal(z, tiny_vae.encode(x).mean)
        assert torch.equal(tiny_vae.decode(z, chunk_latents=1), tiny_vae.decode(z))


def test_causality(tiny_vae: WFVAE) -> None:
    """Changing frame t changes no latent before t's own (ceil(t / 4)); latent m no frame before 4m - 5."""
    x = torch.rand(1, 3, 17, 16, 16) * 2 - 1
    with torch.inference_mode():
        base = tiny_vae.encode(x).moments
        for t in (1, 4, 5, 11, 16):
            changed = x.clone()
            changed[:, :, t] = -changed[:, :, t]
            moved = tiny_vae.encode(changed).moments
            first = -(-t // 4)
            assert torch.equal(moved[:, :, :first], base[:, :, :first]), t
            assert not torch.equal(moved[:, :, first], base[:, :, first]), t
        z = base[:, :8]
        video = tiny_vae.decode(z)
        for m in (2, 3, 4):
            changed = z.clone()
            changed[:, :, m] += 1.0
            moved = tiny_vae.decode(changed)
            assert torch.equal(moved[:, :, : 4 * m - 5], video[:, :, : 4 * m - 5]), m
            assert not torch.equal(moved[:, :, 4 * m - 5], video[:, :, 4 * m - 5]), m


def test_bf16_streams_match_whole_clip(tiny_parity_dir) -> None:
    from model import load_wfvae

    vae = load_wfvae(tiny_parity_dir, dtype=torch.bfloat16, force_dtype=True)
    x = torch.rand(1, 3, 17, 16, 16) * 2 - 1
    with torch.inference_mode():
        whole = vae.encode(x).moments.float()
        chunked = vae.encode(x, chunk_frames=3).moments.float()
        video = vae.decode(whole[:, :8]).float()
        video_chunked = vae.decode(whole[:, :8], chunk_latents=2).float()
    # bf16 keeps 8 bits of mantissa; convolutions over different lengths may round differently.
    assert (chunked - whole).abs().max() <= 2e-2 * whole.abs().max()
    assert (video_chunked - video).abs().max() <= 2e-2 * video.abs().max()


def test_groupnorm_config_refuses_chunked_inference() -> None:
    config = WFVAEConfig(base_channels=32, encoder_energy_flow_hidden_size=32, decoder_energy_flow_hidden_size=32,
                         norm_type="groupnorm", latent_dim=8)
    vae = WFVAE(config).eval()
    x = torch.rand(1, 3, 5, 16, 16)
    with torch.inference_mode():
        assert vae.encode(x).mean.shape == (1, 8, 2, 2, 2)  # whole clip still works
        with pytest.raises(StreamingUnsupportedError, match="cannot equal whole-clip"):
            vae.encode(x, chunk_frames=4)
        with pytest.raises(StreamingUnsupportedError):
            vae.decode_stream()
