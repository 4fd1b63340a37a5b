"""The media path on real and synthetic videos: frame indices, strides, modes, buckets, decoders, resizing, errors."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from model.errors import InputShapeError, VideoDecodeError
from model.media import (
    AUTO_ORDER,
    ClipSettings,
    available_decoders,
    choose_bucket,
    covering_size,
    crop_center,
    decode_frames,
    encode_mp4,
    open_frames,
    plan_clip_starts,
    probe_video,
    resolve_decoder,
    sample_clips,
    to_model_input,
)
from model.media import decoders as decoders_module
from model.media import reading as reading_module

TINY = {"num_frames": 9, "height": 64, "width": 64}


def test_first_clip_of_real_footage(media: dict[str, bytes]) -> None:
    (clip,) = sample_clips(media["carphone"], ClipSettings(**TINY))
    assert clip.frames.shape == (9, 64, 64, 3) and clip.frames.dtype == np.uint8
    assert clip.frame_indices == list(range(9))
    assert clip.fps == pytest.approx(24.0)
    assert clip.source_size == (144, 176) and clip.target_size == (64, 64) and clip.bucket is None
    assert clip.frames.std() > 10  # real picture content, not a blank


def test_stride_from_target_fps_and_start_frame(media: dict[str, bytes]) -> None:
    (clip,) = sample_clips(media["synth_b"], ClipSettings(**TINY, target_fps=12, start_frame=3))
    assert clip.frame_indices == list(range(3, 20, 2))
    assert clip.fps == pytest.approx(12.0)


def test_uniform_and_all_modes(media: dict[str, bytes]) -> None:  # synth_a has 20 frames
    uniform = sample_clips(media["synth_a"], ClipSettings(**TINY, clip_mode="uniform", num_clips=3))
    assert [c.frame_indices[0] for c in uniform] == [0, 6, 11]
    every = sample_clips(media["synth_a"], ClipSettings(**TINY, clip_mode="all"))
    assert [c.frame_indices for c in every] == [list(range(0, 9)), list(range(9, 18))]
    assert [c.clip_index for c in every] == [0, 1]
    capped = sample_clips(media["synth_a"], ClipSettings(**TINY, clip_mode="all", num_clips=1))
    assert len(capped) == 1
    # the same frames as the first clip, whichever mode cut them
    assert np.array_equal(every[0].frames, uniform[0].frames)


def test_each_video_goes_to_its_nearest_bucket(media: dict[str, bytes]) -> None:
    buckets = "9x64x64,9x32x96,9x96x64"
    wide = sample_clips(media["bikes"], ClipSettings(buckets=buckets))  # 160x68
    tall = sample_clips(media["synth_b"], ClipSettings(buckets=buckets))  # 64 wide, 96 high
    assert (wide[0].bucket, wide[0].frames.shape) == ("9x32x96", (9, 32, 96, 3))
    assert (tall[0].bucket, tall[0].frames.shape) == ("9x96x64", (9, 96, 64, 3))


def test_longest_bucket_that_fits_wins_among_equal_aspects() -> None:
    settings = ClipSettings(buckets="17x64x64,9x64x64,33x64x64")
    assert (
        choose_bucket(settings.buckets, (64, 64), frames_available=20, stride=1).name == "17x64x64"
    )
    assert (
        choose_bucket(settings.buckets, (64, 64), frames_available=40, stride=1).name == "33x64x64"
    )


def test_crop_keeps_the_centre_and_stretch_keeps_everything() -> None:
    image = np.zeros((64, 192, 3), np.uint8)
    image[:, 64:128] = 255  # white centre third, black sides
    video = encode_mp4(np.stack([image] * 9), 24)
    (cropped,) = sample_clips(video, ClipSettings(**TINY))
    (stretched,) = sample_clips(video, ClipSettings(**TINY, resize_mode="stretch"))
    assert cropped.frames[:, :, 4:-4].min() > 200
    assert stretched.frames[:, :, :16].max() < 60 and stretched.frames[:, :, 28:36].min() > 200


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return 10 * np.log10(255**2 / mse) if mse else float("inf")


# Every backend runs FFmpeg's H.264 decoder (bit-exact YUV) and a bilinear scaler; they differ in
# the YUV -> RGB conversion and the scaler's rounding, a few grey levels at edges (PyAV against
# decord: 51 dB on bigbuckbunny). 40 dB (2.6 levels RMS) is what a faster path may cost against
# the float resize; a wrong frame, size or channel order measures under 25 dB.
BACKENDS_AGREE_DB = 40.0


@pytest.mark.parametrize("medium", ["bikes", "bunny", "carphone"])
def test_every_installed_decoder_gives_the_same_clip(media: dict[str, bytes], medium: str) -> None:
    installed = available_decoders()
    assert "pyav" in installed  # PyAV is a dependency: the fallback that installs everywhere
    clips = {name: sample_clips(media[medium], ClipSettings(**TINY, clip_mode="uniform", num_clips=2, decoder=name))
             for name in installed}
    reference = clips[installed[0]]
    for name, got in clips.items():
        assert [c.frame_indices for c in got] == [c.frame_indices for c in reference]
        assert all(c.decoder == name for c in got)
        for a, b in zip(got, reference, strict=True):
            assert a.frames.shape == b.frames.shape == (9, 64, 64, 3)
            assert _psnr(a.frames, b.frames) >= BACKENDS_AGREE_DB, name


@pytest.mark.parametrize("decoder", AUTO_ORDER)
def test_scaling_in_the_decoder_matches_a_float_resize(media: dict[str, bytes], decoder: str) -> None:
    """Each decoder's scaled frames against the float, antialiased resize of full-size frames."""
    if decoder not in available_decoders():
        pytest.skip(f"{decoder} is not installed here")
    settings = ClipSettings(num_frames=9, height=32, width=32, decoder=decoder)
    (clip,) = sample_clips(media["bikes"], settings)
    info = probe_video(media["bikes"])
    full = torch.from_numpy(decode_frames(media["bikes"], clip.frame_indices, info.frame_size)).permute(0, 3, 1, 2)
    size = covering_size(info.frame_size, (32, 32))
    resized = F.interpolate(full.float(), size=size, mode="bilinear", antialias=True, align_corners=False)
    expected = crop_center(resized.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy(), 32, 32)
    assert _psnr(clip.frames, expected) >= BACKENDS_AGREE_DB


