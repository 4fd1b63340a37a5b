"""16 concurrent requests: batching engages, and each answer equals its own in-process result."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import torch
from bundled_model import LATENT_DIM
from serve_testing import (
    CLIP,
    SAFETENSORS,
    TOLERANCE,
    Service,
    max_abs_diff,
    reference_latent,
    safetensors_tensors,
)

from model.latents import ClipEncoder

CONCURRENCY = 16


async def post_all(service: Service, requests: list[dict[str, object]]) -> list[httpx.Response]:
    async with httpx.AsyncClient(
        base_url=service.url, headers=service.auth, timeout=120.0
    ) as client:
        return await asyncio.gather(*(client.post(**request) for request in requests))  # type: ignore[arg-type]


def test_concurrent_encodes_share_batches_and_each_equals_its_own_clip(
    service: Service, clip_encoder: ClipEncoder, sample_videos: dict[str, Path]
) -> None:
    videos = [sample_videos["bikes"].read_bytes(), sample_videos["carphone_pristine"].read_bytes()]
    # 16 different clips of one shape: two real videos, eight start frames each.
    cases = [(videos[i % 2], 11 * (i // 2)) for i in range(CONCURRENCY)]
    requests = [
        {
            "url": "/encode",
            "params": {"start_frame": start},
            "content": video,
            "headers": {"Content-Type": "video/mp4"},
        }
        for video, start in cases
    ]
    answers = asyncio.run(post_all(service, requests))
    assert all(a.status_code == 200 for a in answers), [
        a.text for a in answers if a.status_code != 200
    ]

    batch_sizes = [int(a.headers["x-batch-size"]) for a in answers]
    assert max(batch_sizes) > 1, f"no two requests shared a forward pass: {batch_sizes}"
    assert max(batch_sizes) <= service.args.max_batch_size
    for (video, start), answer in zip(cases, answers, strict=True):
        expected = reference_latent(
            clip_encoder, video, CLIP.model_copy(update={"start_frame": start})
        )
        got = safetensors_tensors(answer.content)["latent"]
        assert max_abs_diff(got, expected) <= TOLERANCE, f"start_frame={start}"


def test_concurrent_decodes_share_batches_and_each_equals_its_own_latent(
    service: Service, clip_encoder: ClipEncoder
) -> None:
    generator = torch.Generator().manual_seed(11)
    latents = [torch.randn(1, LATENT_DIM, 2, 4, 4, generator=generator) for _ in range(CONCURRENCY)]
    from safetensors.torch import save

    requests = [
        {
            "url": "/decode",
            "params": {"format": "safetensors", "frames_dtype": "float32"},
            "content": save({"latent": z}),
            "headers": {"Content-Type": SAFETENSORS},
        }
        for z in latents
    ]
    answers = asyncio.run(post_all(service, requests))
    assert all(a.status_code == 200 for a in answers), [
        a.text for a in answers if a.status_code != 200
    ]
    batch_sizes = [int(a.headers["x-batch-size"]) for a in answers]
    assert max(batch_sizes) > 1, f"no two requests shared a forward pass: {batch_sizes}"
    with torch.inference_mode():
        for z, answer in zip(latents, answers, strict=True):
            expected = clip_encoder.vae.decode(z)  # (1, 3, 5, 32, 32)
            assert (
                max_abs_diff(safetensors_tensors(answer.content)["frames"], expected) <= TOLERANCE
            )
