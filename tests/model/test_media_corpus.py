"""Every kind of video a real bucket holds, through `sample_clips` on every installed backend, held to what FFmpeg shows.

The corpus (`media_samples.corpus_videos`) is written with FFmpeg's own encoders; the reference
is PyAV's frames, each turned by hand by its display matrix (`media_samples.shown_frames`), and
for display matrices FFmpeg's CLI itself (imageio-ffmpeg's binary, which applies them by default).
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from media_samples import (
    CORPUS_FRAMES,
    OK,
    PARTIAL,
    CorpusVideo,
    display_matrix_video,
    frame_seconds,
    nearest_frames,
    shown_frames,
)

from model.errors import VideoDecodeError
from model.media import (
    AUTO_ORDER,
    ClipSettings,
    available_decoders,
    covering_size,
    crop_center,
    decode_frames,
    probe_video,
    sample_clips,
)
from model.media import routing as routing_module
from model.media.decoders import make_reader
from model.media.timing import frames_at_rate

CLIP = {"num_frames": 9, "height": 64, "width": 64}
# Clip frames against FFmpeg's, after the same resize and crop: equal where the decoder does not
# scale (the corpus is 96x64: 64x64 clips need none), 45 dB where it does (3GP's 128x96, the
# scaler's rounding against a float resize). A neighbouring frame of the footage measures 22-24
# dB, a wrong turn 10 dB: 40 dB tells every wrong frame apart.
FRAMES_AGREE_DB = 40.0
WRONG_FRAME_DB = 30.0
# decord and torchcodec are given only the containers where decord's frame index was exact
CODEC_REFUSED = {"decord": {"av1_svt.mp4", "av1.webm"}}  # decord's FFmpeg has no AV1 decoder
INDEX_NOT_EXACT = {"mpeg2.ts", "h264.m2ts", "mpeg1.mpg", "wmv2.wmv", "vp8.ogv"}


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return 10 * np.log10(255**2 / mse) if mse else float("inf")


def _reference_clip(shown: np.ndarray, indices: list[int], size: tuple[int, int]) -> np.ndarray:
    """FFmpeg's frames `indices`, resized (float, antialiased) to cover `size` and centre-cropped."""
    frames = (
        torch.from_numpy(np.ascontiguousarray(shown[indices])).permute(0, 3, 1, 2).float()
    )  # (T, 3, H, W)
    resized = F.interpolate(
        frames,
        size=covering_size(shown.shape[1:3], size),
        mode="bilinear",
        antialias=True,
        align_corners=False,
    )
    return crop_center(
        resized.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy(), *size
    )


def _refusal(backend: str, name: str) -> str | None:
    """The reason `backend`, named, must refuse corpus file `name` with (README: decoders and containers)."""
    if name in CODEC_REFUSED.get(backend, set()):
        return "unsupported_codec"
    if backend != "pyav" and name in INDEX_NOT_EXACT:
        return "unsupported_container"
    return None


def _installed(backend: str) -> None:
    if backend not in available_decoders():
        pytest.skip(f"{backend} is not installed here")


@pytest.mark.parametrize("backend", AUTO_ORDER)
def test_every_kind_of_video_gives_the_frames_ffmpeg_shows(
    media_corpus: dict[str, CorpusVideo], backend: str
) -> None:
    _installed(backend)
    checked = []
    for name, video in media_corpus.items():
        if video.outcome != OK:
            continue
        settings_ = ClipSettings(**CLIP, clip_mode="all", decoder=backend)
        refusal = _refusal(backend, name)
        if refusal is not None:  # never other frames: a refusal naming the codec or container
            with pytest.raises(VideoDecodeError) as caught:
                sample_clips(video.data, settings_)
            info = probe_video(video.data)
            assert caught.value.reason == refusal, name
            assert info.codec in str(caught.value) and info.container in str(caught.value)
            assert "pyav" in str(caught.value)  # who reads it instead
            continue
        clips = sample_clips(video.data, settings_)
        shown, fps = (
            shown_frames(video.data),
            probe_video(video.data).fps,
        )  # 24, the variable-rate file's mean
        assert [c.frame_indices for c in clips] == [list(range(0, 9)), list(range(9, 18))], name
        for clip in clips:
            assert (clip.decoder, clip.fps, clip.source_size) == (backend, fps, shown.shape[1:3]), (
                name
            )
            assert clip.frames_readable is None and clip.decode_notes() == {}
            agree = _psnr(clip.frames, _reference_clip(shown, clip.frame_indices, (64, 64)))
            assert agree >= FRAMES_AGREE_DB, (name, agree)
        checked.append(name)
    assert "phone_rotated.mp4" in checked and "hevc_10bit.mp4" in checked


