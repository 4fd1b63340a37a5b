"""The batch job: plan units against the manifest, stream them through Ray Data, commit, summarise."""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pyarrow.compute as pc
import torch
from pydantic import BaseModel, Field

from model import DtypeChoice, choose_dtype
from model.errors import ConfigError
from pipeline.balance import (
    DECODE_BOUND_IDLE_SHARE,
    ENCODE_BOUND_MIN_WAIT_S,
    ENCODE_BOUND_WAIT_BATCHES,
    Verdict,
    decode_tasks,
    stage_balance,
)
from pipeline.committer import UnitCommitter
from pipeline.encoding import ClipEncoder, EncoderSettings, model_identity
from pipeline.manifest import (
    ChannelSums,
    UnitMarker,
    delete_unit,
    load_markers,
    remove_orphans,
    stats_uri,
    summary_uri,
    write_index,
    write_json,
)
from pipeline.parts import write_parts
from pipeline.progress import EtaLog, StageCounts, StallWatchdog, create_board
from pipeline.settings import PipelineSettings
from pipeline.sources import (
    InputsNotTaken,
    NoInputsError,
    WorkUnit,
    group_items,
    inputs_not_taken,
    list_sources,
)
from pipeline.stages import EncodeStage, read_and_decode
from pipeline.storage import list_inputs

log = logging.getLogger(__name__)

__all__ = [
    "LatentStats",
    "RunPlan",
    "RunSummary",
    "build_dataset",
    "check_one_precision",
    "encoder_strategy",
    "side_concurrency",
    "latent_stats",
    "plan_run",
    "run_pipeline",
]


class RunSummary(BaseModel):
    """What a run did: inputs, clips, errors by reason, throughput."""

    output: str
    units_total: int
    units_skipped: int
    units_processed: int
    samples: int
    clips: int
    errors: int
    errors_by_reason: dict[str, int] = Field(default_factory=dict)
    inputs_not_taken: InputsNotTaken = Field(
        default_factory=InputsNotTaken,
        description="files under the inputs that are no input (captions beside videos aside), "
        "and named inputs of no known kind: counted, by ending, the first named",
    )
    seconds: float
    clips_per_s: float
    first_result_s: float | None = Field(
        default=None,
        description="seconds until the first encoded block reached the driver (start-up)",
    )
    first_result_clips: int = Field(default=0, description="clips in that first block")
    bytes_written: int = Field(default=0, description="Parquet bytes the workers wrote")
    cpu_seconds: float = Field(
        default=0.0, description="CPU time of the stages' calls (read, encode, write) and driver"
    )
    gpu_seconds: float = Field(
        default=0.0, description="busy time of the encoder actors on GPUs (their model calls)"
    )
    cpu_seconds_per_1000_clips: float | None = None
    gpu_seconds_per_1000_clips: float | None = None
    # Decode against encode (pipeline.balance): which stage held the other up.
    encode_busy_s: float = Field(
        default=0.0, description="wall time of the encoder actors' calls, summed over actors"
    )
    encode_startup_wait_s: float = Field(
        default=0.0,
        description="encoder actors' wait from model loaded to their first batch, summed "
        "(start-up: not in the verdict)",
    )
    encode_waited_on_decode_s: float = Field(
        default=0.0,
        description="encoder actors' idle time between one batch and the next, summed over "
        "actors: encode waiting on decode",
    )
    decode_waited_on_encode_s: float = Field(
        default=0.0,
        description="mean time a decoded clip waited before an encoder took it: decode waiting "
        "on encode (wall clocks of the decode task and the encoder, which may be two nodes)",
    )
    encode_idle_share: float | None = Field(
        default=None,
        description="encode_waited_on_decode_s / (it + encode_busy_s); None before any "
        "encoder's second batch",
    )
    decode_wait_batches: float | None = Field(
        default=None,
        description="decode_waited_on_encode_s / an encoder's mean seconds per batch of clips",
    )
    stage_balance: Verdict | None = Field(
        default=None,
        description=f"decode-bound (encode_idle_share >= {DECODE_BOUND_IDLE_SHARE}), else "
        f"encode-bound (decode_wait_batches >= {ENCODE_BOUND_WAIT_BATCHES:g} and "
        f"decode_waited_on_encode_s >= {ENCODE_BOUND_MIN_WAIT_S:g}), else balanced; None "
        "when no encoder had a second batch (no idle time to judge) and the waits are short",
    )

    def steady_clips_per_s(self) -> float | None:
        """Clips/s after start-up (actor spawn, model load, first batch): the rate a long job sees."""
        if self.first_result_s is None or self.seconds <= self.first_result_s:
            return None
        return (self.clips - self.first_result_clips) / (self.seconds - self.first_result_s)

    def table(self) -> str:
        """A short human-readable report (for logs and the CLI)."""
        reasons = ", ".join(f"{k}={v}" for k, v in sorted(self.errors_by_reason.items())) or "none"
        balance = ""
        if self.stage_balance:
            idle = self.encode_idle_share
            balance = (
                f"; {self.stage_balance} ("
                + (f"encoders idle {idle:.0%} between batches, " if idle is not None else "")
                + f"clips waited {self.decode_waited_on_encode_s:.2f}s for an encoder)"
            )
        return (
            f"units {self.units_processed} processed, {self.units_skipped} skipped "
            f"(of {self.units_total}); samples {self.samples}; clips {self.clips}; "
            f"errors {self.errors} ({reasons}); {self.seconds:.1f}s; {self.clips_per_s:.2f} clips/s"
            f"{balance}"
        )


