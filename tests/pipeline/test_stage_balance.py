"""Decode against encode: the decode stage's size, and the waits and verdict in summary.json."""

from __future__ import annotations

import json
import logging
import math
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from pipeline.balance import (
    CPU_DECODE_CPUS_PER_ENCODER,
    DECODE_BOUND_IDLE_SHARE,
    DECODE_S_PER_CLIP,
    ENCODE_BOUND_WAIT_BATCHES,
    GPU_DECODE_CPUS_PER_ENCODER,
    GPU_ENCODE_S_PER_CLIP,
    decode_tasks,
    stage_balance,
)
from pipeline.progress import StageCounts
from pipeline.settings import PipelineSettings


def test_the_defaults_follow_from_the_measured_costs() -> None:
    # 140 ms a 720p clip on one core, 16.7 ms a clip on an H200: 8.4 cores per GPU, rounded up
    assert DECODE_S_PER_CLIP / GPU_ENCODE_S_PER_CLIP == pytest.approx(8.4, abs=0.05)
    assert GPU_DECODE_CPUS_PER_ENCODER == 9
    assert CPU_DECODE_CPUS_PER_ENCODER == 1  # far under one core per CPU encoder: one task each


@pytest.mark.parametrize(
    ("read_concurrency", "per_encoder", "encoders", "free", "gpu", "tasks", "because"),
    [
        (None, None, 8, 192, True, 72, "8 encoders x 9 CPUs per encoder (default for GPU"),
        (None, None, 8, 32, True, 32, "= 72, capped by the CPUs encoders leave: 32"),
        (None, None, 2, 30, False, 2, "2 encoders x 1 CPU per encoder (default for CPU"),
        (None, 0.7, 10, 100, False, 7, "x 0.7 CPUs per encoder (decode_cpus_per_encoder)"),
        (None, 0.5, 3, 100, True, 2, "3 encoders x 0.5"),  # 1.5 tasks: rounded up
        (
            None,
            4.0,
            1,
            0,
            False,
            1,
            "capped by the CPUs encoders leave: 1",
        ),  # always at least one task
        (40, 4.0, 8, 16, True, 40, "read_concurrency"),  # the explicit cap wins, uncapped
    ],
)
def test_decode_tasks_are_encoders_times_cpus_per_encoder_within_the_free_cpus(
    read_concurrency: int | None,
    per_encoder: float | None,
    encoders: int,
    free: int,
    gpu: bool,
    tasks: int,
    because: str,
) -> None:
    sizing = decode_tasks(read_concurrency, per_encoder, encoders, free, gpu)
    assert sizing.tasks == tasks
    assert because in sizing.reason


def test_decode_cpus_per_encoder_is_a_positive_setting() -> None:
    settings = PipelineSettings(inputs=["x.tar"], output="out", decode_cpus_per_encoder="2.5")
    assert settings.decode_cpus_per_encoder == 2.5
    assert PipelineSettings(inputs=["x.tar"], output="out").decode_cpus_per_encoder is None
    with pytest.raises(ValidationError, match="decode_cpus_per_encoder"):
        PipelineSettings(inputs=["x.tar"], output="out", decode_cpus_per_encoder=0)


@pytest.mark.parametrize(
    ("counts", "verdict"),
    [
        # encoders idle half their time between batches
        (
            dict(
                encode_busy_s=10,
                encode_waited_s=10,
                encode_actors=1,
                encode_calls=10,
                encode_batches=10,
            ),
            "decode-bound",
        ),
        # fed (idle 5%), clips waited 10 batches of 1 s
        (
            dict(
                encode_busy_s=19,
                encode_waited_s=1,
                encode_actors=1,
                encode_calls=19,
                encode_batches=19,
                clip_wait_s=190,
                clips_waited=19,
            ),
            "encode-bound",
        ),
        # fed, clips waited 10 batches, but of 10 ms: Ray Data's hand-off, not a queue
        (
            dict(
                encode_busy_s=0.19,
                encode_waited_s=0.01,
                encode_actors=1,
                encode_calls=19,
                encode_batches=19,
                clip_wait_s=1.9,
                clips_waited=19,
            ),
            "balanced",
        ),
        # fed, and clips waited one batch: neither stage held the other up
        (
            dict(
                encode_busy_s=19,
                encode_waited_s=1,
                encode_actors=1,
                encode_calls=19,
                encode_batches=19,
                clip_wait_s=19,
                clips_waited=19,
            ),
            "balanced",
        ),
        # one batch per encoder: no idle time to judge, and a short wait
        (
            dict(
                encode_busy_s=2,
                encode_actors=2,
                encode_calls=2,
                encode_batches=2,
                clip_wait_s=1,
                clips_waited=8,
            ),
            None,
        ),
        # one batch per encoder, but its clips waited 8 batches: encode-bound all the same
        (
            dict(
                encode_busy_s=2,
                encode_actors=2,
                encode_calls=2,
                encode_batches=2,
                clip_wait_s=64,
                clips_waited=8,
            ),
            "encode-bound",
        ),
        (dict(), None),  # nothing encoded: no verdict
    ],
)
def test_the_verdict_rule(counts: dict[str, Any], verdict: str | None) -> None:
    balance = stage_balance(StageCounts(**counts))
    assert balance.stage_balance == verdict
    if counts.get("encode_waited_s"):
        assert balance.encode_idle_share == pytest.approx(
            counts["encode_waited_s"] / (counts["encode_busy_s"] + counts["encode_waited_s"])
        )


