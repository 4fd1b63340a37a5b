"""Streams that encode and decode chunk by chunk with exactly the whole clip's result (Causal Cache).

Each stream owns its `StreamState`; the model's modules hold no per-stream state, so any number
of streams can run interleaved through one model.
"""

from __future__ import annotations

from itertools import pairwise
from typing import TYPE_CHECKING, Protocol

import torch
from torch import Tensor

from .causal import CausalContext, StreamState
from .config import SPATIAL_COMPRESSION
from .errors import InputShapeError, StreamingUnsupportedError
from .validation import check_chunk_size, check_frame_count, check_latent, check_video_chunk

if TYPE_CHECKING:
    from .wfvae import WFVAE

__all__ = ["DecodeStream", "EncodeStream", "Stream", "frame_chunks", "latent_chunks", "run_stream"]


def frame_chunks(frames: int, chunk_frames: int | None) -> list[slice]:
    """The time slices in which a clip of `frames` frames is encoded `chunk_frames` at a time
    (None: one slice). Raises InputShapeError unless `chunk_frames` is a positive int.

    The first chunk takes one frame more: the first latent frame covers one video frame and every
    later one four, so with `chunk_frames` a multiple of 4 every chunk ends on a latent boundary
    and no chunk leaves half-computed frames for the next (a 17-frame clip in 16-frame chunks is
    one chunk, not 16 frames and a 1-frame chunk that redoes a latent's deep layers on its own).
    """
    if chunk_frames is None:
        return [slice(0, frames)]
    check_chunk_size(chunk_frames, "chunk_frames")
    bounds = [0, *range(1 + chunk_frames, frames, chunk_frames), frames]
    return [slice(start, stop) for start, stop in pairwise(bounds) if stop > start]


def latent_chunks(latents: int, chunk_latents: int | None) -> list[slice]:
    """The time slices in which `latents` latent frames are decoded `chunk_latents` at a time
    (None: one slice). Raises InputShapeError unless `chunk_latents` is a positive int."""
    if chunk_latents is None:
        return [slice(0, latents)]
    check_chunk_size(chunk_latents, "chunk_latents")
    return [slice(i, min(i + chunk_latents, latents)) for i in range(0, latents, chunk_latents)]


class Stream(Protocol):
    def push(self, chunk: Tensor) -> Tensor: ...
    def flush(self) -> Tensor: ...


def run_stream(stream: Stream, x: Tensor, chunks: list[slice]) -> Tensor:
    """Everything `stream` gives for `x` pushed slice by slice along time, then flushed."""
    pieces = [stream.push(x[:, :, chunk]) for chunk in chunks]
    return torch.cat([*pieces, stream.flush()], dim=2)


class _Stream:
    def __init__(self, vae: WFVAE) -> None:
        if not vae.config.streams_exactly:
            raise StreamingUnsupportedError(vae.config.norm_type)
        self._vae = vae
        self._state = StreamState()
        self._geometry: tuple[int, int, int] | None = None  # (B, H, W) of the first chunk
        self._frames_in = 0
        self._closed = False

    @property
    def state(self) -> StreamState:
        return self._state

    def _admit(self, chunk: Tensor, what: str) -> Tensor:
        if self._closed:
            raise InputShapeError(f"this {what} stream was flushed; start a new one")
        b, _, _, h, w = chunk.shape
        if self._geometry is None:
            self._geometry = (b, h, w)
        elif self._geometry != (b, h, w):
            raise InputShapeError(
                f"chunk batch/height/width {(b, h, w)} differ from the stream's first chunk {self._geometry}"
            )
        self._frames_in += chunk.shape[2]
        return chunk


class EncodeStream(_Stream):
    """Push video frames (B, 3, t, H, W); get the moments of every latent frame determined so far.

    Latent frame m is determined by input frame 4m, so it comes out of the push that brings it.
    """

    def push(self, chunk: Tensor) -> Tensor:
        """Returns moments (B, 2 * latent_dim, n, H/8, W/8), n >= 0."""
        chunk = self._admit(check_video_chunk(chunk), "encode")
        with self._vae.running(chunk) as chunk:
            return self._vae.encoder(chunk, CausalContext(self._state, final=False)).moments

    def flush(self) -> Tensor:
        """Ends the stream. The encoder holds nothing back, so this checks T = 1 + 4k and returns
        zero frames of moments."""
        if self._geometry is None:
            raise InputShapeError("the encode stream received no frames")
        check_frame_count(self._frames_in)
        self._closed = True
        b, h, w = self._geometry
        channels = 2 * self._vae.config.latent_dim
        param = next(self._vae.parameters())
        return param.new_empty((b, channels, 0, h // SPATIAL_COMPRESSION, w // SPATIAL_COMPRESSION))


class DecodeStream(_Stream):
    """Push latent frames (B, C, t, h, w); get every video frame determined so far.

    The decoder's temporal upsampling needs the next latent frame, so the last 1-4 video frames of
    each push are held back until the next push or `flush`.
    """

    def push(self, chunk: Tensor) -> Tensor:
        """Returns video frames (B, 3, n, 8h, 8w), n >= 0."""
        chunk = check_latent(chunk, self._vae.config.latent_dim, allow_empty_time=True)
        with self._vae.running(self._admit(chunk, "decode")) as chunk:
            if chunk.shape[2] == 0:
                b, h, w = self._geometry or (0, 0, 0)
                return chunk.new_empty((b, 3, 0, h * SPATIAL_COMPRESSION, w * SPATIAL_COMPRESSION))
            return self._vae.decoder(chunk, CausalContext(self._state, final=False)).video

    def flush(self) -> Tensor:
        """Ends the stream and returns the frames held back."""
        if self._geometry is None or self._frames_in == 0:
            raise InputShapeError("the decode stream received no latent frames")
        self._closed = True
        b, h, w = self._geometry
        param = next(self._vae.parameters())
        empty = param.new_empty((b, self._vae.config.latent_dim, 0, h, w))
        with self._vae.running(empty) as empty:
            return self._vae.decoder(empty, CausalContext(self._state, final=True)).video
