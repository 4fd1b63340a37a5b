"""What a run did: its summary (`summary.json`: units, clips, errors, cost, which stage held the
other up) and the latent statistics of its output (`latent_stats.json`)."""

from __future__ import annotations

import math
from collections import Counter
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from pipeline.balance import (
    DECODE_BOUND_IDLE_SHARE,
    ENCODE_BOUND_MIN_WAIT_S,
    ENCODE_BOUND_WAIT_BATCHES,
    Verdict,
    stage_balance,
)
from pipeline.manifest import ChannelSums, UnitMarker
from pipeline.sources import InputsNotTaken
from pipeline.text.run import TextSummary

if TYPE_CHECKING:
    from pipeline.dataset import Execution
    from pipeline.planning import RunPlan

__all__ = ["LatentStats", "RunSummary", "latent_stats", "summarise"]


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

    # The text stage (`pipeline.text`), where the run had a text encoder.
    text: TextSummary | None = Field(default=None, description="the text stage, if it ran")

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
            f"{balance}{_text_line(self.text)}"
        )


def _text_line(text: TextSummary | None) -> str:
    if text is None:
        return ""
    reasons = ", ".join(f"{k}={v}" for k, v in sorted(text.errors_by_reason.items())) or "none"
    return (
        f"; text ({text.folder}): units {text.units_processed} embedded, {text.units_skipped} "
        f"current; {text.embedded} embeddings, {text.nulls} without caption, {text.errors} errors "
        f"({reasons}); {text.seconds:.1f}s"
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


def summarise(
    output: str,
    plan: RunPlan,
    new_markers: list[UnitMarker],
    execution: Execution,
    seconds: float,
    driver_cpu_s: float,
) -> RunSummary:
    """The summary of a run that planned `plan` and committed `new_markers` in `seconds`."""
    reasons: Counter[str] = Counter()
    for marker in new_markers:
        reasons.update(marker.errors_by_reason)
    clips = sum(m.clips for m in new_markers)
    counts = execution.counts
    cpu_seconds = counts.cpu_s + driver_cpu_s
    return RunSummary(
        output=output,
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