def test_auto_takes_each_kind_to_a_backend_that_reads_it(
    media_corpus: dict[str, CorpusVideo],
) -> None:
    fastest = available_decoders()[0]
    for name, video in media_corpus.items():
        if video.outcome != OK:
            continue
        (clip,) = sample_clips(video.data, ClipSettings(**CLIP))
        trusted = _refusal(fastest, name) is None
        assert clip.decoder == (fastest if trusted else "pyav"), name
        assert (
            _psnr(
                clip.frames, _reference_clip(shown_frames(video.data), clip.frame_indices, (64, 64))
            )
            >= FRAMES_AGREE_DB
        )


def test_decord_is_passed_over_where_its_frame_index_is_not_exact(
    media_corpus: dict[str, CorpusVideo],
) -> None:
    """Why routing keeps decord from MPEG-TS, MPEG-PS and ASF: asked directly, it returns other
    frames than those asked for (or cannot open the file: M2TS, Ogg)."""
    _installed("decord")
    strided = list(range(0, CORPUS_FRAMES, 3))
    for name in sorted(INDEX_NOT_EXACT):
        data = media_corpus[name].data
        info, shown = probe_video(data), shown_frames(data)
        try:
            got = make_reader("decord", data, info.frame_size, info).read(strided)
        except Exception as error:  # decord's own error kinds
            assert "DECORDError" in type(error).__name__, name
            continue
        worst = min(_psnr(got[k], shown[i]) for k, i in enumerate(strided))
        assert worst < WRONG_FRAME_DB, (name, worst)


def _ffmpeg_shown(video: bytes) -> np.ndarray:
    """The first frame as FFmpeg's CLI shows it (autorotate is its default), (H, W, 3) uint8."""
    import imageio_ffmpeg

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "video.mp4"
        path.write_bytes(video)
        probe = subprocess.run(
            [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)],
            capture_output=True,
            text=True,
        ).stderr
        raw = subprocess.run(
            [
                imageio_ffmpeg.get_ffmpeg_exe(),
                "-v",
                "error",
                "-i",
                str(path),
                "-frames:v",
                "1",
                "-f",
                "rawvideo",
                "-pix_fmt",
                "rgb24",
                "-",
            ],
            capture_output=True,
            check=True,
        ).stdout
    turned = "rotation of -90" in probe or "rotation of 90" in probe
    height, width = (128, 64) if turned else (64, 128)
    return np.frombuffer(raw, np.uint8).reshape(height, width, 3)


DISPLAY_MATRICES = [
    (rotation, hflip, vflip)
    for rotation in (0, 90, 180, 270)
    for hflip, vflip in ((False, False), (True, False), (False, True))
]


@pytest.fixture(scope="module")
def display_matrix_videos() -> dict[tuple[int, bool, bool], tuple[bytes, np.ndarray]]:
    """Each turn and mirror a display matrix holds: the video, and its first frame as FFmpeg shows it."""
    videos = {}
    for case in DISPLAY_MATRICES:
        video = display_matrix_video(*case)
        videos[case] = (video, _ffmpeg_shown(video))
    return videos


