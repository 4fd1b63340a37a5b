"""The project's error hierarchy, documented in one place.

    WFVAEError                      base of every error this project raises on purpose
    ├── ConfigError                 a config.json or preset the model cannot honour
    │   ├── StreamingUnsupportedError  chunked inference asked of a config that cannot stream exactly
    │   └── SlowPrecisionError      bf16/fp16 asked of a CPU without the AMX unit that runs it fast
    ├── InputShapeError             a tensor of the wrong rank, size, dtype or values (NaN, Inf, empty)
    ├── CheckpointError             weights that cannot be found, read or matched key for key
    └── VideoDecodeError            a video file that cannot be read, decoded or sampled

Core code raises these; the HTTP layer alone maps them to status codes and the pipeline
turns them into counted error rows.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "ConfigError",
    "InputShapeError",
    "SlowPrecisionError",
    "StreamingUnsupportedError",
    "VideoDecodeError",
    "WFVAEError",
    "error_reason",
]


class WFVAEError(Exception):
    """Base of every error this project raises on purpose."""


class ConfigError(WFVAEError, ValueError):
    """A model config the implementation cannot honour."""


class StreamingUnsupportedError(ConfigError):
    """Chunked inference was asked of a config whose normalisation spans time."""

    def __init__(self, norm_type: str) -> None:
        super().__init__(
            f"norm_type={norm_type!r} normalises over (C, T, H, W), so chunked inference "
            "cannot equal whole-clip inference; run whole-clip encode/decode instead"
        )


class SlowPrecisionError(ConfigError):
    """A compute dtype this CPU has no fast kernels for (`model.precision`), asked for unforced."""


class InputShapeError(WFVAEError, ValueError):
    """A tensor handed to the model has the wrong shape or values."""


class CheckpointError(WFVAEError):
    """Weights that cannot be found, read, or matched to the model key for key."""

    @classmethod
    def key_mismatch(cls, source: str, missing: list[str], unexpected: list[str]) -> CheckpointError:
        def listing(keys: list[str]) -> str:
            shown = ", ".join(keys[:10])
            return shown + (f", ... ({len(keys) - 10} more)" if len(keys) > 10 else "")

        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys: {listing(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys: {listing(unexpected)}")
        return cls(f"checkpoint {source} does not match the model: " + "; ".join(parts))


class VideoDecodeError(WFVAEError):
    """A video that cannot be read, decoded or sampled; `reason` is a short machine-readable tag."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def error_reason(error: BaseException) -> str:
    """A short, stable code for an error, for counting error rows by reason."""
    return str(getattr(error, "reason", type(error).__name__))
