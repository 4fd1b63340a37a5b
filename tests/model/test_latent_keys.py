"""Row keys (`model.latents.keys`): deterministic, changed by every part they hash, and the
sha256 of those parts that outputs written before hold."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import numpy as np

from model.latents import VideoOrigin, clip_key, error_key
from model.media import Clip

ORIGIN = VideoOrigin("s3://b/shard-00000.tar", member_key="000001", version="etag1")
CLIP = Clip(
    frames=np.zeros((5, 64, 64, 3), np.uint8),
    frame_indices=[0, 1, 2, 3, 4],
    fps=24.0,
    source_size=(72, 128),
    target_size=(64, 64),
    bucket=None,
)


def _sha(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def test_keys_are_deterministic_and_change_with_every_part() -> None:
    key = clip_key(ORIGIN, CLIP, "crop", "wfvae-abc", "mean")
    assert key == clip_key(ORIGIN, CLIP, "crop", "wfvae-abc", "mean") and len(key) == 32
    changed = [
        clip_key(replace(ORIGIN, source_uri="s3://b/other.tar"), CLIP, "crop", "wfvae-abc", "mean"),
        clip_key(replace(ORIGIN, member_key="000002"), CLIP, "crop", "wfvae-abc", "mean"),
        clip_key(replace(ORIGIN, version="etag2"), CLIP, "crop", "wfvae-abc", "mean"),
        clip_key(ORIGIN, replace(CLIP, frame_indices=[1, 2, 3, 4, 5]), "crop", "wfvae-abc", "mean"),
        clip_key(ORIGIN, replace(CLIP, target_size=(64, 128)), "crop", "wfvae-abc", "mean"),
        clip_key(ORIGIN, CLIP, "stretch", "wfvae-abc", "mean"),
        clip_key(ORIGIN, CLIP, "crop", "wfvae-def", "mean"),
        clip_key(ORIGIN, CLIP, "crop", "wfvae-abc", "sample"),
    ]
    assert key not in changed and len(set(changed)) == len(changed)


def test_what_the_frames_hold_is_not_in_the_key() -> None:
    other_pixels = replace(CLIP, frames=np.full((5, 64, 64, 3), 255, np.uint8), fps=30.0)
    assert clip_key(ORIGIN, other_pixels, "crop", "m", "mean") == clip_key(
        ORIGIN, CLIP, "crop", "m", "mean"
    )


def test_keys_are_the_sha256_of_their_parts_as_written_outputs_hold_them() -> None:
    # Resumed runs and the service find a clip's row by this key: its text must not change.
    geometry = "0,1,2,3,4|64x64|crop"
    expected = _sha("s3://b/shard-00000.tar", "000001", "etag1", geometry, "wfvae-abc", "mean")
    assert clip_key(ORIGIN, CLIP, "crop", "wfvae-abc", "mean") == expected
    assert error_key(ORIGIN, "decode") == _sha(
        "error", "s3://b/shard-00000.tar", "000001", "etag1", "decode"
    )