@pytest.mark.parametrize("backend", AUTO_ORDER)
def test_display_matrices_are_applied_as_ffmpeg_applies_them(
    display_matrix_videos: dict[tuple[int, bool, bool], tuple[bytes, np.ndarray]], backend: str
) -> None:
    _installed(backend)
    for case, (video, expected) in display_matrix_videos.items():
        info = probe_video(video)
        assert info.frame_size == expected.shape[:2] and info.stream_sizes == ((64, 128),), case
        if (
            info.orientation.is_mirrored and backend != "pyav"
        ):  # decord (MP4) and torchcodec turn but do not mirror
            with pytest.raises(VideoDecodeError) as caught:
                decode_frames(video, [0], info.frame_size, backend)
            assert caught.value.reason == "unsupported_container" and "mirror" in str(caught.value)
            continue
        (got,) = decode_frames(video, [0], info.frame_size, backend)
        assert _psnr(got, expected) >= FRAMES_AGREE_DB, (case, _psnr(got, expected))
        (auto,) = decode_frames(video, [0], info.frame_size)
        assert _psnr(auto, expected) >= FRAMES_AGREE_DB, case


@pytest.mark.parametrize("backend", AUTO_ORDER)
def test_a_phone_video_is_cut_upright_at_any_scale(
    media_corpus: dict[str, CorpusVideo], backend: str
) -> None:
    _installed(backend)
    data = media_corpus["phone_rotated.mp4"].data  # stored 96x64, shown 64 wide and 96 high
    assert probe_video(data).frame_size == (96, 64)
    (clip,) = sample_clips(data, ClipSettings(num_frames=9, height=32, width=32, decoder=backend))
    assert clip.source_size == (96, 64)
    assert (
        _psnr(clip.frames, _reference_clip(shown_frames(data), clip.frame_indices, (32, 32)))
        >= FRAMES_AGREE_DB
    )
    (tall,) = sample_clips(
        data,
        ClipSettings(num_frames=9, height=48, width=32, resize_mode="stretch", decoder=backend),
    )
    assert (
        _psnr(tall.frames, _reference_clip(shown_frames(data), tall.frame_indices, (48, 32)))
        >= FRAMES_AGREE_DB
    )


@pytest.mark.parametrize("backend", AUTO_ORDER)
def test_a_target_rate_picks_the_frame_shown_nearest_each_instant(
    media_corpus: dict[str, CorpusVideo], backend: str
) -> None:
    """Variable-rate phone footage (25 fps, then frames 0.08-0.12 s apart) at 10 fps: an even
    pace by the frames' own timestamps, and `fps` the rate asked for."""
    _installed(backend)
    data = media_corpus["phone_vfr.mp4"].data
    seconds = frame_seconds(data)
    clips = sample_clips(
        data, ClipSettings(**CLIP, target_fps=10, clip_mode="all", decoder=backend)
    )
    assert len(clips) == 2
    start = 0
    for clip in clips:
        assert clip.frame_indices == nearest_frames(seconds, start, 9, 10.0)
        assert clip.fps == 10.0
        span = seconds[clip.frame_indices[-1]] - seconds[clip.frame_indices[0]]
        assert abs(span - 0.8) <= 0.06 + 1e-9  # 8 steps of 0.1 s, to half the widest frame gap
        assert (
            _psnr(clip.frames, _reference_clip(shown_frames(data), clip.frame_indices, (64, 64)))
            >= FRAMES_AGREE_DB
        )
        start = clip.frame_indices[-1] + 1
    assert clips[0].frame_indices[:5] == [
        0,
        2,
        5,
        7,
        9,
    ]  # 0.1 s is 2.5 frames at 25 fps: ties go to the earlier


def test_a_target_rate_on_a_constant_rate_video(media: dict[str, bytes]) -> None:
    (clip,) = sample_clips(
        media["synth_a"], ClipSettings(**CLIP, target_fps=10)
    )  # 24 fps, 20 frames
    assert clip.frame_indices == [0, 2, 5, 7, 10, 12, 14, 17, 19] and clip.fps == 10.0
    (halved,) = sample_clips(media["synth_a"], ClipSettings(**CLIP, target_fps=12))
    assert halved.frame_indices == list(range(0, 18, 2))  # a whole ratio: the stride it always was
    with pytest.raises(VideoDecodeError) as caught:
        sample_clips(
            media["synth_a"], ClipSettings(**CLIP, target_fps=8)
        )  # 1 s asked, 0.79 s there
    assert caught.value.reason == "too_short" and "spans 1.000 s" in str(caught.value)


