"""Row keys: the deterministic id of a clip's latent (and of an error row), one function for every door.

The pipeline writes a clip's key into its Parquet row; `POST /encode` answers the key the
pipeline would write for the same clip, and seeds `latent_kind="sample"` from it. Both call
`clip_key` with the clip and where its video came from, so the two doors agree on keys, and on
sampled latents, by construction.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol

from ..media import Clip

__all__ = ["KEY_CHARS", "ClipOrigin", "VideoOrigin", "clip_key", "error_key"]

KEY_CHARS = 32  # hex digits of sha256 kept
PART_SEPARATOR = "\x1f"  # ASCII unit separator: no URI, key or id holds it


class ClipOrigin(Protocol):
    """Where a video came from, as its keys hash it (the pipeline's samples are such)."""

    @property
    def source_uri(self) -> str: ...

    @property
    def member_key(self) -> str: ...

    @property
    def version(self) -> str: ...


@dataclass(frozen=True)
class VideoOrigin:
    """A video addressed by itself: a URI or `sha256:<digest>` of its bytes (the service's)."""

    source_uri: str
    member_key: str = ""  # the sample's key inside a shard; "" for a video on its own
    version: str = ""  # the source's version (ETag, generation, mtime-size); "" when unknown


def _digest(*parts: object) -> str:
    text = PART_SEPARATOR.join(str(p) for p in parts)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:KEY_CHARS]


def clip_key(
    origin: ClipOrigin, clip: Clip, resize_mode: str, model_id: str, latent_kind: str
) -> str:
    """The id of one latent: its video and that video's version, the clip's frames, size and
    resize mode, the model and the latent kind."""
    height, width = clip.target_size
    geometry = f"{','.join(map(str, clip.frame_indices))}|{height}x{width}|{resize_mode}"
    return _digest(
        origin.source_uri, origin.member_key, origin.version, geometry, model_id, latent_kind
    )


def error_key(origin: ClipOrigin, stage: str) -> str:
    """The id of the error row of a video that failed at `stage`."""
    return _digest("error", origin.source_uri, origin.member_key, origin.version, stage)
