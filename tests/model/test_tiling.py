"""Spatial tiling: exact where one tile covers the frame, temporally exact per tile, blends to unity."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError
from tolerances import assert_reordered

from model import WFVAE, InputShapeError
from model.tiling import TileSpec, _Blender, _grid, decode_tiled, encode_tiled


def test_single_tile_equals_untiled(tiny_vae: WFVAE) -> None:
    x = torch.rand(1, 3, 5, 32, 40) * 2 - 1
    with torch.inference_mode():
        moments = tiny_vae.encode(x).moments
        # One tile covering the frame is the untiled computation on a copy of it; with several
        # threads the copy's sums may be split differently, so equal up to their order.
        assert_reordered(encode_tiled(tiny_vae, x, TileSpec(tile=64, overlap=16)), moments)
        z = moments[:, :8]
        assert_reordered(decode_tiled(tiny_vae, z, TileSpec(tile=64, overlap=16)), tiny_vae.decode(z))


def test_tiles_stream_exactly_in_time(tiny_vae: WFVAE) -> None:
    x = torch.rand(1, 3, 9, 48, 64) * 2 - 1
    spec = TileSpec(tile=32, overlap=8)
    with torch.inference_mode():
        whole_time = encode_tiled(tiny_vae, x, spec)
        chunked = encode_tiled(tiny_vae, x, spec, chunk_frames=2)
        assert chunked.shape == (1, 16, 3, 6, 8)
        assert_reordered(chunked, whole_time)
        z = whole_time[:, :8]
        video = decode_tiled(tiny_vae, z, spec)
        assert video.shape == (1, 3, 9, 48, 64)
        assert_reordered(decode_tiled(tiny_vae, z, spec, chunk_latents=1), video)


@pytest.mark.parametrize("size", [0, -4, 2.5])
def test_tiled_chunk_sizes_must_be_positive_integers(tiny_vae: WFVAE, size) -> None:
    spec = TileSpec(tile=32, overlap=8)
    with pytest.raises(InputShapeError, match="chunk_frames must be a positive integer"):
        encode_tiled(tiny_vae, torch.zeros(1, 3, 5, 48, 64), spec, chunk_frames=size)
    with pytest.raises(InputShapeError, match="chunk_latents must be a positive integer"):
        decode_tiled(tiny_vae, torch.zeros(1, 8, 2, 6, 8), spec, chunk_latents=size)


def test_grid_covers_frame_and_blend_is_a_partition_of_unity() -> None:
    tiles = _grid(720, 1280, 256, 64)
    covered = torch.zeros(720, 1280)
    for t in tiles:
        covered[t.top : t.top + t.height, t.left : t.left + t.width] += 1
    assert covered.min() >= 1
    blender = _Blender(tiles, 720, 1280, 64)
    constant = [torch.full((1, 2, 1, t.height, t.width), 3.0) for t in tiles]
    assert torch.allclose(blender.blend(constant), torch.full((1, 2, 1, 720, 1280), 3.0))


def test_bad_tile_specs() -> None:
    with pytest.raises(ValidationError, match="multiples of 8"):
        TileSpec(tile=100, overlap=8)
    with pytest.raises(ValidationError, match="less than half"):
        TileSpec(tile=64, overlap=32)