def read_summary(output: Path) -> dict[str, Any]:
    return json.loads((output / "summary.json").read_text())


BALANCE_FIELDS = (
    "encode_busy_s",
    "encode_startup_wait_s",
    "encode_waited_on_decode_s",
    "decode_waited_on_encode_s",
    "encode_idle_share",
    "decode_wait_batches",
    "stage_balance",
)


def balance_of(summary: dict[str, Any]) -> dict[str, Any]:
    """The summary's decode-against-encode fields (for assertion messages)."""
    return {name: summary[name] for name in BALANCE_FIELDS}


def check_sane(summary: dict[str, Any]) -> None:
    for name in (
        "encode_busy_s",
        "encode_startup_wait_s",
        "encode_waited_on_decode_s",
        "decode_waited_on_encode_s",
    ):
        assert summary[name] >= 0, name
    assert summary["encode_busy_s"] > 0
    assert 0 <= summary["encode_idle_share"] <= 1


@pytest.mark.slow
def test_a_slow_decode_is_decode_bound(
    ray_cluster: None,
    sample_videos: dict[str, Path],
    make_settings: Callable[..., Any],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from pipeline.run import run_pipeline

    # Ten 720p videos, two per unit, decoded one at a time (129 frames each, about 0.5 s of one
    # core) into one 33x16x16 clip each (every 4th frame), which the bundled model encodes in
    # milliseconds: the encoder waits. Ten, so that the units decoded while the encoder starts
    # (start-up is not in the verdict) leave some to wait for.
    inputs = tmp_path / "videos"
    inputs.mkdir()
    for i in range(10):
        shutil.copy(sample_videos["bigbuckbunny"], inputs / f"bunny{i}.mp4")
    settings = make_settings(
        inputs=[str(inputs)],
        output=str(tmp_path / "out"),
        clips={"num_frames": 33, "frame_stride": 4, "height": 16, "width": 16},
        files_per_unit=2,
        batch_size=1,
        concurrency=1,
        decode_cpus_per_encoder=1,
    )
    with caplog.at_level(logging.INFO, logger="pipeline.dataset"):
        summary = run_pipeline(settings)
    assert "read/decode tasks at once: 1 (1 encoder x 1 CPU per encoder" in caplog.text
    written = read_summary(tmp_path / "out")
    check_sane(written)
    assert summary.clips == 10
    # Measured: idle 0.88-0.95 of the encoder's time (three runs); the rule's line is 0.25
    assert written["encode_idle_share"] > 2 * DECODE_BOUND_IDLE_SHARE, balance_of(written)
    assert written["stage_balance"] == "decode-bound"


@pytest.mark.slow
def test_a_slow_encode_is_encode_bound(
    ray_cluster: None,
    sample_videos: dict[str, Path],
    make_settings: Callable[..., Any],
    tmp_path: Path,
) -> None:
    from pipeline.run import run_pipeline

    # One 640x272 video cut into every 9-frame clip it holds (27), decoded in one pass, while
    # each clip at 128x128 costs the encoder one batch: the clips queue in front of it.
    settings = make_settings(
        inputs=[str(sample_videos["bikes"])],
        output=str(tmp_path / "out"),
        clips={"num_frames": 9, "height": 128, "width": 128, "clip_mode": "all"},
        batch_size=1,
        concurrency=1,
    )
    summary = run_pipeline(settings)
    written = read_summary(tmp_path / "out")
    check_sane(written)
    assert summary.clips == math.floor(250 / 9)
    # Clip k waits about k batches: measured a mean of 13.7-15.0 batches (1.8-2.1 s), against
    # the rule's 4 (and 0.5 s)
    assert written["decode_wait_batches"] > 2 * ENCODE_BOUND_WAIT_BATCHES, balance_of(written)
    assert written["encode_idle_share"] < DECODE_BOUND_IDLE_SHARE, balance_of(written)
    assert written["stage_balance"] == "encode-bound"
