"""The driver at scale: its peak memory over a whole job, and how many clips/s its commit path takes.

Two measurements, side by side in one run:

1. Jobs over WebDataset shards of 200 and of 2,000 clips each (short synthetic videos cut into
   1-frame clips, the bundled model: many rows fast), each in a fresh driver process on a local
   Ray cluster: the driver's peak RSS over its RSS once Ray is initialised and the model probed.
   Goal: at most 300 MB over the baseline, and within 20% from 200 to 2,000 clips per shard.
2. The commit path alone (`UnitCommitter` on a local folder), fed synthetic part records as the
   write tasks send them: clips/s of metadata, at the smallest part (one encoder batch) and the
   default write batch. Goal: at least 20,000 clips/s.

    python benchmarks/driver_commit.py [--shards 4] [--sizes 200,2000] [--size 32] \
        [--baseline-src DIR]     # DIR: e.g. `git archive f8b0cd3 | tar -x -C DIR`
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "tests"))  # the tests' PyAV helpers make the corpus

FRAMES_PER_VIDEO = 200  # 1-frame clips, clip_mode "all": one clip per frame
RSS_POLL_S = 0.02
RECORDS_PER_BLOCK = 16  # part records per block reaching the driver
LATENT_CHANNELS = 16

log = logging.getLogger("driver_commit")


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


class PeakRss:
    """Polls this process's RSS on a thread; `peak` is the largest seen."""

    def __init__(self) -> None:
        self.peak = rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(RSS_POLL_S):
            self.peak = max(self.peak, rss_mb())

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb())


def build_shards(root: Path, shards: int, clips_per_shard: int, size: int) -> list[str]:
    from media_samples import Member, synthetic, write_tar

    videos = clips_per_shard // FRAMES_PER_VIDEO
    video = synthetic(FRAMES_PER_VIDEO, size, size, seed=0)
    paths = []
    for s in range(shards):
        members = [Member(f"{s:03d}{v:04d}", video, f"video {v}") for v in range(videos)]
        paths.append(str(write_tar(root / f"shard-{s:05d}.tar", members)))
    return paths


def job_child(clips_per_shard: int, shards: int, size: int) -> dict[str, float]:
    """One job in this process: (baseline RSS, peak RSS, clips, seconds)."""
    import ray
    import torch

    from model.latents import ClipEncoder
    from pipeline.run import run_pipeline
    from pipeline.settings import PipelineSettings

    torch.set_num_threads(1)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ClipEncoder(dtype="float32", device="cpu")  # the driver's model probe, as run_pipeline does
    with tempfile.TemporaryDirectory(prefix="driver-commit-") as tmp:
        inputs = build_shards(Path(tmp), shards, clips_per_shard, size)
        settings = PipelineSettings(
            inputs=inputs,
            output=f"{tmp}/out",
            clips={"num_frames": 1, "height": size, "width": size, "clip_mode": "all"},
            encoder={"dtype": "float32", "device": "cpu"},
            batch_size=64,
            read_num_cpus=0.5,
            encoder_num_cpus=1.0,
            progress_bars=False,
        )
        baseline = rss_mb()
        with PeakRss() as peak:
            summary = run_pipeline(settings)
    ray.shutdown()
    return {
        "baseline_mb": baseline,
        "peak_mb": peak.peak,
        "clips": summary.clips,
        "seconds": summary.seconds,
    }