@pytest.mark.parametrize("decoder", AUTO_ORDER)
def test_decoding_in_chunks_gives_the_same_clips(
    media: dict[str, bytes], monkeypatch: pytest.MonkeyPatch, decoder: str
) -> None:
    if decoder not in available_decoders():
        pytest.skip(f"{decoder} is not installed here")
    settings = ClipSettings(**TINY, clip_mode="all", frame_stride=1, decoder=decoder)
    whole = sample_clips(media["carphone"], settings)
    monkeypatch.setattr(reading_module, "DECODE_CHUNK_BYTES", 1)  # one frame per decoder call
    chunked = sample_clips(media["carphone"], settings)
    assert len(whole) == len(chunked) == 2
    for a, b in zip(whole, chunked, strict=True):
        assert a.frame_indices == b.frame_indices and np.array_equal(a.frames, b.frames)


@pytest.mark.parametrize("decoder", AUTO_ORDER)
def test_one_open_video_reads_chunks_in_any_order(media: dict[str, bytes], decoder: str) -> None:
    # Ascending chunks go on from where the last stopped; an earlier frame, or a repeat, is
    # read again: every read equals a fresh decode of the same frames.
    if decoder not in available_decoders():
        pytest.skip(f"{decoder} is not installed here")
    size = (36, 64)
    with open_frames(media["bunny"], size, decoder) as reader:
        reads = [(indices, reader.read(indices)) for indices in ([0, 2], [5, 9, 9], [3, 1], [12])]
    for indices, got in reads:
        assert got.shape == (len(indices), *size, 3)
        assert np.array_equal(got, decode_frames(media["bunny"], indices, size, decoder)), indices


def _short_gop(path: Path, frames: int, size: tuple[int, int], keyint: int) -> bytes:
    """Real footage re-encoded with a keyframe every `keyint` frames (B-frames kept)."""
    import av

    height, width = size
    with av.open(str(path)) as source:
        images = [f.reformat(width=width, height=height, format="rgb24").to_ndarray()
                  for _, f in zip(range(frames), source.decode(video=0), strict=False)]
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.height, stream.width, stream.pix_fmt = height, width, "yuv420p"
        stream.options = {"crf": "18", "x264-params": f"keyint={keyint}:min-keyint={keyint}:scenecut=0"}
        for image in images:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))
    return buffer.getvalue()