class LatentStats(BaseModel):
    """Per-channel mean and std of every latent under an output prefix (population std)."""

    model_id: str
    latent_kind: str
    units: int
    count: list[int]
    mean: list[float]
    std: list[float]


def latent_stats(markers: list[UnitMarker], model_id: str, latent_kind: str) -> LatentStats:
    """Merge the units' channel sums into mean and std."""
    sums = ChannelSums()
    for marker in markers:
        sums = sums.merge(marker.sums)
    mean = [t / n if n else 0.0 for t, n in zip(sums.total, sums.count, strict=True)]
    std = [
        math.sqrt(max(q / n - m * m, 0.0)) if n else 0.0
        for q, n, m in zip(sums.squares, sums.count, mean, strict=True)
    ]
    return LatentStats(
        model_id=model_id,
        latent_kind=latent_kind,
        units=len(markers),
        count=sums.count,
        mean=mean,
        std=std,
    )


@dataclass
class RunPlan:
    """Units to run now, and the markers of units already finished."""

    units: list[WorkUnit]
    finished: dict[str, UnitMarker]
    skipped: int
    not_taken: InputsNotTaken = field(default_factory=InputsNotTaken)


def plan_run(settings: PipelineSettings, model_id: str) -> RunPlan:
    """Compare the inputs with the manifest: drop stale units, clean orphans, keep only new work."""
    listing = list_inputs(settings.inputs, settings.storage, settings.input_lists)
    own = settings.output.rstrip("/") + "/"  # an input folder holding the output: not its parts
    uris = [u for u in listing.inputs if not u.startswith(own)]
    not_taken = inputs_not_taken([u for u in listing.not_taken if not u.startswith(own)], uris)
    if not_taken.count:
        log.warning("%s", not_taken.describe())
    tars, items = list_sources(uris, settings.storage)
    if not tars and not items:  # a mistyped prefix must not look like a finished job
        raise NoInputsError(settings.inputs + settings.input_lists)
    current = {t.shard: t.version for t in tars} | {i.uri: i.version for i in items}
    markers = load_markers(settings.output, settings.storage)
    settings_hash = settings.output_hash(model_id)
    foreign = sorted(m.unit_id for m in markers.values() if m.settings_hash != settings_hash)
    if foreign:
        raise ConfigError(
            f"{settings.output} holds {len(foreign)} units written with other clip, model or latent "
            f"settings (e.g. {foreign[0]}); use a new output prefix"
        )
    for marker in list(markers.values()):  # a source changed since: redo its whole unit
        if any(
            uri in current and current[uri] != version for uri, version in marker.sources.items()
        ):
            log.info("unit %s has changed sources; it will be rewritten", marker.unit_id)
            delete_unit(settings.output, marker.unit_id, settings.storage)
            del markers[marker.unit_id]
    remove_orphans(settings.output, markers, settings.storage)
    done = set().union(*(m.done_sources() for m in markers.values())) if markers else set()
    pending_tars = [t for t in tars if f"{t.shard}@{t.version}" not in done]
    pending_items = [i for i in items if f"{i.uri}@{i.version}" not in done]
    units = pending_tars + group_items(pending_items, settings.files_per_unit)
    skipped = sum(1 for m in markers.values() if any(uri in current for uri in m.sources))
    return RunPlan(units=units, finished=markers, skipped=skipped, not_taken=not_taken)


def _ray_init(settings: PipelineSettings) -> None:
    import ray

    if not ray.is_initialized():
        ray.init(address=settings.ray_address, log_to_driver=False)