@settings(max_examples=200, deadline=None)
@given(
    gaps=st.lists(st.floats(0.01, 0.2), min_size=1, max_size=40),
    rate=st.floats(1.0, 60.0),
    count=st.integers(1, 9),
    start=st.integers(0, 40),
)
def test_frames_at_a_rate_are_the_nearest_shown(
    gaps: list[float], rate: float, count: int, start: int
) -> None:
    seconds = np.concatenate([[0.0], np.cumsum(gaps)])
    got = frames_at_rate(seconds, start, count, rate)
    if start >= len(seconds):
        assert got is None
        return
    last_instant = seconds[start] + (count - 1) / rate
    if got is None:  # past the end, by more than half the last frame's gap
        assert last_instant > seconds[-1] + (seconds[-1] - seconds[-2]) / 2
        return
    for k, frame in enumerate(got):
        instant = seconds[start] + k / rate
        assert abs(seconds[frame] - instant) <= np.abs(seconds - instant).min() + 1e-6


def test_a_truncated_upload_gives_the_clips_its_frames_make(
    media_corpus: dict[str, CorpusVideo],
) -> None:
    """The header states 24 frames; the data ends after some 12. decord cannot open it, PyAV
    decodes to the break: the first clip is cut and marked, the second is not cut."""
    video = media_corpus["truncated.mp4"]
    assert video.outcome == PARTIAL
    readable = len(shown_frames(video.data))
    assert 9 <= readable < 18
    (clip,) = sample_clips(video.data, ClipSettings(**CLIP, clip_mode="all"))
    assert clip.frame_indices == list(range(9)) and clip.decoder == "pyav"
    assert clip.decode_notes() == {"frames_readable": readable, "frames_stated": CORPUS_FRAMES}
    assert (
        _psnr(clip.frames, _reference_clip(shown_frames(video.data), clip.frame_indices, (64, 64)))
        >= FRAMES_AGREE_DB
    )
    early = media_corpus["truncated_early.mp4"]
    with pytest.raises(VideoDecodeError) as caught:
        sample_clips(early.data, ClipSettings(**CLIP))
    assert caught.value.reason == early.outcome == "truncated"
    assert f"{len(shown_frames(early.data))} of the {CORPUS_FRAMES} frames" in str(caught.value)
    assert "pyav: frame" in str(caught.value)  # what each decoder said


def test_a_codec_no_installed_decoder_reads_is_named(
    media_corpus: dict[str, CorpusVideo], monkeypatch: pytest.MonkeyPatch
) -> None:
    _installed("decord")
    monkeypatch.setattr(
        routing_module, "available_decoders", lambda: ("decord",)
    )  # a machine without PyAV's
    with pytest.raises(VideoDecodeError) as caught:
        sample_clips(media_corpus["av1_svt.mp4"].data, ClipSettings(**CLIP))
    assert caught.value.reason == "unsupported_codec" and str(caught.value).startswith(
        "unsupported_codec: av1"
    )


def test_the_probe_names_codec_container_and_shown_size(
    media_corpus: dict[str, CorpusVideo],
) -> None:
    expected = {
        "av1_svt.mp4": ("av1", "mov,mp4,m4a,3gp,3g2,mj2"),
        "av1.webm": ("av1", "matroska,webm"),
        "hevc_10bit.mp4": ("hevc", "mov,mp4,m4a,3gp,3g2,mj2"),
        "mpeg2.ts": ("mpeg2video", "mpegts"),
        "flv1.flv": ("flv1", "flv"),
        "h263.3gp": ("h263", "mov,mp4,m4a,3gp,3g2,mj2"),
    }
    for name, (codec, container) in expected.items():
        info = probe_video(media_corpus[name].data)
        assert (info.codec, info.container, info.frame_count) == (
            codec,
            container,
            CORPUS_FRAMES,
        ), name
    rotated = probe_video(media_corpus["phone_rotated.mp4"].data)
    assert rotated.frame_size == (96, 64) and rotated.stream_sizes == ((64, 96),)
    assert rotated.orientation.degrees == 90 and not rotated.orientation.is_mirrored
