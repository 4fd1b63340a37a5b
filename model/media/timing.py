"""When each frame is shown: the stream's packet timestamps (no decoding), and the frames shown nearest given instants.

Frame i of a video is the i-th frame in presentation order, as every decoder backend numbers
them: the i-th smallest packet timestamp. Clips asked for at a frame rate take, for each of
their instants, the frame shown nearest it, so variable-frame-rate footage (phones slow their
rate in low light) gives clips at an even pace.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from .probe import VideoSource, source_stream

__all__ = [
    "TIE_SECONDS",
    "StreamTimes",
    "frames_at_rate",
    "last_start_at_rate",
    "read_stream_times",
]

# Two frames this close to equally near an instant count as a tie, which the earlier one wins:
# the choice then does not hang on the rounding of pts * time_base.
TIE_SECONDS = 1e-6


@dataclass(frozen=True)
class StreamTimes:
    """The first video stream's frames in presentation order, from its packets."""

    pts: np.ndarray  # (N,) int64, ascending: frame i is shown at pts[i] * time_base
    keyframes: np.ndarray  # (K,) int64, ascending: the indices of frames that start a GOP
    time_base: Fraction
    numbered: bool  # every packet has its own timestamp: pts[i] names frame i exactly

    @property
    def seconds(self) -> np.ndarray:
        """(N,) float64: each frame's time after the first frame's."""
        return (
            (self.pts - self.pts[0]).astype(np.float64) * float(self.time_base)
            if len(self.pts)
            else np.empty(0)
        )

    @property
    def index_of_pts(self) -> dict[int, int]:
        return {int(pts): index for index, pts in enumerate(self.pts)}


def read_stream_times(source: VideoSource) -> StreamTimes:
    """The timestamps of the first video stream's packets, read without decoding a frame.

    Packets the container marks to be discarded (an edit list's cut) give no frame and are
    left out; `numbered` is False where a packet has no timestamp or shares one."""
    import av

    with av.open(source_stream(source)) as container:
        stream = container.streams.video[0]
        packets = [
            (p.pts, p.is_keyframe)
            for p in container.demux(stream)
            if p.size > 0 and not p.is_discard
        ]
        time_base = Fraction(stream.time_base) if stream.time_base else Fraction(0)
    stamped = sorted((pts, key) for pts, key in packets if pts is not None)
    pts = np.array([p for p, _ in stamped], np.int64)
    numbered = len(stamped) == len(packets) and len(np.unique(pts)) == len(pts)
    keyframes = np.array([i for i, (_, key) in enumerate(stamped) if key], np.int64)
    return StreamTimes(pts=pts, keyframes=keyframes, time_base=time_base, numbered=numbered)


def _end_slack(seconds: np.ndarray) -> float:
    """How far past the last frame's time an instant may lie and still be nearest to it: half
    the last frame's interval."""
    return float(seconds[-1] - seconds[-2]) / 2 if len(seconds) > 1 else 0.0


def frames_at_rate(seconds: np.ndarray, start: int, count: int, rate: float) -> list[int] | None:
    """The frames shown nearest the instants start + k / rate (k < count), after frame `start`'s
    time; None when the last instant lies past the video's end."""
    if not 0 <= start < len(seconds):
        return None
    instants = seconds[start] + np.arange(count, dtype=np.float64) / rate  # (count,)
    if instants[-1] > seconds[-1] + _end_slack(seconds) + TIE_SECONDS:
        return None
    if len(seconds) == 1:
        return [0] * count
    after = np.searchsorted(seconds, instants, side="left").clip(1, len(seconds) - 1)
    before = after - 1
    take_after = seconds[after] - instants < instants - seconds[before] - TIE_SECONDS
    return np.where(take_after, after, before).tolist()


def last_start_at_rate(seconds: np.ndarray, count: int, rate: float) -> int:
    """The last frame from which `count` instants at `rate` fit in the video; -1 if none does."""
    if not len(seconds):
        return -1
    latest = seconds[-1] + _end_slack(seconds) + TIE_SECONDS - (count - 1) / rate
    return int(np.searchsorted(seconds, latest, side="right")) - 1