def test_pyav_seeks_to_the_keyframe_before_a_far_frame_and_gives_the_same_frames(
    sample_videos: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    video, size = _short_gop(sample_videos["bigbuckbunny"], 132, (72, 128), keyint=8), (72, 128)
    reads = [[40, 41, 60], [100, 131], [5, 6], [129]]  # far ahead, then back, then far again
    monkeypatch.setattr(decoders_module, "SEEK_AHEAD_FRAMES", 1 << 30)  # never seek: decode on
    expected = [decode_frames(video, indices, size, "pyav") for indices in reads]
    monkeypatch.setattr(decoders_module, "SEEK_AHEAD_FRAMES", 0)  # seek wherever a keyframe is nearer
    with open_frames(video, size, "pyav") as reader:
        got = [reader.read(indices) for indices in reads]
        assert reader._reader._by_pts  # the last read came after a seek
    for indices, a, b in zip(reads, got, expected, strict=True):
        assert np.array_equal(a, b), indices
    if "decord" in available_decoders():  # decord numbers frames the same way
        assert _psnr(got[1], decode_frames(video, reads[1], size, "decord")) >= BACKENDS_AGREE_DB


def test_a_decoder_that_is_not_there_is_named() -> None:
    missing = next((name for name in AUTO_ORDER if name not in available_decoders()), None)
    if missing is None:
        pytest.skip("every decoder backend is installed here")
    with pytest.raises(VideoDecodeError) as caught:
        resolve_decoder(missing)
    assert caught.value.reason == "no_decoder" and missing in str(caught.value)
    assert resolve_decoder("auto") == available_decoders()[0]


def test_probe_counts_every_video_stream(media: dict[str, bytes]) -> None:
    info = probe_video(media["bikes"])
    assert (info.frame_count, info.frame_size, info.video_streams) == (20, (68, 160), 1)
    assert info.largest_frame_size == info.frame_size and info.fps == pytest.approx(24.0)


@pytest.mark.parametrize(
    ("medium", "reason"),
    [
        ("zero_bytes", "empty"),
        ("text", "unreadable"),
        ("truncated", "unreadable"),
        ("three_frames", "too_short"),
    ],
)
def test_bad_videos_raise_video_decode_errors(
    media: dict[str, bytes], medium: str, reason: str
) -> None:
    with pytest.raises(VideoDecodeError) as caught:
        sample_clips(media[medium], ClipSettings(**TINY))
    assert caught.value.reason == reason
    assert reason in str(caught.value)


def test_model_input_layout_and_range() -> None:
    frames = np.zeros((5, 8, 16, 3), np.uint8)
    frames[1, 2, 3] = (255, 0, 128)
    x = to_model_input(frames)
    assert x.shape == (1, 3, 5, 8, 16) and x.dtype == torch.float32
    assert x[0, :, 1, 2, 3].tolist() == pytest.approx([1.0, -1.0, 128 / 127.5 - 1], abs=1e-6)
    assert x.min() == -1.0
    with pytest.raises(InputShapeError):
        to_model_input(frames.astype(np.float32))


@pytest.mark.parametrize(
    "bad",
    [
        {"num_frames": 10},
        {"height": 60},
        {"buckets": "9x64"},
        {"buckets": "8x64x64"},
        {"clip_mode": "random"},
    ],
)
def test_invalid_settings_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        ClipSettings(**bad)


@settings(max_examples=200, deadline=None)
@given(
    total=st.integers(0, 200),
    k=st.integers(0, 8),
    stride=st.integers(1, 4),
    start=st.integers(0, 30),
    mode=st.sampled_from(["first", "uniform", "all"]),
    num_clips=st.one_of(st.none(), st.integers(1, 6)),
)
def test_planned_clips_lie_inside_the_video(
    total: int, k: int, stride: int, start: int, mode: str, num_clips: int | None
) -> None:
    num_frames = 1 + 4 * k
    span = (num_frames - 1) * stride + 1
    settings_ = ClipSettings(
        num_frames=num_frames, start_frame=start, clip_mode=mode, num_clips=num_clips
    )
    if total - start < span:
        with pytest.raises(VideoDecodeError):
            plan_clip_starts(settings_, num_frames, total, stride)
        return
    starts = plan_clip_starts(settings_, num_frames, total, stride)
    assert starts and starts == sorted(set(starts)) and starts[0] == start
    assert all(start <= s and s + span <= total for s in starts)
    if mode == "all":
        assert all(b - a >= span for a, b in zip(starts, starts[1:], strict=False))
        assert len(starts) == min((total - start) // span, num_clips or 10**9)
    if mode == "uniform":
        assert len(starts) <= (num_clips or 1)
        if (num_clips or 1) > 1:
            assert starts[-1] == total - span
