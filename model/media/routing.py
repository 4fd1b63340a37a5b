"""Which decoder backends take a video: by its codec and container (from the probe), fastest first.

Each backend bundles its own FFmpeg build and numbers frames its own way. What follows was
measured against PyAV decoding every frame in order (`tests/model/test_media_corpus.py`):

- decord 0.6 cannot open AV1 (its FFmpeg has no AV1 decoder) nor Ogg. In MPEG-TS, MPEG-PS
  (`.mpg`) and ASF (`.wmv`) its frame index is not exact: frames are returned, but not those
  asked for (MPEG-TS: from the first frame on). It is trusted in the containers where it was
  exact: the MP4 family, Matroska/WebM, AVI and FLV. In the MP4 family it turns frames by the
  display matrix itself, but does not mirror them: a mirroring MP4 goes to the next backend.
- torchcodec is not installed on the machines that measured the rest; it is given the
  containers decord is trusted in, and no video whose display matrix mirrors (0.11 and later
  turn frames themselves, by quarter turns).
- PyAV decodes in order and counts frames, so it is exact everywhere; it seeks only where its
  seeks were exact (not in MPEG-TS, where they land past the frame asked for).

A video goes to the first backend in `AUTO_ORDER` that is installed and trusted with it; if that
one cannot open or decode it, the next takes it (`model.media.reading`).
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from functools import cache
from typing import Literal

from ..errors import VideoDecodeError
from .probe import MP4_FAMILY, VideoInfo

__all__ = [
    "AUTO_ORDER",
    "REASON_NO_DECODER",
    "REASON_UNSUPPORTED_CODEC",
    "REASON_UNSUPPORTED_CONTAINER",
    "DecoderName",
    "Route",
    "available_decoders",
    "resolve_decoder",
    "route_video",
]

log = logging.getLogger(__name__)

DecoderName = Literal["auto", "decord", "torchcodec", "pyav"]
AUTO_ORDER: tuple[str, ...] = ("decord", "torchcodec", "pyav")  # fastest first
PACKAGES = {"decord": "decord", "torchcodec": "torchcodec", "pyav": "av"}
REASON_NO_DECODER = "no_decoder"  # no backend installed (or the one named is not)
REASON_UNSUPPORTED_CODEC = (
    "unsupported_codec"  # no installed backend (or not the one named) decodes the codec
)
REASON_UNSUPPORTED_CONTAINER = (
    "unsupported_container"  # the backend named does not number this container's frames exactly
)

INDEXED_CONTAINERS = frozenset({MP4_FAMILY, "matroska,webm", "avi", "flv"})
SEEKABLE_CONTAINERS = INDEXED_CONTAINERS | {"asf", "mpeg", "ogg"}  # where PyAV's seeks were exact
CODECS_NOT_DECODED = {"decord": frozenset({"av1"})}


@cache
def available_decoders() -> tuple[str, ...]:
    """The backends whose package is installed, fastest first; the missing ones are logged once."""
    found = []
    for name in AUTO_ORDER:
        try:
            importlib.import_module(PACKAGES[name])
        except Exception as error:  # ImportError, or a wheel whose native libraries do not load
            log.info("video decoder %s unavailable (%s: %s)", name, type(error).__name__, error)
            continue
        found.append(name)
    return tuple(found)


def resolve_decoder(name: DecoderName) -> str:
    """The backend `name` stands for: `auto` takes the fastest installed; a named one must be installed."""
    installed = available_decoders()
    if name == "auto":
        if not installed:
            raise VideoDecodeError(
                REASON_NO_DECODER,
                f"no video decoder installed; install one of {', '.join(AUTO_ORDER)}",
            )
        return installed[0]
    if name not in installed:
        spec = importlib.util.find_spec(PACKAGES[name])
        why = "not installed" if spec is None else "installed but failed to load"
        raise VideoDecodeError(
            REASON_NO_DECODER,
            f"video decoder {name!r} is {why}; installed: {', '.join(installed) or 'none'}",
        )
    return name


def _refusal(backend: str, info: VideoInfo) -> tuple[str, str] | None:
    """(reason, why) where `backend` is not trusted with the video, else None."""
    codec = info.codec or "this codec"
    if backend == "pyav":
        return (
            None
            if info.codec
            else (REASON_UNSUPPORTED_CODEC, "PyAV's FFmpeg has no decoder for the video's codec")
        )
    if info.codec in CODECS_NOT_DECODED.get(backend, ()):
        return REASON_UNSUPPORTED_CODEC, f"{backend} does not decode {codec}"
    if info.container not in INDEXED_CONTAINERS:
        return (
            REASON_UNSUPPORTED_CONTAINER,
            f"{backend}'s frame index is not exact in {info.container or 'this container'}",
        )
    if info.orientation.is_mirrored and (backend == "torchcodec" or info.container == MP4_FAMILY):
        return (
            REASON_UNSUPPORTED_CONTAINER,
            f"{backend} turns frames by the display matrix but does not mirror them",
        )
    return None


@dataclass(frozen=True)
class Route:
    """The backends to try for one video, in order, and why the others were passed over."""

    backends: tuple[str, ...]
    passed_over: tuple[
        tuple[str, str], ...
    ]  # (reason, why): ("unsupported_codec", "decord does not decode av1")

    def refusal(self, info: VideoInfo) -> VideoDecodeError:
        """The error when no backend is left to try: the codec's, if a backend refused it."""
        reasons = [reason for reason, _ in self.passed_over]
        reason = REASON_UNSUPPORTED_CODEC if REASON_UNSUPPORTED_CODEC in reasons else reasons[0]
        return VideoDecodeError(
            reason, f"{_described(info)}: " + "; ".join(why for _, why in self.passed_over)
        )


def _described(info: VideoInfo) -> str:
    return f"{info.codec or 'a codec PyAV does not know'} in {info.container or 'an unknown container'}"


def route_video(info: VideoInfo, decoder: DecoderName = "auto") -> Route:
    """The installed backends trusted with the video, fastest first (`auto`), or the one named;
    raises VideoDecodeError naming the codec or container where none is."""
    if decoder != "auto":
        backend = resolve_decoder(decoder)
        refused = _refusal(backend, info)
        if refused is not None:
            reason, why = refused
            others = [b for b in available_decoders() if b != backend and _refusal(b, info) is None]
            hint = f"; {', '.join(others)} or decoder=auto read it" if others else ""
            raise VideoDecodeError(reason, f"{_described(info)}: {why}{hint}")
        return Route((backend,), ())
    resolve_decoder("auto")  # raises when nothing is installed
    backends, passed = [], []
    for backend in available_decoders():
        refused = _refusal(backend, info)
        if refused is None:
            backends.append(backend)
        else:
            passed.append(refused)
    route = Route(tuple(backends), tuple(passed))
    if not backends:
        raise route.refusal(info)
    return route
