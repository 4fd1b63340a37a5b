"""The trainer's reader: a DataLoader with 2 workers sees every latent once, in same-shape batches."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from test_pipeline_run import read_prefix
from torch.utils.data import DataLoader

from pipeline.reader import LatentShardDataset
from pipeline.records import latent_from_bytes


def test_dataloader_with_two_workers_sees_every_row_once(reference_run: tuple[Any, Any]) -> None:
    settings, _ = reference_run
    expected, _ = read_prefix(settings.output, "latents", settings.storage)
    dataset = LatentShardDataset(settings.output, settings.storage, batch_size=3)
    # Workers are spawned, not forked: this test process is a Ray driver with gRPC threads, and
    # a forked copy of those once crashed a worker (SIGSEGV). Spawned workers unpickle the
    # dataset, as they do under torchrun's usual `spawn`.
    loader = DataLoader(dataset, batch_size=None, num_workers=2, multiprocessing_context="spawn")
    seen: dict[str, torch.Tensor] = {}
    for batch in loader:
        latents = batch["latent"]  # (B, C, t, h, w)
        assert latents.ndim == 5 and latents.shape[0] == len(batch["key"]) <= 3
        for key, latent in zip(batch["key"], latents, strict=True):
            assert key not in seen
            seen[key] = latent
    assert sorted(seen) == [r["key"] for r in expected]
    for row in expected:
        stored = latent_from_bytes(row["latent"], row["latent_shape"], row["latent_dtype"])
        assert np.array_equal(seen[row["key"]].numpy(), stored)
    assert dataset.metadata()["model_id"] == dataset.stats()["model_id"]


def test_ranks_and_workers_split_the_shards_without_overlap(reference_run: tuple[Any, Any]) -> None:
    settings, _ = reference_run
    ranks = [
        LatentShardDataset(settings.output, settings.storage, rank=r, world_size=2) for r in (0, 1)
    ]
    consumers = [set(ds.files_for(w, 2)) for ds in ranks for w in (0, 1)]
    assert set().union(*consumers) == set(ranks[0].files)
    assert sum(len(c) for c in consumers) == len(ranks[0].files)
    keys = [{row["key"] for row in ds} for ds in ranks]
    assert not keys[0] & keys[1] and keys[0] | keys[1]


def test_normalised_latents_have_unit_statistics(reference_run: tuple[Any, Any]) -> None:
    settings, _ = reference_run
    dataset = LatentShardDataset(settings.output, settings.storage, normalize="stats")
    flat = torch.cat(
        [row["latent"].reshape(row["latent"].shape[0], -1) for row in dataset], dim=1
    )  # (C, N)
    assert flat.mean(dim=1).abs().max() < 1e-4
    assert (flat.std(dim=1, unbiased=False) - 1).abs().max() < 1e-3
