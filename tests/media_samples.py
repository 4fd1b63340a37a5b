"""Test media: cuts of real footage and synthetic clips re-encoded with PyAV, WebDataset tars.

Importable from every test package (pytest puts `tests/` on sys.path for its conftest.py).
"""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model.media import encode_mp4

FPS = 24


def cut_real(path: Path, start: int, count: int, width: int, height: int) -> bytes:
    """Frames [start, start+count) of a real video, scaled to width x height, re-encoded."""
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
    return encode_mp4(np.stack(frames), FPS)


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
