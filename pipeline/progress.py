"""Stage progress: what each stage reports, the stall watchdog that reads it, and the stages' Ray metrics.

Every stage reports the rows it finished to a small actor (`ProgressBoard`, on the driver's node,
no CPU) and to Ray metrics counters (`ray.util.metrics`, exported to Prometheus and the Ray
dashboard as `wfvae_pipeline_*`). The driver's watchdog reads the board: when nothing moved,
no block done at any stage, for `stall_timeout_s`, the job stops with `PipelineStalledError`
naming the stage that holds the work, instead of waiting forever (Ray Data can hang, for
instance ray-project/ray#45822 and #62746, and a storage read can block).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, TypeVar, cast

from pydantic import BaseModel

if TYPE_CHECKING:
    from ray.actor import ActorHandle
    from ray.util.metrics import Counter

log = logging.getLogger(__name__)

__all__ = [
    "EtaLog",
    "PipelineStalledError",
    "ProgressBoard",
    "StageCounts",
    "create_board",
    "report",
    "StallWatchdog",
    "stalled_stage",
]

READ, ENCODE, WRITE = "read_and_decode", "encode", "write_parts"
BOARD_TIMEOUT_S = 10.0  # a board that does not answer counts as no progress, not as a failure
_DONE = object()
T = TypeVar("T")
# What a stage reports: counts and seconds, and error rows by "stage:reason".
Count = float | dict[str, int]


class StageCounts(BaseModel):
    """Rows (clip, error and unit-end rows) each stage has finished, and units fully read."""

    units_read: int = 0
    rows_read: int = 0
    clips_read: int = 0
    rows_encoded: int = 0
    clips_encoded: int = 0
    rows_written: int = 0
    clips_written: int = 0
    errors: dict[str, int] = {}  # "stage:reason" -> rows
    bytes_written: int = 0
    cpu_s: float = 0.0  # CPU time of the stages' calls (their processes, every thread)
    gpu_s: float = 0.0  # wall time of the encoders' model calls on a GPU
    # Decode against encode (pipeline.balance), summed over encoder actors and their calls:
    encode_actors: int = 0  # encoder actors that received a batch (restarted ones count again)
    encode_calls: int = 0
    encode_batches: int = 0  # calls with clips (not only unit-end or error rows)
    encode_busy_s: float = 0.0  # wall time in the encoders' calls, on any device
    encode_first_wait_s: float = 0.0  # from model loaded to first call: start-up
    encode_waited_s: float = 0.0  # from the end of one call to the start of the next
    clip_wait_s: float = 0.0  # clip rows' time from decoded (`decoded_at`) to an encoder's call
    clips_waited: int = 0  # the clip rows clip_wait_s covers
    captions_encoded: int = 0  # text stage: distinct captions run through the text encoder


class PipelineStalledError(RuntimeError):
    """No stage finished a block for `stall_timeout_s`: the job stops instead of hanging."""

    def __init__(self, stage: str, seconds: float, counts: StageCounts, units: int) -> None:
        super().__init__(
            f"stage {stage} stalled: no block finished at any stage for {seconds:.0f} s "
            f"(units read {counts.units_read}/{units}, rows read {counts.rows_read}, encoded "
            f"{counts.rows_encoded}, written {counts.rows_written}); committed units are kept, "
            "rerun to finish the rest"
        )
        self.stage = stage


class ProgressBoard:
    """The counters every stage adds to (a Ray actor: `create_board`)."""

    def __init__(self) -> None:
        self.counts = StageCounts()

    def add(self, **counts: Count) -> None:
        for name, value in counts.items():
            if name == "errors":
                for reason, n in value.items():
                    self.counts.errors[reason] = self.counts.errors.get(reason, 0) + n
            else:
                setattr(self.counts, name, getattr(self.counts, name) + value)

    def snapshot(self) -> StageCounts:
        return self.counts.model_copy(deep=True)


def create_board() -> ActorHandle[ProgressBoard]:
    """A ProgressBoard actor on this (the driver's) node, holding no CPU."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True)
    # Restarted if its node is lost (its counts then start over): the job goes on without it.
    return (
        ray.remote(ProgressBoard)
        .options(num_cpus=0, max_restarts=-1, max_task_retries=-1, scheduling_strategy=here)
        .remote()
    )


_METRICS: dict[str, Counter] = {}
METRIC_COUNTS = {  # StageCounts fields exported as counters, tagged with the stage
    **{
        name: f"{name.replace('_', ' ')} by the pipeline"
        for name in ("clips_read", "clips_encoded", "clips_written", "bytes_written", "cpu_s")
    },
    "encode_busy_s": "seconds the encoder actors spent in their calls",
    "encode_waited_s": "seconds the encoder actors sat idle between batches, waiting on decode",
    "clip_wait_s": "seconds decoded clips waited for an encoder, summed over clips",
}


def _metric(name: str, description: str, tags: tuple[str, ...] = ()) -> Counter:
    if name not in _METRICS:
        from ray.util.metrics import Counter

        _METRICS[name] = Counter(f"wfvae_pipeline_{name}", description, tag_keys=tags)
    return _METRICS[name]


def report(board: ActorHandle[ProgressBoard] | None, stage: str, **counts: Count) -> None:
    """Add a stage's finished work to the board (fire and forget) and to its Ray metrics."""
    if board is not None:
        board.add.remote(**counts)
    try:
        for name, description in METRIC_COUNTS.items():
            if counts.get(name):
                _metric(name, description, ("stage",)).inc(counts[name], tags={"stage": stage})
        for key, n in counts.get("errors", {}).items():
            where, _, reason = key.partition(":")
            errors = _metric("errors", "error rows, by stage and reason", ("stage", "reason"))
            errors.inc(n, tags={"stage": where, "reason": reason})
    except Exception as error:  # metrics are best effort (outside a Ray worker, say)
        log.debug("metrics not recorded for %s: %s", stage, error)


class EtaLog:
    """Logs the units committed, the rate and an ETA, once `after_units` are done and then at
    most every `every_s` (the rate over the units committed so far, from the job's start)."""

    def __init__(
        self,
        total_units: int,
        after_units: int = 3,
        every_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total_units
        self.after_units = after_units
        self.every_s = every_s
        self.clock = clock
        self.started = clock()
        self.last: float | None = None

    def update(self, done: int, clips: int) -> str | None:
        """Call as units commit; returns the line it logged, if any."""
        now = self.clock()
        if done < min(self.after_units, self.total) or done == 0:
            return None
        if self.last is not None and now - self.last < self.every_s and done < self.total:
            return None
        self.last = now
        elapsed = now - self.started
        remaining = elapsed / done * (self.total - done)
        line = (
            f"{done}/{self.total} units committed ({done / self.total:.0%}), {clips} clips, "
            f"{clips / elapsed if elapsed > 0 else 0.0:.1f} clips/s; ETA {_duration(remaining)}"
        )
        log.info("progress: %s", line)
        return line


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def stalled_stage(counts: StageCounts, units: int) -> str:
    """The stage holding the work: the most downstream one with input waiting, else the reads."""
    if counts.rows_encoded > counts.rows_written:
        return WRITE
    if counts.rows_read > counts.rows_encoded:
        return ENCODE
    if counts.units_read < units:
        return READ
    return "commit (driver)"


def _pump(blocks: Iterator[object], out: queue.Queue[object]) -> None:
    try:
        for block in blocks:
            out.put(block)
        out.put(_DONE)
    except BaseException as error:  # handed to the consumer, raised there
        out.put(error)


class StallWatchdog:
    """Streams a dataset's blocks and raises PipelineStalledError once neither a block nor the
    board moved for `stall_timeout_s`. The blocks are pulled on a daemon thread, so a hang inside
    Ray cannot hold the driver. `counts` is the board's last snapshot."""

    def __init__(
        self,
        board: ActorHandle[ProgressBoard],
        units: int,
        stall_timeout_s: float,
        poll_s: float = 2.0,
    ) -> None:
        self.board = board
        self.units = units
        self.stall_timeout_s = stall_timeout_s
        self.poll_s = poll_s
        self.counts = StageCounts()

    def _snapshot(self) -> StageCounts | None:
        import ray

        try:
            counts = ray.get(self.board.snapshot.remote(), timeout=BOARD_TIMEOUT_S)
        except Exception as error:  # the board's node is gone, or it is slow: no news
            log.debug("progress board did not answer: %s", error)
            return None
        if counts.rows_read < self.counts.rows_read:
            log.warning("the progress board restarted (its node was lost): counts start over")
        return counts

    def stream(self, blocks: Iterator[T]) -> Iterator[T]:
        pending: queue.Queue[object] = queue.Queue(maxsize=8)
        threading.Thread(target=_pump, args=(blocks, pending), daemon=True, name="blocks").start()
        last_move = time.monotonic()
        while True:
            try:
                item = pending.get(timeout=self.poll_s)
            except queue.Empty:
                item = None
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            if item is not None:
                last_move = time.monotonic()
                yield cast(T, item)  # a block, as `blocks` gave it
                continue
            counts = self._snapshot()
            if counts is not None and counts != self.counts:
                self.counts, last_move = counts, time.monotonic()
            idle = time.monotonic() - last_move
            if idle > self.stall_timeout_s:
                stage = stalled_stage(self.counts, self.units)
                raise PipelineStalledError(stage, idle, self.counts, self.units)

    def final_counts(self) -> StageCounts:
        """The board's counts at the end of the job (the last ones seen if it does not answer)."""
        counts = self._snapshot()
        if counts is None:
            log.warning("the progress board did not answer: the run's CPU/GPU seconds are partial")
            return self.counts
        return counts
