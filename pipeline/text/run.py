"""The text stage's story: plan the units whose clips lack current text, embed their captions in
an actor pool of its own, commit per unit, summarise.

It runs after the video stage's units are committed, over committed latent parts only, so the
same code serves a job that encodes video and text and a refresh that only adds a text encoder
to an existing output (which then reads no video and writes no latent). Its pool holds the
GPUs once the video encoders are done with them, instead of splitting them with the video
encoders for a model that is busy a small share of the time.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from pydantic import BaseModel, Field

from model.errors import ConfigError
from model.precision import DtypeChoice, choose_dtype
from model.storage import StorageSettings
from model.text_encoder import TextEncoderCard
from pipeline.manifest import LATENTS_DIR, UnitMarker
from pipeline.progress import (
    ENCODE,
    READ,
    WRITE,
    PipelineStalledError,
    ProgressBoard,
    StageCounts,
    StallWatchdog,
    create_board,
)
from pipeline.settings import PipelineSettings, TextSettings
from pipeline.text.committer import TextCommitter
from pipeline.text.layout import (
    TextIdentity,
    TextUnitMarker,
    delete_text_unit,
    is_current,
    load_text_markers,
    remove_text_orphans,
    text_prefix,
    write_identity,
)
from pipeline.text.stages import TextStage, read_captions, write_text_parts

if TYPE_CHECKING:
    from ray.actor import ActorHandle
    from ray.data import Dataset

log = logging.getLogger(__name__)

__all__ = [
    "TextPlan",
    "build_text_dataset",
    "check_one_dtype",
    "TextSummary",
    "plan_text",
    "run_text_stage",
    "text_identity",
    "text_precision",
]

TEXT_STAGE_NAMES = {READ: "read_captions", ENCODE: "text_encode", WRITE: "write_text_parts"}


class TextSummary(BaseModel):
    """What the text stage of a run did (`summary.json`'s `text`)."""

    text_encoder_id: str
    folder: str = Field(description="the text folder under the output: text/<tag>")
    text_dtype: str | None = Field(description="the dtype the encoder ran in; None: nothing ran")
    text_dtype_reason: str | None = None
    units_total: int = Field(description="latent units with clips")
    units_skipped: int = Field(description="units whose text was current already")
    units_processed: int
    rows: int = Field(description="clips given a text row (embedding, null or error)")
    embedded: int
    nulls: int = Field(description="clips without a caption")
    errors: int
    errors_by_reason: dict[str, int] = Field(default_factory=dict)
    captions_encoded: int = Field(
        default=0,
        description="distinct captions run through the encoder (identical ones once a block)",
    )
    mean_tokens: float | None = None
    bytes_written: int = 0
    seconds: float = 0.0
    rows_per_s: float = 0.0
    cpu_seconds: float = 0.0
    gpu_seconds: float = 0.0


def text_identity(text: TextSettings) -> tuple[TextEncoderCard, TextIdentity]:
    """The text encoder's card (read on the driver, no weights) and the identity of its folder."""
    if text.encoder is None:
        raise ConfigError("no text encoder given (text.encoder)")
    card = TextEncoderCard.read(text.encoder, text.max_tokens)
    return card, TextIdentity.of(card, text.dtype)


def text_precision(text: TextSettings, gpus: bool) -> DtypeChoice:
    """The text encoder's dtype for the run, decided once on the driver (`model.precision`'s
    `auto` rule; bfloat16 on GPU workers: T5 overflows in float16)."""
    if gpus:
        if text.dtype == "auto":
            return DtypeChoice(torch.bfloat16, "auto on CUDA workers")
        return DtypeChoice(getattr(torch, text.dtype), "asked for")
    return choose_dtype(text.dtype, "cpu", force=text.force_dtype)


@dataclass
class TextPlan:
    """The latent units whose text is to be made, and the text units already current."""

    prefix: str
    pending: list[UnitMarker]
    current: dict[str, TextUnitMarker]


def plan_text(
    output: str,
    identity: TextIdentity,
    latent_markers: Mapping[str, UnitMarker],
    storage: StorageSettings,
    prune: bool = True,
) -> TextPlan:
    """Compare the text folder's markers with the latent units: a unit with clips and no current
    text is pending. With `prune`, text units no longer current (their latent unit redone or
    retired) are deleted and parts no text marker lists removed."""
    prefix = text_prefix(output, identity.tag())
    markers = load_text_markers(prefix, storage)
    current = {
        unit_id: marker
        for unit_id, marker in markers.items()
        if unit_id in latent_markers and is_current(marker, latent_markers[unit_id])
    }
    if prune:
        for unit_id, marker in markers.items():
            if unit_id not in current:
                log.info("text of unit %s is out of date (its latents changed): redone", unit_id)
                delete_text_unit(prefix, marker, storage)
        remove_text_orphans(prefix, current, storage)
    pending = [m for u, m in latent_markers.items() if m.clips and u not in current]
    return TextPlan(prefix=prefix, pending=pending, current=current)


def check_one_dtype(
    prefix: str, current: Mapping[str, TextUnitMarker], choice: DtypeChoice
) -> None:
    """One text folder holds one resolved dtype (`auto` resolves per machine)."""
    others = Counter(m.text_dtype for m in current.values() if m.text_dtype != choice.name)
    if others:
        dtype, units = others.most_common(1)[0]
        raise ConfigError(
            f"{prefix} holds {units} units embedded in {dtype}, and this run would embed in "
            f"{choice.name} ({choice.reason}): one text folder holds one dtype; run where "
            f"text.dtype resolves to {dtype}, or set text.dtype"
        )


def build_text_dataset(
    settings: PipelineSettings,
    plan: TextPlan,
    card: TextEncoderCard,
    precision: DtypeChoice,
    file_metadata: Mapping[str, object],
    gpus: float,
    cluster_cpus: float,
    board: ActorHandle[ProgressBoard] | None = None,
) -> Dataset:
    """Latent parts -> (read key, caption in tasks) -> (embed in the text actor pool) -> (write
    text parts in tasks) -> one record per part."""
    import ray

    from pipeline.dataset import encoder_strategy

    text = settings.text
    pool = text.pool(gpus)
    side = max(1, int(cluster_cpus - pool[1] * text.num_cpus))
    parts = [
        {"unit_id": m.unit_id, "latent_file": name}
        for m in plan.pending
        for name in m.files(LATENTS_DIR)
    ]
    log.info(
        "text stage: %d units (%d latent parts), %s text encoder actors on %s",
        len(plan.pending), len(parts), f"{pool[0]}" if pool[0] == pool[1] else f"{pool[0]}-{pool[1]}",
        "GPUs" if gpus else "CPUs",
    )  # fmt: skip
    dataset = ray.data.from_items(parts, override_num_blocks=len(parts))
    dataset = dataset.map_batches(
        read_captions,
        batch_size=1,
        batch_format="pyarrow",
        fn_kwargs={"output": settings.output, "storage": settings.storage, "board": board},
        compute=ray.data.TaskPoolStrategy(size=min(side, len(parts))),
        num_cpus=settings.read_num_cpus,
    )
    dataset = dataset.map_batches(
        TextStage,
        compute=encoder_strategy(pool),
        num_cpus=text.num_cpus,
        **({"num_gpus": 1} if gpus else {}),
        fn_constructor_kwargs={
            "source": card.source,
            "max_tokens": card.max_tokens,
            "precision": precision,
            "device": text.device,
            "force_dtype": text.force_dtype,
            "batch_size": text.batch_size,
            "board": board,
        },
        batch_size=text.batch_size,
        batch_format="pyarrow",
    )
    return dataset.map_batches(
        write_text_parts,
        batch_size=settings.write_batch_rows,
        batch_format="pyarrow",
        fn_kwargs={
            "prefix": plan.prefix,
            "storage": settings.storage,
            "file_metadata": file_metadata,
            "board": board,
        },
        compute=ray.data.TaskPoolStrategy(size=settings.write_concurrency or side),
        num_cpus=settings.write_num_cpus,
    )


def run_text_stage(
    settings: PipelineSettings,
    latent_markers: Mapping[str, UnitMarker],
    start_ray: Callable[[PipelineSettings], float],
) -> TextSummary:
    """Embed the captions of every committed latent unit that lacks current text under the
    run's text encoder; `start_ray` joins the cluster (only called when there is work)."""
    started, driver_cpu = time.perf_counter(), time.process_time()
    card, identity = text_identity(settings.text)
    plan = plan_text(settings.output, identity, latent_markers, settings.storage)
    precision: DtypeChoice | None = None
    if plan.pending:
        gpus = start_ray(settings)
        precision = text_precision(settings.text, gpus > 0)
        check_one_dtype(plan.prefix, plan.current, precision)
    log.info(
        "text encoder %s (max_tokens %d) into %s: %d units to embed, %d current",
        card.text_encoder_id, card.max_tokens, plan.prefix, len(plan.pending), len(plan.current),
    )  # fmt: skip
    if precision is None:  # nothing to embed: no cluster, no dtype to decide
        return _summary(
            card, identity, plan, latent_markers, [], None, None, 0, started, driver_cpu
        )
    committer = TextCommitter(plan.prefix, settings.storage, plan.pending, precision.name)
    write_identity(plan.prefix, identity, settings.storage)
    file_metadata = {
        **identity.model_dump(),
        "text_dtype": precision.name,
        "text_dtype_reason": precision.reason,
        "folder": identity.tag(),
    }
    import ray

    board = create_board()
    cpus = float(ray.cluster_resources().get("CPU", 1.0))
    dataset = build_text_dataset(settings, plan, card, precision, file_metadata, gpus, cpus, board)
    parts = sum(len(m.files(LATENTS_DIR)) for m in plan.pending)
    watchdog = StallWatchdog(board, parts, settings.stall_timeout_s)
    blocks = dataset.iter_batches(batch_size=None, batch_format="pyarrow")
    try:
        for block in watchdog.stream(blocks):
            committer.add(block)
    except PipelineStalledError as error:  # named as the text stage's steps
        stage = TEXT_STAGE_NAMES.get(error.stage, error.stage)
        raise PipelineStalledError(
            stage, settings.stall_timeout_s, watchdog.counts, parts
        ) from error
    counts = watchdog.final_counts()
    markers = committer.finish()
    return _summary(
        card, identity, plan, latent_markers, markers, precision, counts,
        committer.bytes_written, started, driver_cpu,
    )  # fmt: skip


def _summary(
    card: TextEncoderCard,
    identity: TextIdentity,
    plan: TextPlan,
    latent_markers: Mapping[str, UnitMarker],
    markers: list[TextUnitMarker],
    precision: DtypeChoice | None,
    counts: StageCounts | None,
    bytes_written: int,
    started: float,
    driver_cpu: float,
) -> TextSummary:
    seconds = time.perf_counter() - started
    rows = sum(m.rows for m in markers)
    embedded = sum(m.embedded for m in markers)
    reasons: Counter[str] = Counter()
    for marker in markers:
        reasons.update(marker.errors_by_reason)
    return TextSummary(
        text_encoder_id=card.text_encoder_id,
        folder=f"text/{identity.tag()}",
        text_dtype=precision.name if precision else None,
        text_dtype_reason=precision.reason if precision else None,
        units_total=sum(1 for m in latent_markers.values() if m.clips),
        units_skipped=len(plan.current),
        units_processed=len(markers),
        rows=rows,
        embedded=embedded,
        nulls=sum(m.nulls for m in markers),
        errors=sum(m.errors for m in markers),
        errors_by_reason=dict(sorted(reasons.items())),
        captions_encoded=counts.captions_encoded if counts else 0,
        mean_tokens=sum(m.tokens for m in markers) / embedded if embedded else None,
        bytes_written=bytes_written,
        seconds=seconds,
        rows_per_s=rows / seconds if seconds > 0 else 0.0,
        cpu_seconds=(counts.cpu_s if counts else 0.0) + time.process_time() - driver_cpu,
        gpu_seconds=counts.gpu_s if counts else 0.0,
    )
