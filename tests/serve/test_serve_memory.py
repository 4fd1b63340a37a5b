"""Memory bounded by the limits: every video stream counts, the clip's aspect ratio is limited,
the footprint is checked before decoding, and the worst request the guard app's limits allow
stays within its budget, measured as the replica's peak resident memory over real HTTP."""

from __future__ import annotations

import io
import time
from fractions import Fraction

import av
import numpy as np
import pytest
from serve_testing import (
    GUARD_ASPECT,
    GUARD_MAX_CLIPS,
    GUARD_MAX_FRAMES,
    GUARD_MAX_PIXELS,
    GUARD_MAX_REQUEST_BYTES,
    GUARD_SOURCE_HW,
    Service,
)

from model.media import encode_mp4
from serve.errors import LimitExceeded
from serve.inputs import parse_encode_query
from serve.limits import (
    MIB,
    StreamSize,
    check_encode_memory,
    encode_footprint,
    probe_video_streams,
    worst_encode_footprint,
)
from serve.settings import ServeArgs

MP4 = "video/mp4"
# The guard app's worst clip: the most frames, at the extreme aspect ratio (tall, from a wide
# source), at the most pixels.
WORST_CLIP_W = int((GUARD_MAX_PIXELS / GUARD_ASPECT) ** 0.5)
WORST_CLIP = (GUARD_MAX_FRAMES, int(WORST_CLIP_W * GUARD_ASPECT), WORST_CLIP_W)  # 33x128x32


def moving_gradient(frames: int, height: int, width: int) -> np.ndarray:
    """(T, H, W, 3) uint8 that H.264 compresses to a few KB: a large source in a small upload."""
    x = np.arange(width, dtype=np.int64)[None, :]
    y = np.arange(height, dtype=np.int64)[:, None]
    return np.stack(
        [
            np.repeat(((x + y + 5 * t) % 256).astype(np.uint8)[..., None], 3, -1)
            for t in range(frames)
        ]
    )


def two_stream_mp4(small_hw: tuple[int, int], large_hw: tuple[int, int], frames: int) -> bytes:
    """An MP4 whose first video stream is small and whose second is large."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        streams = []
        for height, width in (small_hw, large_hw):
            stream = container.add_stream("libx264", rate=Fraction(25))
            stream.height, stream.width, stream.pix_fmt = height, width, "yuv420p"
            streams.append(stream)
        for stream, (height, width) in zip(streams, (small_hw, large_hw), strict=True):
            for image in moving_gradient(frames, height, width):
                container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
            container.mux(stream.encode(None))
    return buffer.getvalue()


# --- in process -------------------------------------------------------------------------------
def test_the_probe_reads_every_video_stream() -> None:
    assert probe_video_streams(two_stream_mp4((64, 64), (400, 640), 3)) == StreamSize(400, 640, 2)


def test_the_worst_case_bounds_every_request_the_limits_allow() -> None:
    worst = worst_encode_footprint(
        4 * MIB, GUARD_SOURCE_HW[0] * GUARD_SOURCE_HW[1], 33, 64 * 64, 2, GUARD_ASPECT
    )
    for source_hw in [(720, 1280), (1280, 720), (960, 960), (480, 1920), (1920, 480)]:
        for clip_hw in [(64, 64), (128, 32), (32, 128), (56, 72)]:
            for mode in ("crop", "stretch"):
                footprint = encode_footprint(4 * MIB, source_hw, (33, *clip_hw), 2, mode)
                assert footprint.total <= worst.total, (source_hw, clip_hw, mode)


def test_a_request_over_the_budget_is_refused_before_decoding() -> None:
    settings = ServeArgs(max_request_bytes=384 * MIB)
    _, clip = parse_encode_query({"num_frames": "33", "height": "256", "width": "256"}, settings)
    with pytest.raises(LimitExceeded, match=r"max_request_bytes\) is 384 MiB.*largest: decoder"):
        check_encode_memory(1_000_000, StreamSize(2160, 3840, 1), clip, settings)
    footprint = check_encode_memory(1_000_000, StreamSize(720, 1280, 1), clip, settings)
    assert footprint.total <= 384 * MIB


# --- over HTTP --------------------------------------------------------------------------------
def test_a_large_second_stream_is_refused(service: Service) -> None:
    """The first stream passes max_source_pixels, the second does not: refused by the second."""
    answer = service.client.post(
        f"{service.url}/encode",
        content=two_stream_mp4((64, 64), (400, 640), 5),
        headers={**service.auth, "Content-Type": MP4},
    )
    assert answer.status_code == 422, answer.text
    assert "640x400 = 256000 pixels" in answer.json()["detail"]
    assert "largest of its 2 video streams" in answer.json()["detail"]


@pytest.mark.parametrize(("height", "width"), [(8, 512), (128, 16)])
def test_extreme_clip_aspect_ratios_are_refused(
    guard_service: Service, height: int, width: int
) -> None:
    answer = guard_service.client.post(
        f"{guard_service.url}/encode",
        params={"height": height, "width": width},
        content=b"\0",
        headers={**guard_service.auth, "Content-Type": MP4},
    )
    assert answer.status_code == 422, answer.text
    assert "at most 4 times the shorter" in answer.json()["detail"]


def replica_pid(app_name: str) -> int:
    """The process id of the app's one replica, asked of the replica actor itself."""
    import os

    import ray

    names = [
        (a["name"], a["namespace"])
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["name"].startswith(f"SERVE_REPLICA::{app_name}#LatentServer#")
    ]
    assert len(names) == 1, names
    actor = ray.get_actor(*names[0])
    return int(ray.get(actor.__ray_call__.remote(lambda self: os.getpid())))


