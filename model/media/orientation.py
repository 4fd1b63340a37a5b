"""How a stored frame is shown: the display matrix (libavutil/display.h) as a transpose and flips.

Phones store portrait video as landscape frames and write a display matrix into the container
(MP4's `tkhd`, Matroska's projection) or the bitstream (H.264/HEVC display orientation SEI);
players, and FFmpeg's CLI (`autorotate`), turn the frames before showing them. FFmpeg attaches
the matrix to every decoded frame, which is where `probe_video` reads it.

The matrix maps a stored pixel (x, y) to the shown (x', y') = (a x + c y, b x + d y) + offset.
For the eight turns and mirrors of a rectangle, (a, b, c, d) are 0 or +-1: b = c = 0 keeps the
axes (a < 0 mirrors left-right, d < 0 top-bottom); a = d = 0 swaps them (shown row y' is stored
column x), then c < 0 mirrors the shown columns and b < 0 its rows.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

__all__ = ["DISPLAY_MATRIX_ONE", "Orientation"]

log = logging.getLogger(__name__)

DISPLAY_MATRIX_ONE = 1 << 16  # 1.0 in the matrix's 16.16 fixed point (entries a, b, c, d)
QUARTER_TURN_DEGREES = 90


@dataclass(frozen=True)
class Orientation:
    """A stored frame to its shown form: transposed (rows become columns) first, then mirrored."""

    transpose: bool = False
    mirror_columns: bool = False  # left-right, after the transpose
    mirror_rows: bool = False  # top-bottom, after the transpose

    @classmethod
    def from_display_matrix(cls, matrix: np.ndarray | list[int]) -> Orientation:
        """The orientation of a 9-entry display matrix (int32, 16.16 fixed point), as FFmpeg's CLI
        applies it; a turn that is not a multiple of 90 degrees goes to the nearest one, logged."""
        a, b, _, c, d = (float(v) / DISPLAY_MATRIX_ONE for v in list(matrix)[:5])
        if math.hypot(a, c) == 0 or math.hypot(b, d) == 0:
            return cls()  # singular: nothing to apply
        degrees = math.degrees(math.atan2(b, a))
        if abs(degrees - QUARTER_TURN_DEGREES * round(degrees / QUARTER_TURN_DEGREES)) > 1:
            log.warning(
                "display matrix turns by %.1f degrees; frames are turned to the nearest quarter",
                degrees,
            )
        if abs(a) >= abs(b):  # within 45 degrees of the axes kept
            return cls(transpose=False, mirror_columns=a < 0, mirror_rows=d < 0)
        return cls(transpose=True, mirror_columns=c < 0, mirror_rows=b < 0)

    @property
    def is_identity(self) -> bool:
        return not (self.transpose or self.mirror_columns or self.mirror_rows)

    @property
    def is_mirrored(self) -> bool:
        """True where the shown picture is a mirror image of the stored one (not a pure turn)."""
        return self.transpose != (self.mirror_columns != self.mirror_rows)

    @property
    def degrees(self) -> int:
        """The counter-clockwise turn of a pure turn (0, 90, 180, 270), as FFmpeg reports it."""
        if not self.transpose:
            return 180 if self.mirror_columns and self.mirror_rows else 0
        return 90 if self.mirror_rows else 270

    def shown_size(self, stored_hw: tuple[int, int]) -> tuple[int, int]:
        """(height, width) a stored (height, width) frame is shown at."""
        return (stored_hw[1], stored_hw[0]) if self.transpose else stored_hw

    def stored_size(self, shown_hw: tuple[int, int]) -> tuple[int, int]:
        """(height, width) of the stored frame that is shown at `shown_hw` (a transpose is its own inverse)."""
        return self.shown_size(shown_hw)

    def apply(self, frames: np.ndarray) -> np.ndarray:
        """(T, h, w, C) stored frames -> (T, h', w', C) as shown: a view, no copy."""
        if self.transpose:
            frames = frames.swapaxes(1, 2)
        if self.mirror_rows:
            frames = frames[:, ::-1]
        if self.mirror_columns:
            frames = frames[:, :, ::-1]
        return frames
