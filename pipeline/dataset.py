"""The run on Ray: the Ray Data dataset from work units to part records (read/decode tasks, the
encoder actor pool, write tasks), streamed through the committer under the stall watchdog."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pyarrow.compute as pc

from pipeline.balance import decode_tasks
from pipeline.committer import UnitCommitter
from pipeline.parts import write_parts
from pipeline.planning import Encoding
from pipeline.progress import EtaLog, ProgressBoard, StageCounts, StallWatchdog, create_board
from pipeline.settings import PipelineSettings
from pipeline.sources import WorkUnit
from pipeline.stages import EncodeStage, read_and_decode

if TYPE_CHECKING:
    from ray.actor import ActorHandle
    from ray.data import ActorPoolStrategy, Dataset

log = logging.getLogger(__name__)

__all__ = [
    "Execution",
    "build_dataset",
    "encoder_strategy",
    "execute",
    "side_concurrency",
    "start_ray",
]


def start_ray(settings: PipelineSettings) -> float:
    """Joins the cluster of `settings.ray_address` (a local one when None), unless this process
    is already in one; returns the cluster's GPUs."""
    import ray

    if not ray.is_initialized():
        ray.init(address=settings.ray_address, log_to_driver=False)
    return float(ray.cluster_resources().get("GPU", 0))


def side_concurrency(settings: PipelineSettings, cluster_cpus: float, encoders: int) -> int:
    """The CPUs the encoders leave, at least 1: the default cap on write tasks at once, and the
    cap on read/decode tasks (`pipeline.balance.decode_tasks`)."""
    return max(1, int(cluster_cpus - encoders * settings.encoder_num_cpus))


def encoder_strategy(pool: tuple[int, int]) -> ActorPoolStrategy:
    """A fixed pool, or one Ray Data scales between the two sizes as the work queue asks."""
    import ray

    low, high = pool
    if low == high:
        return ray.data.ActorPoolStrategy(size=low)
    return ray.data.ActorPoolStrategy(min_size=low, max_size=high)


def build_dataset(
    settings: PipelineSettings,
    units: list[WorkUnit],
    encoding: Encoding,
    gpus: float,
    board: ActorHandle[ProgressBoard] | None = None,
    cluster_cpus: float = 1.0,
) -> Dataset:
    """Units -> (read, decode, sample clips in tasks) -> (encode in an actor pool) -> (write Parquet
    parts in tasks) -> one small record per part, the only thing the driver receives."""
    import ray

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = settings.progress_bars
    pool = settings.encoder_pool(gpus)
    side = side_concurrency(settings, cluster_cpus, pool[1])
    decode = decode_tasks(
        settings.read_concurrency,
        settings.decode_cpus_per_encoder,
        encoders=pool[1],
        free_cpus=side,
        gpu_encoders=gpus > 0,
    )
    log.info(
        "encoders: %s on %s; read/decode tasks at once: %d (%s); write tasks: %d",
        f"{pool[0]}" if pool[0] == pool[1] else f"{pool[0]}-{pool[1]} (autoscaling)",
        "GPUs" if gpus else "CPUs",
        decode.tasks,
        decode.reason,
        settings.write_concurrency or side,
    )
    dataset = ray.data.from_items([u.to_row() for u in units], override_num_blocks=len(units))
    # The read stage reserves memory (the encoder a GPU where there is one), so Ray keeps the two
    # as separate operators: decoding runs in its own tasks, overlapped with the encoder actors,
    # instead of being fused into them and serialised with encoding.
    dataset = dataset.map_batches(
        read_and_decode,
        batch_size=1,
        batch_format="pyarrow",
        fn_kwargs={
            "storage": settings.storage,
            "clip_settings": settings.clips,
            "model_id": encoding.encoder.model_id,
            "latent_kind": encoding.encoder.latent_kind,
            "board": board,
            "block_bytes": context.target_max_block_size,
        },
        compute=ray.data.TaskPoolStrategy(size=decode.tasks),
        num_cpus=settings.read_num_cpus,
        memory=settings.read_memory_bytes,
    )
    dataset = dataset.map_batches(
        EncodeStage,  # a class: Ray Data runs it in actors, each loading the model once
        compute=encoder_strategy(pool),
        num_cpus=settings.encoder_num_cpus,
        **({"num_gpus": 1} if gpus else {}),  # one GPU per encoder actor where the cluster has them
        fn_constructor_kwargs={
            "encoder": encoding.encoder,
            "batch_size": settings.batch_size,
            "latent_dtype": settings.latent_dtype,
            "precision": encoding.precision,
            "board": board,
        },
        batch_size=settings.batch_size,
        batch_format="pyarrow",
    )
    # Latents go from the encoders to these tasks through the object store, and from them to
    # storage: never through the driver. Batches of many rows keep part files few and large.
    return dataset.map_batches(
        write_parts,
        batch_size=settings.write_batch_rows,
        batch_format="pyarrow",
        fn_kwargs={
            "output": settings.output,
            "storage": settings.storage,
            "file_metadata": encoding.file_metadata,
            "board": board,
        },
        compute=ray.data.TaskPoolStrategy(size=settings.write_concurrency or side),
        num_cpus=settings.write_num_cpus,
    )


@dataclass
class Execution:
    """What streaming the units through the cluster told the driver, besides the markers."""

    first_result_s: float | None = None
    first_result_clips: int = 0
    counts: StageCounts = field(default_factory=StageCounts)


def execute(
    settings: PipelineSettings,
    units: list[WorkUnit],
    encoding: Encoding,
    gpus: float,
    committer: UnitCommitter,
    start: float,
) -> Execution:
    """Run the dataset, feeding the part records to `committer`, under the stall watchdog."""
    import ray

    board = create_board()
    cpus = float(ray.cluster_resources().get("CPU", 1.0))
    dataset = build_dataset(settings, units, encoding, gpus, board=board, cluster_cpus=cpus)
    blocks = dataset.iter_batches(batch_size=None, batch_format="pyarrow")
    eta = EtaLog(len(units))
    watchdog = StallWatchdog(board, len(units), settings.stall_timeout_s)
    execution = Execution()
    clips_done = 0
    for block in watchdog.stream(blocks):
        block_clips = pc.sum(block.column("clips")).as_py() or 0
        if execution.first_result_s is None:
            execution.first_result_s = time.perf_counter() - start
            execution.first_result_clips = block_clips
        clips_done += block_clips
        if committer.add(block):
            eta.update(committer.committed, clips_done)
    execution.counts = watchdog.final_counts()
    log.debug("ray data stats:\n%s", dataset.stats())
    return execution
