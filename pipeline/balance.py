"""Decode against encode: how many decode tasks feed the encoders, and which stage held the other up.

On a GPU cluster the model is not what limits a job: decoding is. One H200 encodes a 33x256x256
clip in 16.7 ms (bf16, about 60 clips/s); one CPU core decodes it from 720p H.264 in 140 ms. So
the read/decode stage is sized against the encoder pool (`decode_tasks`), and the run reports
how long each stage waited on the other (`stage_balance`), so an operator sees whether to give
the decode stage more CPUs or the job more encoders.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel

from pipeline.progress import StageCounts

__all__ = [
    "CPU_DECODE_CPUS_PER_ENCODER",
    "DECODE_BOUND_IDLE_SHARE",
    "ENCODE_BOUND_MIN_WAIT_S",
    "ENCODE_BOUND_WAIT_BATCHES",
    "GPU_DECODE_CPUS_PER_ENCODER",
    "DecodeSizing",
    "StageBalance",
    "Verdict",
    "decode_tasks",
    "stage_balance",
]

# Measured per-clip costs, 33x256x256 clips (benchmarks/README.md):
DECODE_S_PER_CLIP = 0.140  # one core, 1280x720 H.264, decord, the whole clip path
# ("Clip decoding", benchmarks/clip_decode.py, 2026-12-03: 133 and 140 ms in two runs, the larger
# taken; 1080p 396-448 ms, 360p 83-84 ms; PyAV 1.1-1.2x, torchcodec 1.1-1.4x decord's)
GPU_ENCODE_S_PER_CLIP = 0.0167  # one H200, bf16 ("On a GPU", 2026-11-26)
CPU_ENCODE_S_PER_CORE_CLIP = (
    4.16  # CPU seconds, bf16, AMX CPU ("bf16 on CPUs with AMX", 2026-12-03)
)

# Decode cores one encoder consumes = decode seconds per clip / encode seconds per clip.
# GPU: 0.140 / 0.0167 = 8.4 cores per H200, rounded up so that 720p sources keep it fed.
GPU_DECODE_CPUS_PER_ENCODER = float(math.ceil(DECODE_S_PER_CLIP / GPU_ENCODE_S_PER_CLIP))  # 9
# CPU: 0.140 / 4.16 = 0.034 cores per encoder CPU: far under one, so one task per encoder. A
# decode task decodes one unit at a time, so fewer tasks than encoders would leave encoders
# waiting while units start; an idle one costs nothing (read tasks reserve no CPU by default).
CPU_DECODE_CPUS_PER_ENCODER = float(
    max(1, math.ceil(DECODE_S_PER_CLIP / CPU_ENCODE_S_PER_CORE_CLIP))
)

# The verdict's thresholds (`stage_balance`):
# An encoder that is kept fed still waits between batches while Ray Data hands it the next block
# and stores its output; a quarter of its time idle is more than that hand-off.
DECODE_BOUND_IDLE_SHARE = 0.25
# Ray Data keeps 2 tasks in flight per encoder actor (DataContext.max_tasks_in_flight_per_actor,
# default 2 x max_concurrency 1), so a fed encoder's clips wait up to about 2 batches by design;
# twice that means a standing queue of decoded clips: the decode stage could be smaller.
ENCODE_BOUND_WAIT_BATCHES = 4.0
# And at least this long: handing a block from a decode task to an actor takes Ray Data up to
# ~0.15 s (clips of decode-bound test runs waited 0.03-0.15 s with the encoder ~90% idle, on the
# 2-core machine), many "batches" of a model that encodes a batch in milliseconds.
ENCODE_BOUND_MIN_WAIT_S = 0.5

Verdict = Literal["decode-bound", "encode-bound", "balanced"]


@dataclass(frozen=True)
class DecodeSizing:
    """How many read/decode tasks run at once, and why (for the start-up log)."""

    tasks: int
    reason: str


def decode_tasks(
    read_concurrency: int | None,
    decode_cpus_per_encoder: float | None,
    encoders: int,
    free_cpus: int,
    gpu_encoders: bool,
) -> DecodeSizing:
    """Read/decode tasks at once: `read_concurrency` when set; else encoders x CPUs per encoder
    (default: the measured costs above, GPU or CPU), within `free_cpus` (the CPUs the encoders
    leave, at least 1)."""
    if read_concurrency is not None:
        return DecodeSizing(read_concurrency, "read_concurrency")
    free = max(1, free_cpus)
    if decode_cpus_per_encoder is not None:
        per, origin = decode_cpus_per_encoder, "decode_cpus_per_encoder"
    elif gpu_encoders:
        per, origin = GPU_DECODE_CPUS_PER_ENCODER, "default for GPU encoders"
    else:
        per, origin = CPU_DECODE_CPUS_PER_ENCODER, "default for CPU encoders"
    wanted = max(1, math.ceil(encoders * per - 1e-9))  # 1e-9: 10 x 0.7 is 7.000000000000001
    noun = "encoder" if encoders == 1 else "encoders"
    cpus = "CPU" if per == 1 else "CPUs"
    reason = f"{encoders} {noun} x {per:g} {cpus} per encoder ({origin})"
    if wanted > free:
        return DecodeSizing(free, f"{reason} = {wanted}, capped by the CPUs encoders leave: {free}")
    return DecodeSizing(wanted, reason)


class StageBalance(BaseModel):
    """The time each stage waited on the other, and which one bounded the run."""

    encode_busy_s: float
    encode_startup_wait_s: float
    encode_waited_on_decode_s: float
    decode_waited_on_encode_s: float
    encode_idle_share: float | None
    decode_wait_batches: float | None
    stage_balance: Verdict | None


def stage_balance(counts: StageCounts) -> StageBalance:
    """The verdict from the encoders' sums: decode-bound when they sat idle between batches for
    `DECODE_BOUND_IDLE_SHARE` of their time or more; else encode-bound when a decoded clip waited
    on average `ENCODE_BOUND_WAIT_BATCHES` of an encoder's batches or more, and at least
    `ENCODE_BOUND_MIN_WAIT_S`; else balanced. Without a second batch on any encoder there is no
    idle time to judge: encode-bound by the waits, else None."""
    busy_s, idle_s, batches = counts.encode_busy_s, counts.encode_waited_s, counts.encode_batches
    clip_wait_s, clips_waited = counts.clip_wait_s, counts.clips_waited
    worked = busy_s + idle_s
    second_calls = counts.encode_calls - counts.encode_actors  # calls after one on their actor
    idle_share = idle_s / worked if worked > 0 and second_calls > 0 else None
    mean_wait = clip_wait_s / clips_waited if clips_waited else 0.0
    batch_s = busy_s / batches if batches else 0.0
    wait_batches = mean_wait / batch_s if clips_waited and batch_s > 0 else None
    verdict: Verdict | None = None
    if idle_share is not None and idle_share >= DECODE_BOUND_IDLE_SHARE:
        verdict = "decode-bound"
    elif (
        wait_batches is not None
        and wait_batches >= ENCODE_BOUND_WAIT_BATCHES
        and mean_wait >= ENCODE_BOUND_MIN_WAIT_S
    ):
        verdict = "encode-bound"
    elif idle_share is not None:
        verdict = "balanced"
    return StageBalance(
        encode_busy_s=busy_s,
        encode_startup_wait_s=counts.encode_first_wait_s,
        encode_waited_on_decode_s=idle_s,
        decode_waited_on_encode_s=mean_wait,
        encode_idle_share=idle_share,
        decode_wait_batches=wait_batches,
        stage_balance=verdict,
    )
