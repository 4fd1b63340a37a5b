"""Reader for trainers: a torch IterableDataset over latent shards, split across DDP ranks and workers."""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Iterator
from typing import Any, Literal

import numpy as np
import pyarrow.parquet as pq
import torch
from torch.utils.data import IterableDataset, get_worker_info

from model.storage import StorageSettings, open_fs
from pipeline.manifest import STATS_FILE, committed_files, load_markers
from pipeline.records import latent_from_bytes, read_file_metadata
from pipeline.storage import join_uri
from pipeline.text.layout import TextIdentity, choose_text_folder, text_files_by_latent, text_prefix

log = logging.getLogger(__name__)

__all__ = ["LatentShardDataset", "list_shards"]

META_COLUMNS = (
    "key",
    "caption",
    "source_uri",
    "shard",
    "member_key",
    "clip_index",
    "fps",
    "frame_indices",
    "source_size",
    "target_size",
    "bucket",
)


def list_shards(prefix: str, storage: StorageSettings) -> list[str]:
    """The committed latent Parquet files under an output prefix (those the manifest lists), sorted.

    A job in progress, or one interrupted, leaves parts of unfinished units in `latents/`; they
    are not read."""
    return committed_files(prefix, storage)


def _rank_and_world(rank: int | None, world_size: int | None) -> tuple[int, int]:
    if rank is not None and world_size is not None:
        return rank, world_size
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class LatentShardDataset(IterableDataset):
    """Latents with their metadata; shard files split by (rank, worker), batches of one shape.

    With `batch_size=None` it yields one sample at a time: `latent` (C, t, h, w) float32 and the
    metadata columns. With a batch size it yields dicts whose `latent` is (B, C, t, h, w), every
    latent of a batch of the same shape (buckets never mix), metadata as lists; use it with
    `DataLoader(dataset, batch_size=None, num_workers=...)` (`multiprocessing_context="spawn"`
    in a process that is also a Ray driver). Files go to consumers round-robin
    over rank * num_workers + worker id, so each row reaches exactly one consumer per epoch.

    Caption embeddings (`pipeline.text`), where the output has them: `text_encoder` "auto" reads
    the only text folder (several: name one by tag or text encoder id; None: no text). Each
    sample then has `text_embedding` (L, D) float32, `text_mask` (L,) bool (True on the
    caption's tokens) and `text_token_count`; batches (B, L, D) and (B, L), L the longest
    caption of the batch, or `text_tokens` for every sample. A clip without a caption, or whose
    caption failed, has a mask of False only. A latent part's text rows are read with it, and
    no other part's.
    """

    def __init__(
        self,
        prefix: str,
        storage: StorageSettings | None = None,
        batch_size: int | None = None,
        drop_last: bool = False,
        shuffle: bool = False,
        seed: int = 0,
        normalize: Literal["none", "stats"] = "none",
        rank: int | None = None,
        world_size: int | None = None,
        text_encoder: str | None = "auto",
        text_tokens: int | None = None,
    ) -> None:
        super().__init__()
        self.prefix = prefix
        self.storage = storage or StorageSettings()
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        self.rank, self.world_size = _rank_and_world(rank, world_size)
        markers = load_markers(prefix, self.storage)
        self.files = committed_files(prefix, self.storage, markers=markers)
        self.text_tokens = text_tokens
        self.text: TextIdentity | None = None
        self.text_files: dict[str, list[str]] = {}  # latent part name -> its text parts' URIs
        chosen = choose_text_folder(prefix, self.storage, text_encoder)
        if chosen is not None:
            tag, self.text = chosen
            if text_tokens is not None and text_tokens < self.text.max_tokens:
                raise ValueError(
                    f"text_tokens {text_tokens} < the text's max_tokens {self.text.max_tokens}"
                )
            self.text_files = text_files_by_latent(text_prefix(prefix, tag), markers, self.storage)
        self.mean: torch.Tensor | None = None
        self.std: torch.Tensor | None = None
        if normalize == "stats":
            stats = self.stats()
            self.mean = torch.tensor(stats["mean"]).view(-1, 1, 1, 1)  # (C, 1, 1, 1)
            self.std = torch.tensor(stats["std"]).clamp_min(1e-6).view(-1, 1, 1, 1)

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle differently each epoch (when shuffle=True), the same way on every rank."""
        self.epoch = epoch

    def stats(self) -> dict[str, Any]:
        """The per-channel latent statistics written beside the shards."""
        fs, path = open_fs(join_uri(self.prefix, STATS_FILE), self.storage)
        return json.loads(fs.cat_file(path))

    def metadata(self) -> dict[str, Any]:
        """The first shard's key-value metadata (model id, config hash, scale, shift, …)."""
        if not self.files:
            return {}
        fs, path = open_fs(self.files[0], self.storage)
        with fs.open(path, "rb") as handle:
            raw = read_file_metadata(pq.read_schema(handle))
        return {k: _maybe_json(v) for k, v in raw.items()}

    def files_for(self, worker: int, num_workers: int) -> list[str]:
        """The shard files one (rank, worker) consumer reads this epoch."""
        files = list(self.files)
        if self.shuffle:
            random.Random(self.seed + self.epoch).shuffle(files)
        consumers = self.world_size * num_workers
        me = self.rank * num_workers + worker
        return files[me::consumers]

    def _rows(self, files: list[str]) -> Iterator[dict[str, Any]]:
        rng = random.Random(self.seed + self.epoch + 7919 * (self.rank + 1))
        for uri in files:
            fs, path = open_fs(uri, self.storage)
            with fs.open(path, "rb") as handle:
                rows = pq.read_table(handle).to_pylist()
            if self.shuffle:
                rng.shuffle(rows)
            texts = self._text_rows(uri) if self.text is not None else {}
            for row in rows:
                latent = torch.from_numpy(
                    np.array(
                        latent_from_bytes(row["latent"], row["latent_shape"], row["latent_dtype"])
                    )
                )  # (C, t, h, w)
                if self.mean is not None and self.std is not None:
                    latent = (latent - self.mean) / self.std
                sample = {"latent": latent, **{name: row[name] for name in META_COLUMNS}}
                if self.text is not None:
                    sample.update(self._text_of(texts.get(row["key"]), self.text.dim))
                yield sample

    def _text_rows(self, latent_uri: str) -> dict[str, dict[str, Any]]:
        """Key -> text row of the clips of one latent part (its own text parts only)."""
        rows: dict[str, dict[str, Any]] = {}
        for uri in self.text_files.get(latent_uri.rsplit("/", 1)[-1], []):
            fs, path = open_fs(uri, self.storage)
            with fs.open(path, "rb") as handle:
                rows.update((r["key"], r) for r in pq.read_table(handle).to_pylist())
        return rows

    def _text_of(self, row: dict[str, Any] | None, dim: int) -> dict[str, Any]:
        """A sample's text fields: the embedding (L, D) padded to `text_tokens`, and its mask."""
        if row is None or row["text_embedding"] is None:  # no caption, or it failed
            embedding = torch.zeros((0, dim))  # (0, D)
        else:
            embedding = torch.from_numpy(
                np.array(
                    latent_from_bytes(row["text_embedding"], row["text_shape"], row["text_dtype"])
                )
            )  # (n, D)
        count = embedding.shape[0]
        length = count if self.text_tokens is None else self.text_tokens
        padded = torch.zeros((length, dim))  # (L, D)
        padded[:count] = embedding
        mask = torch.arange(length) < count  # (L,)
        return {"text_embedding": padded, "text_mask": mask, "text_token_count": count}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info else (0, 1)
        rows = self._rows(self.files_for(worker, num_workers))
        if self.batch_size is None:
            yield from rows
            return
        buffers: dict[tuple[int, ...], list[dict[str, Any]]] = {}
        for row in rows:
            shape = tuple(row["latent"].shape)
            buffer = buffers.setdefault(shape, [])
            buffer.append(row)
            if len(buffer) == self.batch_size:
                yield _collate(buffers.pop(shape))
        if not self.drop_last:
            for shape in sorted(buffers):
                yield _collate(buffers[shape])


def _collate(rows: list[dict[str, Any]]) -> dict[str, Any]:
    batch: dict[str, Any] = {"latent": torch.stack([r["latent"] for r in rows])}  # (B, C, t, h, w)
    for name in META_COLUMNS:
        batch[name] = [r[name] for r in rows]
    if "text_embedding" in rows[0]:
        batch.update(_collate_text(rows))
    return batch


def _collate_text(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """(B, L, D) embeddings and (B, L) masks, L the longest of the rows (all the same length
    where the dataset pads to `text_tokens`)."""
    length = max(r["text_embedding"].shape[0] for r in rows)
    dim = rows[0]["text_embedding"].shape[1]
    embeddings = torch.zeros((len(rows), length, dim))  # (B, L, D)
    masks = torch.zeros((len(rows), length), dtype=torch.bool)  # (B, L)
    for i, row in enumerate(rows):
        n = row["text_embedding"].shape[0]
        embeddings[i, :n] = row["text_embedding"]
        masks[i, :n] = row["text_mask"]
    return {
        "text_embedding": embeddings,
        "text_mask": masks,
        "text_token_count": [r["text_token_count"] for r in rows],
    }


def _maybe_json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text
