"""Planning a refresh over many finished units against an S3 endpoint (moto's server on loopback).

Puts N tar shards and N finished units (marker + one latents part each) in a bucket, then times,
side by side in one run: reading the markers one GET after another (as before), reading them
with `pipeline.manifest.load_markers` (one listing, concurrent GETs), and the whole planning
step of a run (`pipeline.planning.plan_run`: list the shards and their versions, read the manifest,
remove parts no marker lists), with the compacted manifest index a run writes at its end.
Goal: the plan for 10,000 finished units within 30 s.

    python benchmarks/plan_at_scale.py --units 10000
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
for _name, _value in (
    ("AWS_ACCESS_KEY_ID", "testing"),
    ("AWS_SECRET_ACCESS_KEY", "testing"),
    ("AWS_DEFAULT_REGION", "us-east-1"),
):
    os.environ.setdefault(_name, _value)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from local_services import local_s3  # noqa: E402

BUCKET = "plan-bench"
UPLOAD_THREADS = 32
LATENT_CHANNELS = 16


def populate(client: object, units: int, settings: object, model_id: str) -> None:
    """N shards, and for each a marker naming its version and one latents part."""
    from pipeline.manifest import ChannelSums, UnitMarker, part_name
    from pipeline.sources import _tar_unit

    def put(key: str, body: bytes) -> dict:
        return client.put_object(Bucket=BUCKET, Key=key, Body=body)  # type: ignore[attr-defined]

    with ThreadPoolExecutor(UPLOAD_THREADS) as pool:
        shards = [f"webvid/{i:05d}.tar" for i in range(units)]
        etags = list(pool.map(lambda key: put(key, b"not a real tar")["ETag"], shards))
        sums = ChannelSums(
            count=[4096] * LATENT_CHANNELS,
            total=[0.1] * LATENT_CHANNELS,
            squares=[1.0] * LATENT_CHANNELS,
        )

        def finish(index: int) -> None:
            uri = f"s3://{BUCKET}/{shards[index]}"
            unit = _tar_unit(uri, {"ETag": etags[index]})
            part = part_name(unit.unit_id, f"{index:016x}")
            marker = UnitMarker(
                unit_id=unit.unit_id,
                sources=unit.sources(),
                settings_hash=settings.output_hash(model_id),  # type: ignore[attr-defined]
                samples=2000,
                clips=2000,
                errors=0,
                sums=sums,
                latent_files=[part],
                error_files=[],
            )
            put(f"out/_manifest/{unit.unit_id}.json", marker.model_dump_json().encode())
            put(f"out/latents/{part}", b"PAR1")

        list(pool.map(finish, range(units)))


def sequential_markers(settings: object) -> dict[str, bytes]:
    """The markers read one GET after another, as planning did before."""
    from model.storage import open_fs

    fs, path = open_fs(f"{settings.output}/_manifest", settings.storage)  # type: ignore[attr-defined]
    names = [n for n in fs.ls(path, detail=False, refresh=True) if n.endswith(".json")]
    return {name: fs.cat_file(name) for name in names}


def timed(label: str, action: object) -> tuple[str, float, object]:
    start = time.perf_counter()
    result = action()  # type: ignore[operator]
    return label, time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--units", type=int, default=10000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import boto3

    from pipeline.manifest import load_markers, write_index
    from pipeline.planning import plan_run
    from pipeline.settings import PipelineSettings

    with local_s3() as endpoint:
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        settings = PipelineSettings(
            inputs=[f"s3://{BUCKET}/webvid/"],
            output=f"s3://{BUCKET}/out",
            storage={"endpoint_url": endpoint},
        )
        model_id = "bench-model"
        start = time.perf_counter()
        populate(client, args.units, settings, model_id)
        print(f"{args.units} shards and finished units put in {time.perf_counter() - start:.0f} s")
        read = lambda: load_markers(settings.output, settings.storage)  # noqa: E731
        rows = [
            timed("markers, one GET after another (before)", lambda: sequential_markers(settings)),
            timed("markers, load_markers without an index (concurrent GETs)", read),
        ]
        finished = rows[-1][2]
        rows += [
            timed(
                "write_index (at the end of a run, the markers in memory)",
                lambda: write_index(settings.output, finished, settings.storage) or "index",
            ),
            timed("markers, load_markers with the index", read),
            timed(
                "plan_run with the index (shards + versions, manifest, orphan sweep)",
                lambda: plan_run(settings, model_id),
            ),
        ]
    print(f"\nS3 (moto server on loopback), {args.units} finished units")
    print("| step | seconds | result |")
    print("| --- | ---: | --- |")
    for label, seconds, result in rows:
        if hasattr(result, "units"):
            shown = f"{len(result.units)} to run, {result.skipped} skipped"
        else:
            shown = f"{len(result)} markers" if isinstance(result, dict) else str(result)
        print(f"| {label} | {seconds:.1f} | {shown} |")


if __name__ == "__main__":
    main()