def _cluster_gpus() -> float:
    import ray

    return float(ray.cluster_resources().get("GPU", 0))


def side_concurrency(settings: PipelineSettings, cluster_cpus: float, encoders: int) -> int:
    """The CPUs the encoders leave, at least 1: the default cap on write tasks at once, and the
    cap on read/decode tasks (`pipeline.balance.decode_tasks`)."""
    return max(1, int(cluster_cpus - encoders * settings.encoder_num_cpus))


def encoder_strategy(pool: tuple[int, int]) -> Any:  # ray.data.ActorPoolStrategy
    """A fixed pool, or one Ray Data scales between the two sizes as the work queue asks."""
    import ray

    low, high = pool
    if low == high:
        return ray.data.ActorPoolStrategy(size=low)
    return ray.data.ActorPoolStrategy(min_size=low, max_size=high)


def build_dataset(
    settings: PipelineSettings,
    units: list[WorkUnit],
    encoder: EncoderSettings,
    gpus: float,
    file_metadata: dict[str, Any],
    board: Any = None,
    cluster_cpus: float = 1.0,
) -> Any:  # ray.data.Dataset
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
            "storage": settings.storage.model_dump(mode="json"),
            "clip_settings": settings.clips.model_dump(mode="json"),
            "model_id": encoder.model_id,
            "latent_kind": encoder.latent_kind,
            "board": board,
            "block_bytes": context.target_max_block_size,
        },
        compute=ray.data.TaskPoolStrategy(size=decode.tasks),
        num_cpus=settings.read_num_cpus,
        memory=settings.read_memory_bytes,
    )
    dataset = dataset.map_batches(
        EncodeStage,
        batch_size=settings.batch_size,
        batch_format="pyarrow",
        fn_constructor_kwargs={
            "encoder": encoder.model_dump(mode="json"),
            "batch_size": settings.batch_size,
            "latent_dtype": settings.latent_dtype,
            "board": board,
        },
        compute=encoder_strategy(pool),
        num_cpus=settings.encoder_num_cpus,
        **({"num_gpus": 1} if gpus else {}),  # one GPU per encoder actor where the cluster has them
    )
    # Latents go from the encoders to these tasks through the object store, and from them to
    # storage: never through the driver. Batches of many rows keep part files few and large.
    return dataset.map_batches(
        write_parts,
        batch_size=settings.write_batch_rows,
        batch_format="pyarrow",
        fn_kwargs={
            "output": settings.output,
            "storage": settings.storage.model_dump(mode="json"),
            "file_metadata": file_metadata,
            "board": board,
        },
        compute=ray.data.TaskPoolStrategy(size=settings.write_concurrency or side),
        num_cpus=settings.write_num_cpus,
    )


@dataclass
class _Execution:
    """What streaming the units through the cluster told the driver, besides the markers."""

    first_result_s: float | None = None
    first_result_clips: int = 0
    counts: StageCounts = field(default_factory=StageCounts)


def _execute(
    settings: PipelineSettings,
    units: list[WorkUnit],
    encoder: EncoderSettings,
    gpus: float,
    file_metadata: dict[str, Any],
    committer: UnitCommitter,
    start: float,
) -> _Execution:
    """Run the dataset, feeding the part records to `committer`, under the stall watchdog."""
    import ray

    board = create_board()
    cpus = float(ray.cluster_resources().get("CPU", 1.0))
    dataset = build_dataset(
        settings, units, encoder, gpus, file_metadata, board=board, cluster_cpus=cpus
    )
    blocks = dataset.iter_batches(batch_size=None, batch_format="pyarrow")
    eta = EtaLog(len(units))
    watchdog = StallWatchdog(board, len(units), settings.stall_timeout_s)
    execution = _Execution()
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


def _encode_dtype(encoder: EncoderSettings, gpus: bool) -> DtypeChoice:
    """The encode dtype of a run. GPU actors resolve `auto` on their GPU (bfloat16, float16 where
    a GPU lacks it); on a CPU cluster the driver resolves it on its CPU (`model.precision`: bfloat16
    with AMX-BF16, else float32) and the actors are given that dtype."""
    if gpus:
        if encoder.dtype == "auto":
            return DtypeChoice(torch.bfloat16, "auto on CUDA workers")
        return DtypeChoice(getattr(torch, encoder.dtype), "asked for")
    return choose_dtype(encoder.dtype, "cpu", force=encoder.force_dtype)


