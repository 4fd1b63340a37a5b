"""Interrupted runs end with the rows of an uninterrupted one: a killed encoder actor, a killed driver."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from pipeline_cluster import encoder_pids
from test_pipeline_run import PARITY_TOLERANCE, read_prefix

from model.storage import open_fs
from pipeline.manifest import load_markers
from pipeline.records import latent_from_bytes
from pipeline.run import run_pipeline

REPO_ROOT = Path(__file__).resolve().parents[2]
KILL_DEADLINE_S = 120.0


def assert_same_rows(output: str, reference: str, storage: Any) -> None:
    """Same latent and error rows: every column equal; latent values equal within the parity tolerance.

    Latents are compared with a tolerance because a clip may share an encoder batch with other
    clips in one run and not in the other (batched convolutions round differently, ~1e-5).
    """
    for folder in ("latents", "errors"):
        got, _ = read_prefix(output, folder, storage)
        want, _ = read_prefix(reference, folder, storage)
        assert [r["key"] for r in got] == [r["key"] for r in want]
        for a, b in zip(got, want, strict=True):
            assert {k: v for k, v in a.items() if k != "latent"} == {
                k: v for k, v in b.items() if k != "latent"
            }
            if folder == "latents":
                za = latent_from_bytes(a["latent"], a["latent_shape"], a["latent_dtype"])
                zb = latent_from_bytes(b["latent"], b["latent_shape"], b["latent_dtype"])
                assert np.abs(za - zb).max() <= PARITY_TOLERANCE


def test_killed_encoder_actor_is_replaced_and_rows_are_the_same(
    reference_run: tuple[Any, Any], make_settings: Any
) -> None:
    reference, _ = reference_run
    settings = reference.model_copy(
        update={"output": "s3://videos/out/actor-killed", "batch_size": 1}
    )
    killed: list[int] = []

    def kill_first_actor_after_it_has_worked() -> None:
        deadline = time.monotonic() + KILL_DEADLINE_S
        while time.monotonic() < deadline and not killed:
            pids = encoder_pids()
            if pids:
                # Kill at once: on an idle machine the whole run can end within a second or two
                # of the actor starting, and a later kill would find it gone.
                try:
                    os.kill(pids[0], signal.SIGKILL)
                    killed.append(pids[0])
                except ProcessLookupError:
                    pass
            time.sleep(0.02)

    killer = threading.Thread(target=kill_first_actor_after_it_has_worked, daemon=True)
    killer.start()
    summary = run_pipeline(settings)
    killer.join()
    assert killed, "the encoder actor was never seen"
    assert summary.units_processed == 5
    assert_same_rows(settings.output, reference.output, settings.storage)


def test_driver_killed_midway_then_rerun_ends_with_the_same_rows(
    reference_run: tuple[Any, Any], tmp_path: Path
) -> None:
    import ray

    reference, _ = reference_run
    settings = reference.model_copy(
        # small write batches, so that units commit one by one and the kill finds some done
        update={
            "output": "s3://videos/out/driver-killed",
            "read_concurrency": 1,
            "write_batch_rows": 2,
        }
    )
    config = tmp_path / "run.json"
    config.write_text(
        json.dumps(
            {
                **settings.model_dump(mode="json"),
                "ray_address": ray.get_runtime_context().gcs_address,
            }
        )
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    driver = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "--config", str(config)],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + KILL_DEADLINE_S
        finished: dict[str, Any] = {}
        while time.monotonic() < deadline and driver.poll() is None:
            finished = load_markers(settings.output, settings.storage)
            if finished:
                break
            time.sleep(0.1)
        assert driver.poll() is None, "the driver ended before it could be interrupted"
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=30)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert 1 <= len(finished) < 5, f"{len(finished)} units were done when the driver was killed"

    resumed = run_pipeline(settings)
    done_before = len(finished)
    assert resumed.units_skipped >= done_before
    assert resumed.units_processed + resumed.units_skipped == 5
    assert_same_rows(settings.output, reference.output, settings.storage)
    stats = [
        json.loads(
            open_fs(f"{o}/latent_stats.json", settings.storage)[0].cat_file(
                f"{o}/latent_stats.json"
            )
        )
        for o in (settings.output, reference.output)
    ]
    assert stats[0]["units"] == 5 and stats[0]["count"] == stats[1]["count"]
    # Each latent of one run is within PARITY_TOLERANCE of the other's, so their means are, and
    # so are their standard deviations (|std(a) - std(b)| <= rms(a - b) <= max|a - b|).
    np.testing.assert_allclose(stats[0]["mean"], stats[1]["mean"], rtol=0, atol=PARITY_TOLERANCE)
    np.testing.assert_allclose(stats[0]["std"], stats[1]["std"], rtol=0, atol=PARITY_TOLERANCE)
