"""Spatial tiling for large frames: overlapping tiles, each its own Causal Cache stream, blended.

Tiles overlap and are blended with linear ramps, first in latent space (encode) and then in
pixel space (decode). Unlike temporal chunking this is approximate: a tile's convolutions
see zero padding where the whole frame would have shown its neighbour. Combined with temporal
streaming, memory is bounded by one tile of one chunk.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import Tensor

from .config import SPATIAL_COMPRESSION
from .errors import InputShapeError
from .streaming import DecodeStream, EncodeStream, frame_chunks, latent_chunks, run_stream
from .validation import check_latent, check_video_chunk

if TYPE_CHECKING:
    from .wfvae import WFVAE

__all__ = ["TileSpec", "TiledDecodeStream", "TiledEncodeStream", "decode_tiled", "encode_tiled"]


class TileSpec(BaseModel):
    """Tile and overlap sizes in pixels (multiples of 8); decode uses them divided by 8."""

    model_config = ConfigDict(frozen=True)

    tile: int = Field(256, ge=16)
    overlap: int = Field(64, ge=0)

    @model_validator(mode="after")
    def _check(self) -> TileSpec:
        if self.tile % SPATIAL_COMPRESSION or self.overlap % SPATIAL_COMPRESSION:
            raise ValueError(f"tile and overlap must be multiples of {SPATIAL_COMPRESSION}")
        if self.overlap >= self.tile // 2:
            raise ValueError("overlap must be less than half the tile")
        return self


@dataclass(frozen=True)
class _Tile:
    top: int
    left: int
    height: int
    width: int


def _starts(size: int, tile: int, overlap: int) -> list[int]:
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile + 1, tile - overlap))
    if starts[-1] + tile < size:
        starts.append(size - tile)
    return starts


def _grid(height: int, width: int, tile: int, overlap: int) -> list[_Tile]:
    return [
        _Tile(top, left, min(tile, height), min(tile, width))
        for top in _starts(height, tile, overlap)
        for left in _starts(width, tile, overlap)
    ]


def _ramp(length: int, overlap: int, rise: bool, fall: bool) -> Tensor:
    """Weights along one axis: linear over `overlap` at sides that meet a neighbour, else 1."""
    position = torch.arange(length, dtype=torch.float32) + 0.5
    weight = torch.ones(length)
    if overlap > 0 and rise:
        weight = torch.minimum(weight, position / overlap)
    if overlap > 0 and fall:
        weight = torch.minimum(weight, (length - position) / overlap)
    return weight


class _Blender:
    """Accumulates weighted tiles (B, C, T, h, w) into a frame of the given size."""

    def __init__(self, tiles: list[_Tile], height: int, width: int, overlap: int) -> None:
        self.tiles, self.height, self.width = tiles, height, width
        self.masks = [
            torch.outer(
                _ramp(t.height, overlap, t.top > 0, t.top + t.height < height),
                _ramp(t.width, overlap, t.left > 0, t.left + t.width < width),
            )
            for t in tiles
        ]

    def blend(self, pieces: list[Tensor]) -> Tensor:
        b, c, t = pieces[0].shape[:3]
        out = pieces[0].new_zeros((b, c, t, self.height, self.width))
        total = pieces[0].new_zeros((self.height, self.width))
        for tile, mask, piece in zip(self.tiles, self.masks, pieces, strict=True):
            mask = mask.to(piece)
            rows, cols = slice(tile.top, tile.top + tile.height), slice(tile.left, tile.left + tile.width)
            out[:, :, :, rows, cols] += piece * mask
            total[rows, cols] += mask
        return out / total


class TiledEncodeStream:
    """An encode stream over overlapping spatial tiles; push/flush as `EncodeStream`."""

    def __init__(self, vae: WFVAE, height: int, width: int, spec: TileSpec) -> None:
        if height % SPATIAL_COMPRESSION or width % SPATIAL_COMPRESSION:
            raise InputShapeError(f"frame size must be multiples of 8, got {height}x{width}")
        s = SPATIAL_COMPRESSION
        self._pixel_tiles = _grid(height, width, spec.tile, spec.overlap)
        latent_tiles = [_Tile(t.top // s, t.left // s, t.height // s, t.width // s) for t in self._pixel_tiles]
        self._blender = _Blender(latent_tiles, height // s, width // s, spec.overlap // s)
        self._streams: list[EncodeStream] = [vae.encode_stream() for _ in self._pixel_tiles]
        self._size = (height, width)

    def push(self, chunk: Tensor) -> Tensor:
        chunk = check_video_chunk(chunk)
        if tuple(chunk.shape[3:]) != self._size:
            raise InputShapeError(f"chunk frames are {tuple(chunk.shape[3:])}, the stream's are {self._size}")
        pieces = [
            stream.push(chunk[:, :, :, t.top : t.top + t.height, t.left : t.left + t.width])
            for t, stream in zip(self._pixel_tiles, self._streams, strict=True)
        ]
        return self._blender.blend(pieces)

    def flush(self) -> Tensor:
        return self._blender.blend([stream.flush() for stream in self._streams])


class TiledDecodeStream:
    """A decode stream over overlapping latent tiles; push/flush as `DecodeStream`."""

    def __init__(self, vae: WFVAE, latent_height: int, latent_width: int, spec: TileSpec) -> None:
        s = SPATIAL_COMPRESSION
        self._latent_tiles = _grid(latent_height, latent_width, spec.tile // s, spec.overlap // s)
        pixel_tiles = [_Tile(t.top * s, t.left * s, t.height * s, t.width * s) for t in self._latent_tiles]
        self._blender = _Blender(pixel_tiles, latent_height * s, latent_width * s, spec.overlap)
        self._streams: list[DecodeStream] = [vae.decode_stream() for _ in self._latent_tiles]
        self._latent_dim = vae.config.latent_dim

    def push(self, chunk: Tensor) -> Tensor:
        chunk = check_latent(chunk, self._latent_dim, allow_empty_time=True)
        pieces = [
            stream.push(chunk[:, :, :, t.top : t.top + t.height, t.left : t.left + t.width])
            for t, stream in zip(self._latent_tiles, self._streams, strict=True)
        ]
        return self._blender.blend(pieces)

    def flush(self) -> Tensor:
        return self._blender.blend([stream.flush() for stream in self._streams])


def encode_tiled(vae: WFVAE, x: Tensor, spec: TileSpec | None = None, chunk_frames: int | None = None) -> Tensor:
    """Moments (B, 2C, t, H/8, W/8) of a large video, tile by tile (and chunk by chunk)."""
    x = check_video_chunk(x)
    stream = TiledEncodeStream(vae, x.shape[3], x.shape[4], spec or TileSpec())
    return run_stream(stream, x, frame_chunks(x.shape[2], chunk_frames))


def decode_tiled(vae: WFVAE, z: Tensor, spec: TileSpec | None = None, chunk_latents: int | None = None) -> Tensor:
    """Video (B, 3, T, 8h, 8w) from large latents, tile by tile (and chunk by chunk)."""
    z = check_latent(z, vae.config.latent_dim)
    stream = TiledDecodeStream(vae, z.shape[3], z.shape[4], spec or TileSpec())
    return run_stream(stream, z, latent_chunks(z.shape[2], chunk_latents))