def check_one_precision(output: str, finished: Iterable[UnitMarker], encode_dtype: DtypeChoice) -> None:
    """Refuses to add latents in `encode_dtype` to a prefix whose finished units name another.

    `encoder.dtype` `auto` (the hash's value) resolves per machine: bfloat16 on GPUs and CPUs
    with AMX-BF16, float32 on other CPUs, so a refresh run elsewhere could mix the two in one
    dataset (bf16 and fp32 latents differ by ~1%)."""
    others = Counter(m.encode_dtype for m in finished if m.encode_dtype not in (None, encode_dtype.name))
    if others:
        dtype, units = others.most_common(1)[0]
        raise ConfigError(
            f"{output} holds {units} units encoded in {dtype}, and this run would encode in "
            f"{encode_dtype.name} ({encode_dtype.reason}): one prefix holds one precision; run "
            f"where encoder.dtype resolves to {dtype}, or use a new output prefix"
        )


def run_pipeline(settings: PipelineSettings) -> RunSummary:
    """Encode every new input under `settings` into Parquet latent shards; return the summary."""
    start, driver_cpu = time.perf_counter(), time.process_time()
    model_id = settings.encoder.model_id or model_identity(settings.encoder.source)
    encoder = settings.encoder.model_copy(update={"model_id": model_id})
    # Load once on the driver (CPU): fails fast on a bad model and gives the files' metadata.
    probe = ClipEncoder.from_settings(
        encoder.model_copy(update={"device": "cpu", "dtype": "float32"})
    )
    model_metadata = probe.metadata()
    del probe
    plan = plan_run(settings, model_id)
    log.info("%d units to process, %d already done", len(plan.units), plan.skipped)
    gpus = 0.0
    if plan.units:
        _ray_init(settings)
        gpus = _cluster_gpus()
    encode_dtype = _encode_dtype(encoder, gpus > 0)
    if not gpus:  # the actors encode in the dtype the metadata names (decided here, once)
        encoder = encoder.model_copy(update={"dtype": encode_dtype.name})
    file_metadata = {
        **model_metadata,
        "encode_dtype": encode_dtype.name,
        "encode_dtype_reason": encode_dtype.reason,
        "latent_dtype": settings.latent_dtype,
        "settings_hash": settings.output_hash(model_id),
        "clip_settings": settings.clips.model_dump(mode="json"),
    }
    if plan.units:
        check_one_precision(settings.output, plan.finished.values(), encode_dtype)
    committer = UnitCommitter(
        settings.output, settings.storage, plan.units, settings.output_hash(model_id), encode_dtype.name
    )
    execution = _Execution()
    if plan.units:
        execution = _execute(settings, plan.units, encoder, gpus, file_metadata, committer, start)
    new_markers = committer.finish()
    if new_markers:
        finished = {**plan.finished, **{m.unit_id: m for m in new_markers}}
        # parts of a write retried with other rows: committed units list the kept ones
        remove_orphans(settings.output, finished, settings.storage)
        write_index(settings.output, finished, settings.storage)
    seconds = time.perf_counter() - start
    reasons: Counter[str] = Counter()
    for marker in new_markers:
        reasons.update(marker.errors_by_reason)
    clips = sum(m.clips for m in new_markers)
    counts = execution.counts
    cpu_seconds = counts.cpu_s + time.process_time() - driver_cpu
    summary = RunSummary(
        output=settings.output,
        units_total=len(plan.units) + plan.skipped,
        units_skipped=plan.skipped,
        units_processed=len(new_markers),
        samples=sum(m.samples for m in new_markers),
        clips=clips,
        errors=sum(m.errors for m in new_markers),
        errors_by_reason=dict(sorted(reasons.items())),
        inputs_not_taken=plan.not_taken,
        seconds=seconds,
        clips_per_s=clips / seconds if seconds > 0 else 0.0,
        first_result_s=execution.first_result_s,
        first_result_clips=execution.first_result_clips,
        bytes_written=counts.bytes_written,
        cpu_seconds=cpu_seconds,
        gpu_seconds=counts.gpu_s,
        cpu_seconds_per_1000_clips=1000 * cpu_seconds / clips if clips else None,
        gpu_seconds_per_1000_clips=1000 * counts.gpu_s / clips if clips else None,
        **stage_balance(counts).model_dump(),
    )
    all_markers = list(plan.finished.values()) + new_markers
    stats = latent_stats(all_markers, model_id, settings.encoder.latent_kind)
    write_json(stats_uri(settings.output), stats.model_dump(mode="json"), settings.storage)
    write_json(summary_uri(settings.output), summary.model_dump(mode="json"), settings.storage)
    log.info("pipeline done: %s", summary.table())
    return summary
