"""What a running job tells its operator: Ray metrics per stage, an ETA line, CPU and GPU seconds in summary.json."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from typing import Any

import pytest

from model.storage import open_fs
from pipeline.progress import EtaLog

METRICS_WAIT_S = 60  # Ray's workers push metrics to their node's agent every few seconds


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_eta_appears_once_a_few_units_are_done_and_then_every_half_minute() -> None:
    clock = FakeClock()
    eta = EtaLog(total_units=10, after_units=3, every_s=30.0, clock=clock)
    clock.now += 20
    assert eta.update(done=2, clips=200) is None  # too few units for a rate worth quoting
    clock.now += 10  # 30 s in, 3 of 10 done: 10 s a unit, 7 to go
    assert eta.update(done=3, clips=300) == (
        "3/10 units committed (30%), 300 clips, 10.0 clips/s; ETA 1m10s"
    )
    clock.now += 10
    assert eta.update(done=4, clips=400) is None  # at most one line per 30 s
    clock.now += 60  # 100 s in, 10 done
    assert eta.update(done=10, clips=1000) == (
        "10/10 units committed (100%), 1000 clips, 10.0 clips/s; ETA 0m00s"
    )


def test_summary_json_has_cpu_and_gpu_seconds_per_thousand_clips(
    reference_run: tuple[Any, Any],
) -> None:
    settings, summary = reference_run
    fs, path = open_fs(f"{settings.output}/summary.json", settings.storage)
    written = json.loads(fs.cat_file(path))
    assert written["cpu_seconds"] == pytest.approx(summary.cpu_seconds) and summary.cpu_seconds > 0
    assert written["gpu_seconds"] == 0.0  # the CPU-only test cluster
    assert written["cpu_seconds_per_1000_clips"] == pytest.approx(
        1000 * summary.cpu_seconds / summary.clips
    )
    assert written["gpu_seconds_per_1000_clips"] == 0.0
    assert written["bytes_written"] > 0


def test_summary_json_says_how_long_each_stage_waited_on_the_other(
    reference_run: tuple[Any, Any],
) -> None:
    settings, summary = reference_run
    fs, path = open_fs(f"{settings.output}/summary.json", settings.storage)
    written = json.loads(fs.cat_file(path))
    assert written["stage_balance"] == summary.stage_balance
    assert summary.stage_balance in ("decode-bound", "encode-bound", "balanced")
    assert written["encode_busy_s"] > 0
    for name in ("encode_startup_wait_s", "encode_waited_on_decode_s", "decode_waited_on_encode_s"):
        assert written[name] >= 0, name
    assert 0 <= written["encode_idle_share"] <= 1
    # the encoder's busy time is within the run's (one encoder on the test cluster)
    assert written["encode_busy_s"] < summary.seconds


def scrape() -> str:
    import ray

    port = ray._private.worker.global_worker.node.metrics_export_port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return response.read().decode()


def total(text: str, metric: str, **tags: str) -> float:
    """Sum of a counter's samples whose labels include `tags` (Ray exports `ray_<name>_total`)."""
    found = 0.0
    for line in text.splitlines():
        match = re.match(rf"^ray_{metric}_total\{{(.*)\}} ([0-9.e+]+)$", line)
        if match and all(f'{k}="{v}"' in match.group(1) for k, v in tags.items()):
            found += float(match.group(2))
    return found


@pytest.mark.slow
def test_stage_counters_reach_ray_metrics(reference_run: tuple[Any, Any]) -> None:
    _, summary = reference_run
    wanted = {
        ("wfvae_pipeline_clips_read", ("stage", "read_and_decode")),
        ("wfvae_pipeline_clips_encoded", ("stage", "encode")),
        ("wfvae_pipeline_clips_written", ("stage", "write_parts")),
    }
    deadline = time.monotonic() + METRICS_WAIT_S
    text = ""
    while time.monotonic() < deadline:
        text = scrape()
        if (
            all(total(text, m, **dict([t])) >= summary.clips for m, t in wanted)
            and total(text, "wfvae_pipeline_errors", stage="decode", reason="unreadable")
            and total(text, "wfvae_pipeline_encode_busy_s", stage="encode")
        ):
            break
        time.sleep(2)
    for metric, tag in wanted:  # this run's clips at least (the session's cluster runs others)
        assert total(text, metric, **dict([tag])) >= summary.clips, metric
    assert total(text, "wfvae_pipeline_errors", stage="decode", reason="unreadable") >= 2
    assert total(text, "wfvae_pipeline_bytes_written") > 0
    # the encoders' time, for the share of it spent waiting on decode (encode_waited_s)
    assert total(text, "wfvae_pipeline_encode_busy_s", stage="encode") > 0
