"""The replica's compute, Ray-free: the ClipEncoder the pipeline runs too (`model.latents`) and same-shape batches of requests."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from model.config import SPATIAL_COMPRESSION, TEMPORAL_COMPRESSION
from model.latents import ClipEncoder, LatentKind
from model.media import to_model_input

from .settings import ServeSettings

__all__ = ["EncodeJob", "DecodeJob", "Job", "JobResult", "LatentEngine", "run_grouped"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EncodeJob:
    """One clip to encode: (T, H, W, 3) uint8 frames, with the latent it asks for.

    Frames stay uint8 until the batch is built: the float32 model input (4x the bytes) then
    exists once per batch, not once per job and again in the batch.
    """

    frames: np.ndarray  # (T, H, W, 3) uint8
    latent_kind: LatentKind
    seed: int
    key: str  # seeds the noise of latent_kind="sample", as in the pipeline

    def group(self) -> Hashable:
        seed = self.seed if self.latent_kind == "sample" else None  # only sampling reads it
        return ("encode", tuple(self.frames.shape), self.latent_kind, seed)


@dataclass(frozen=True)
class DecodeJob:
    """One request's latents to decode: (B, C, t, h, w)."""

    latent: torch.Tensor  # (B, C, t, h, w)

    def group(self) -> Hashable:
        return ("decode", tuple(self.latent.shape[1:]), self.latent.dtype)


Job = EncodeJob | DecodeJob


@dataclass(frozen=True)
class JobResult:
    """A job's output, or the error its group raised, and how many jobs shared the forward pass."""

    output: torch.Tensor | None  # encode: (1, C, t, h, w) float32; decode: (B, 3, T, H, W) float32
    batch_size: int
    error: Exception | None = None
    seconds: float = 0.0  # wall time of the group's forward pass

    def unwrap(self) -> torch.Tensor:
        """The output; raises the group's error instead if it failed."""
        if self.error is not None:
            raise self.error
        if self.output is None:
            raise RuntimeError("a job result holds neither an output nor an error")
        return self.output


@dataclass
class LatentEngine:
    """Loads the model once through the shared ClipEncoder; encodes and decodes job batches."""

    settings: ServeSettings
    encoder: ClipEncoder = field(init=False)
    torch_threads: int = field(init=False)

    def __post_init__(self) -> None:
        # OpenMP's thread count belongs to the calling thread: build and run the engine on one.
        if self.settings.torch_threads is not None:
            torch.set_num_threads(self.settings.torch_threads)
        self.torch_threads = torch.get_num_threads()
        self.encoder = ClipEncoder.from_settings(self.settings.encoder)

    @property
    def latent_dim(self) -> int:
        return int(self.encoder.config.latent_dim)

    def run(self, jobs: Sequence[Job]) -> list[JobResult]:
        """Every job's result, in order; same-shape jobs share one forward pass."""
        return run_grouped(jobs, lambda job: job.group(), self._run_group)

    def _run_group(self, jobs: Sequence[Job]) -> list[torch.Tensor]:
        first = jobs[0]
        if isinstance(first, EncodeJob):
            encode_jobs = [j for j in jobs if isinstance(j, EncodeJob)]
            if len(encode_jobs) == 1:
                x = to_model_input(first.frames)  # (1, 3, T, H, W) float32
            else:
                t, h, w, c = first.frames.shape
                x = torch.empty((len(encode_jobs), c, t, h, w))  # (N, 3, T, H, W) float32
                for index, job in enumerate(encode_jobs):
                    x[index] = to_model_input(job.frames)[0]  # one clip's float copy at a time
            keys = [j.key for j in encode_jobs]
            z = torch.from_numpy(self.encoder.encode(x, keys, first.latent_kind, first.seed))
            return list(z.split(1))  # N x (1, C, t, h, w)
        decode_jobs = [j for j in jobs if isinstance(j, DecodeJob)]
        z = torch.cat([j.latent for j in decode_jobs])  # (N, C, t, h, w)
        video = self.encoder.decode(z, chunk_latents=self.settings.chunk_latents)  # (N, 3, T, H, W)
        return list(video.split([j.latent.shape[0] for j in decode_jobs]))

    def model_info(self) -> dict[str, object]:
        """What `/v1/model` reports."""
        config = self.encoder.config
        return {
            **self.encoder.metadata(),
            "source": self.encoder.source,
            "device": str(self.encoder.device),
            "dtype": str(self.encoder.dtype).removeprefix("torch."),
            "temporal_compression": TEMPORAL_COMPRESSION,
            "spatial_compression": SPATIAL_COMPRESSION,
            "latent_channels": int(config.latent_dim),
            "chunk_frames": self.encoder.chunk_frames,
            "chunk_latents": self.settings.chunk_latents,
            "torch_threads": self.torch_threads,
            "config": config.model_dump(mode="json", by_alias=True),
        }

    def warm_up(self) -> None:
        """One tiny encode and decode, so the first request does not pay for lazy initialisation."""
        frames = np.zeros(
            (1 + TEMPORAL_COMPRESSION, SPATIAL_COMPRESSION, SPATIAL_COMPRESSION, 3), np.uint8
        )
        latent = torch.from_numpy(self.encoder.encode_clips([frames]))
        self.run([DecodeJob(latent)])


def run_grouped(
    jobs: Sequence[Job],
    group_of: Callable[[Job], Hashable],
    run_group: Callable[[Sequence[Job]], list[torch.Tensor]],
) -> list[JobResult]:
    """Run each group of jobs with equal `group_of` once; answer in the jobs' order.

    A group that raises fails only its own jobs: each gets the error in its result, so one bad
    request cannot fail the unrelated requests that happened to share its batch.
    """
    groups: dict[Hashable, list[int]] = {}
    for index, job in enumerate(jobs):
        groups.setdefault(group_of(job), []).append(index)
    results: dict[int, JobResult] = {}
    for indices in groups.values():
        start = time.perf_counter()
        try:
            outputs = run_group([jobs[i] for i in indices])
        except Exception as error:  # handed to each caller, which raises it in its own request
            logger.warning(
                "a batch of %d jobs failed: %s: %s", len(indices), type(error).__name__, error
            )
            results.update((i, JobResult(None, len(indices), error)) for i in indices)
            continue
        seconds = time.perf_counter() - start
        results.update(
            (i, JobResult(output, len(indices), seconds=seconds))
            for i, output in zip(indices, outputs, strict=True)
        )
    return [results[i] for i in range(len(jobs))]