def status_kib(pid: int, field: str) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/{pid}/status")


@pytest.mark.slow
def test_the_worst_allowed_request_stays_within_the_budget(guard_service: Service) -> None:
    """A 720p source of 66 frames, two clips of 33 frames at the extreme allowed aspect ratio:
    the replica's peak resident memory during the request, above what it held before, stays
    within max_request_bytes, and within the footprint computed for the request."""
    frames = GUARD_MAX_CLIPS * GUARD_MAX_FRAMES
    video = encode_mp4(moving_gradient(frames, *GUARD_SOURCE_HW), 25)
    params = {
        "num_frames": WORST_CLIP[0],
        "height": WORST_CLIP[1],
        "width": WORST_CLIP[2],
        "clip_mode": "uniform",
        "num_clips": GUARD_MAX_CLIPS,
    }
    footprint = encode_footprint(len(video), GUARD_SOURCE_HW, WORST_CLIP, GUARD_MAX_CLIPS, "crop")
    assert footprint.total <= GUARD_MAX_REQUEST_BYTES

    def send() -> None:
        answer = guard_service.client.post(
            f"{guard_service.url}/encode",
            params=params,
            content=video,
            headers={**guard_service.auth, "Content-Type": MP4},
        )
        assert answer.status_code == 200, answer.text
        assert answer.headers["x-latent-shape"].startswith(f"{GUARD_MAX_CLIPS},")

    pid = replica_pid("wfvae-guard")
    send()  # the first request pays for lazy initialisation (decoder, kernels), not counted
    time.sleep(0.5)
    with open(f"/proc/{pid}/clear_refs", "w") as handle:
        handle.write("5")  # resets the peak (VmHWM) to the resident set now
    before = status_kib(pid, "VmRSS")
    send()
    growth = (status_kib(pid, "VmHWM") - before) * 1024
    print(
        f"replica peak growth {growth / MIB:.0f} MiB; footprint {footprint.describe()}; "
        f"budget {GUARD_MAX_REQUEST_BYTES / MIB:.0f} MiB"
    )
    assert growth <= GUARD_MAX_REQUEST_BYTES
    assert growth <= footprint.total
