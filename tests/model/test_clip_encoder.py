"""ClipEncoder (the pipeline's and the service's): the same latents as the model, per-key sampling, chunking, light imports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from bundled_model import BATCH_TOLERANCE, DEFAULT_MODEL_NAME, LATENT_DIM
from tolerances import reordered_float32

from model.latents import ClipEncoder, model_identity
from model.media import ClipSettings, sample_clips, to_model_input

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def clips(media: dict[str, bytes]) -> list[np.ndarray]:
    settings = ClipSettings(num_frames=9, height=64, width=64)
    return [
        sample_clips(media[name], settings)[0].frames for name in ("carphone", "bikes", "synth_a")
    ]


@pytest.fixture(scope="module")
def encoder() -> ClipEncoder:
    return ClipEncoder(dtype="float32", device="cpu")


def test_mean_is_the_models_posterior_mean(encoder: ClipEncoder, clips: list[np.ndarray]) -> None:
    z = encoder.encode_clips(clips)  # (3, C, 3, 8, 8)
    x = torch.cat([to_model_input(c) for c in clips])
    with torch.inference_mode():
        expected = encoder.vae.encode(x).mean.numpy()
    assert z.shape == (3, LATENT_DIM, 3, 8, 8) and z.dtype == np.float32
    assert np.array_equal(z, expected)  # same batch: bitwise


def test_moments_are_mean_then_logvar(encoder: ClipEncoder, clips: list[np.ndarray]) -> None:
    moments = ClipEncoder(dtype="float32", device="cpu", latent_kind="moments")
    z = moments.encode_clips(clips[:1])
    with torch.inference_mode():
        posterior = encoder.vae.encode(to_model_input(clips[0]))
    assert z.shape[1] == 2 * encoder.vae.config.latent_dim == moments.latent_channels
    assert np.array_equal(z[0], torch.cat([posterior.mean, posterior.logvar], 1)[0].numpy())


def test_samples_depend_on_the_clip_key_not_the_batch(clips: list[np.ndarray]) -> None:
    sampler = ClipEncoder(dtype="float32", device="cpu", latent_kind="sample", seed=3)
    together = sampler.encode_clips(clips, ["a", "b", "c"])
    alone = sampler.encode_clips(clips[1:2], ["b"])
    assert np.abs(together[1] - alone[0]).max() < BATCH_TOLERANCE
    assert np.abs(sampler.encode_clips(clips[1:2], ["other"])[0] - alone[0]).max() > 1e-2


def test_latent_kind_and_seed_per_call_equal_an_encoder_built_for_them(
    encoder: ClipEncoder, clips: list[np.ndarray]
) -> None:
    sampler = ClipEncoder(dtype="float32", device="cpu", latent_kind="sample", seed=3)
    keys = ["a", "b", "c"]
    asked = encoder.encode_clips(clips, keys, latent_kind="sample", seed=3)
    assert np.array_equal(asked, sampler.encode_clips(clips, keys))
    assert encoder.latent_kind == "mean" and encoder.seed == 0  # the call changed nothing
    assert np.array_equal(encoder.encode_clips(clips, keys), sampler.encode_clips(clips, keys, latent_kind="mean"))


def test_decode_is_the_models_decode(encoder: ClipEncoder, clips: list[np.ndarray]) -> None:
    z = torch.from_numpy(encoder.encode_clips(clips[:1]))  # (1, C, t, h, w)
    with torch.inference_mode():
        expected = encoder.vae.decode(z)
    video = encoder.decode(z)
    assert video.dtype == torch.float32 and video.shape == (1, 3, *clips[0].shape[:3])
    assert torch.equal(video, expected)
    assert (encoder.decode(z, chunk_latents=1) - video).abs().max() <= reordered_float32(video)  # Causal Cache


def test_causal_cache_chunks_equal_the_whole_clip(
    media: dict[str, bytes], encoder: ClipEncoder
) -> None:
    (clip,) = sample_clips(media["synth_b"], ClipSettings(num_frames=21, height=64, width=64))
    chunked = ClipEncoder(dtype="float32", device="cpu", chunk_frames=8)
    whole = encoder.encode_clips([clip.frames])
    assert np.abs(chunked.encode_clips([clip.frames]) - whole).max() <= reordered_float32(whole)


def test_model_id_names_the_model_and_hashes_its_weights(encoder: ClipEncoder) -> None:
    assert encoder.model_id == model_identity(None)
    assert (
        encoder.model_id.startswith(f"{DEFAULT_MODEL_NAME}-")
        and len(encoder.model_id.rsplit("-", 1)[1]) == 12
    )
    meta = encoder.metadata()
    assert (
        meta["latent_dim"] == LATENT_DIM
        and meta["encode_dtype"] == "float32"
        and len(meta["config_hash"]) == 16
    )


def test_shared_modules_import_without_ray() -> None:
    code = (
        "import sys, model, model.media, model.cli, model.latents, model.storage, pipeline.storage, pipeline.reader, pipeline.run, pipeline.dataset;"
        "heavy = {'ray', 'fastapi', 'starlette'} & set(sys.modules);"
        "assert not heavy, f'{heavy} imported'"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True)