def run_job(
    clips_per_shard: int, shards: int, size: int, src: Path = REPO_ROOT
) -> dict[str, float]:
    """One job in a fresh driver process importing the pipeline from `src`."""
    command = [sys.executable, __file__, "--child", f"{clips_per_shard},{shards},{size}"]
    command += ["--src", str(src)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"job of {clips_per_shard} clips/shard failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def part_records(units: int, clips_per_unit: int, clips_per_part: int) -> list:  # list[pa.Table]
    """Blocks of PART_SCHEMA records as the write tasks send them, one sample per clip."""
    import pyarrow as pa

    from pipeline.manifest import ChannelSums
    from pipeline.parts import PART_SCHEMA

    sums = ChannelSums(
        count=[16] * LATENT_CHANNELS,
        total=[0.5] * LATENT_CHANNELS,
        squares=[1.5] * LATENT_CHANNELS,
    ).model_dump_json()
    records = []
    for u in range(units):
        for start in range(0, clips_per_unit, clips_per_part):
            samples = list(range(start, min(start + clips_per_part, clips_per_unit)))
            last = samples[-1] == clips_per_unit - 1
            records.append(
                {
                    "unit_id": f"unit{u:05d}",
                    "sample_index": samples,
                    "sample_rows": [1] * len(samples),
                    "rows_here": [1] * len(samples),
                    "unit_samples": clips_per_unit if last else -1,
                    "latents_file": f"unit{u:05d}.{start:016x}.parquet",
                    "errors_file": "",
                    "clips": len(samples),
                    "error_reasons": "{}",
                    "sums": sums,
                    "bytes_written": 1000 * len(samples),
                }
            )
    return [
        pa.Table.from_pylist(records[i : i + RECORDS_PER_BLOCK], schema=PART_SCHEMA)
        for i in range(0, len(records), RECORDS_PER_BLOCK)
    ]


def commit_rate(units: int, clips_per_unit: int, clips_per_part: int) -> float:
    """Clips/s through UnitCommitter.add and its marker writes (local folder)."""
    from model.storage import StorageSettings
    from pipeline.committer import UnitCommitter
    from pipeline.sources import WorkUnit

    blocks = part_records(units, clips_per_unit, clips_per_part)
    work = [WorkUnit(f"unit{u:05d}", "tar", f"/in/{u}.tar", "v") for u in range(units)]
    with tempfile.TemporaryDirectory(prefix="commit-rate-") as tmp:
        committer = UnitCommitter(tmp, StorageSettings(), work, settings_hash="h")
        start = time.perf_counter()
        for block in blocks:
            committer.add(block)
        markers = committer.finish()
        seconds = time.perf_counter() - start
    assert len(markers) == units
    return units * clips_per_unit / seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--sizes", default="200,2000", help="clips per shard, comma-separated")
    parser.add_argument("--size", type=int, default=32, help="clip height and width")
    parser.add_argument(
        "--baseline-src",
        type=Path,
        help="another checkout (e.g. `git archive` of an older commit) to run side by side",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--src", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        sys.path.insert(0, str(args.src))  # before REPO_ROOT: that tree's `pipeline`
        clips, shards, size = (int(v) for v in args.child.split(","))
        print(json.dumps(job_child(clips, shards, size)))
        return
    logging.basicConfig(level=logging.WARNING)
    print(f"jobs: {args.shards} shards, 1x{args.size}x{args.size} clips, bundled model, local Ray")
    trees = [("this tree", REPO_ROOT)]
    if args.baseline_src:
        trees.append((f"baseline ({args.baseline_src.name})", args.baseline_src))
    print("| code | clips/shard | clips | s | driver baseline MB | peak MB | over baseline MB |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for clips_per_shard in (int(v) for v in args.sizes.split(",")):
        for name, src in trees:
            r = run_job(clips_per_shard, args.shards, args.size, src)
            print(
                f"| {name} | {clips_per_shard} | {r['clips']:.0f} | {r['seconds']:.1f} | "
                f"{r['baseline_mb']:.0f} | {r['peak_mb']:.0f} | "
                f"{r['peak_mb'] - r['baseline_mb']:.0f} |"
            )
    print("\ncommit path alone: 40 units of 2,000 clips, one sample per clip")
    print("| clips per part record | clips/s |")
    print("| ---: | ---: |")
    for per_part in (8, 256):
        print(f"| {per_part} | {commit_rate(40, 2000, per_part):,.0f} |")


if __name__ == "__main__":
    main()
