"""A local-disk run with aspect buckets, every clip, sampled bf16 latents: mixed shapes through one actor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from bundled_model import LATENT_DIM
from test_pipeline_run import read_prefix

from model.latents import ClipEncoder
from model.media import sample_clips
from pipeline.records import latent_from_bytes
from pipeline.run import run_pipeline

BUCKETS = "9x64x64,9x32x96,9x96x64"


def test_buckets_all_clips_sampled_bf16_on_local_disk(
    ray_cluster: None, corpus: Any, make_settings: Any, tmp_path: Path
) -> None:
    settings = make_settings(
        inputs=[f"file://{corpus.root}/shards/shard-00000.tar", f"{corpus.root}/files/*.mp4"],
        output=str(tmp_path / "out"),
        clips={"buckets": BUCKETS, "clip_mode": "all"},
        encoder={"latent_kind": "sample", "seed": 11},
        latent_dtype="bfloat16",
        batch_size=8,
    )
    summary = run_pipeline(settings)
    latents, _ = read_prefix(settings.output, "latents", settings.storage)
    assert summary.errors_by_reason == {"too_short": 1, "unreadable": 1}
    shapes = {r["member_key"]: (r["bucket"], tuple(r["latent_shape"])) for r in latents}
    assert shapes["000001"] == ("9x32x96", (LATENT_DIM, 3, 4, 12))  # bikes, 160x68: wide
    assert shapes["clip_b"] == ("9x96x64", (LATENT_DIM, 3, 12, 8))  # synth_b, 64 wide x 96 high: tall
    assert shapes["000000"] == ("9x64x64", (LATENT_DIM, 3, 8, 8))  # carphone, 176x144: near square
    assert sum(r["member_key"] == "000003" for r in latents) == 2  # 20 frames: two 9-frame clips

    sampler = ClipEncoder(dtype="float32", device="cpu", latent_kind="sample", seed=11)
    media = {
        "000000": "carphone",
        "000001": "bikes",
        "000003": "synth_a",
        "clip_a": "carphone_distorted",
        "clip_b": "synth_b",
    }
    for row in latents:
        clip = sample_clips(corpus.media[media[row["member_key"]]], settings.clips)[
            row["clip_index"]
        ]
        expected = torch.from_numpy(sampler.encode_clips([clip.frames], [row["key"]])[0])
        stored = latent_from_bytes(row["latent"], row["latent_shape"], row["latent_dtype"])
        assert np.array_equal(stored, expected.to(torch.bfloat16).float().numpy()) or (
            np.abs(stored - expected.numpy()).max() <= 2**-7 * np.abs(expected.numpy()).max()
        )
