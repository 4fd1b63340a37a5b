"""Overlapping runs: the output lease on local folders (flock) and on S3 (conditional writes, moto)."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import boto3
import pytest

from jobs.encode_webvid import main as encode_main
from jobs.lease import Lease, LeaseBusyError, LeaseKeeper, LeaseLostError, lock_uri
from jobs.refresh_dataset import main as refresh_main
from model.storage import StorageSettings

LOCAL = StorageSettings()
BUCKET = "jobs-lease"
HOLD_SCRIPT = """
import sys, time
from jobs.lease import Lease
from model.storage import StorageSettings
Lease(sys.argv[1], StorageSettings(), "holder").acquire()
print("held", flush=True)
time.sleep(600)
"""


@pytest.fixture(scope="module")
def s3(s3_endpoint: str) -> StorageSettings:
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(
        Bucket=BUCKET
    )
    return StorageSettings(endpoint_url=s3_endpoint)


def test_local_lease_is_exclusive_and_freed_when_its_process_dies(tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_SCRIPT, out],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(LeaseBusyError, match=r"held by holder \(pid \d+"):
            Lease(out, LOCAL, "second").acquire()
    finally:
        holder.kill()  # a crash: no release, the kernel drops the flock
        holder.wait()
    with Lease(out, LOCAL, "third"):
        with pytest.raises(LeaseBusyError):
            Lease(out, LOCAL, "fourth").acquire()  # also within one process
    Lease(out, LOCAL, "fifth").acquire().release()


def test_s3_lease_busy_takeover_and_fencing(s3: StorageSettings) -> None:
    out = f"s3://{BUCKET}/takeover"
    first = Lease(out, s3, "first", ttl_s=5).acquire()  # long enough for a loaded machine
    with pytest.raises(LeaseBusyError, match="held by first"):
        Lease(out, s3, "second").acquire()
    first.renew()
    time.sleep(max(0.0, first.record.expires_at - time.time()) + 0.2)  # first stops renewing
    winners: list[str] = []
    losers: list[str] = []

    def contend(name: str) -> None:
        try:
            Lease(out, s3, name, ttl_s=60).acquire()
            winners.append(name)
        except LeaseBusyError:
            losers.append(name)

    threads = [threading.Thread(target=contend, args=(n,)) for n in ("a", "b", "c")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 1 and len(losers) == 2  # exactly one takes the expired lease over
    with pytest.raises(LeaseLostError):
        first.renew()  # the old holder learns it lost the lease
    first.release()  # and does not delete the new holder's lease
    with pytest.raises(LeaseBusyError, match=f"held by {winners[0]}"):
        Lease(out, s3, "late").acquire()


@pytest.mark.parametrize("sigint", ["python", "ignored"])
def test_keeper_interrupts_a_run_whose_lease_was_taken(s3: StorageSettings, sigint: str) -> None:
    # "ignored": as in a job started with `&` from a script, where the shell ignores SIGINT.
    out = f"s3://{BUCKET}/keeper-{sigint}"
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN if sigint == "ignored" else signal.default_int_handler)
    try:
        lease = Lease(out, s3, "slow", ttl_s=0.6).acquire()
        fs, path = lease.fs, lease.path
        with pytest.raises(KeyboardInterrupt), LeaseKeeper(lease) as keeper:
            fs.pipe_file(path, b'{"stolen": true}')  # another writer replaced the lease object
            time.sleep(5)
        assert isinstance(keeper.lost, LeaseLostError)
        assert signal.getsignal(signal.SIGINT) == (signal.SIG_IGN if sigint == "ignored" else signal.default_int_handler)
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("main", [encode_main, refresh_main], ids=["encode", "refresh"])
def test_a_second_run_exits_busy_without_touching_the_output(main, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["--input", str(tmp_path / "*.tar"), "--output", str(out)]
    with Lease(str(out), LOCAL, "running"):
        assert main(args) == 75
        assert main([*args, "--busy-exit-code", "0"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [Path(lock_uri(str(out))).name]
