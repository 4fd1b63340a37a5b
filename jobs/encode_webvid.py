"""Encode a WebVid-style video dataset into WF-VAE latent shards: the `ray job submit` entry point.

    ray job submit --working-dir . -- python jobs/encode_webvid.py \\
        --input 's3://bucket/webvid/{00000..00099}.tar' --output s3://bucket/latents/webvid-33x256 \\
        --clips.num_frames 33 --clips.height 256 --clips.width 256

    python jobs/encode_webvid.py ... --text.encoder google/umt5-xxl   # + caption embeddings
    python jobs/encode_webvid.py --config webvid.yaml       # PipelineSettings fields, + `job:`
    python jobs/encode_webvid.py                             # the built-in sample, locally

Inputs follow WebVid's conventions: video2dataset WebDataset shards (`{key}.mp4` + `.txt` +
`.json`), or WebVid's CSV (`videoid`, `name` as the caption, `contentUrl`), or plain video files.
With no input at all the job builds a small sample of real footage (`jobs.sample_data`) and
writes to `./out/webvid-sample`. Ray: the cluster of `ray job submit` (RAY_ADDRESS), or
`--ray_address`, or a running local cluster, else one started in this process. Re-running skips
finished shards (the output's manifest); the job holds the output's lease while it runs
(`jobs.lease`). Exit codes: see `jobs.job_cli`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if __package__ in (None, ""):  # `python jobs/encode_webvid.py`: import from this checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import logging

from jobs.job_cli import (
    ExitCode,
    JobError,
    JobOptions,
    ParsedJob,
    base_parser,
    check_errors,
    configure_logging,
    exit_code_of_failure,
    parse_job,
)
from jobs.lease import Lease, LeaseKeeper

if TYPE_CHECKING:
    from pipeline.summary import RunSummary

__all__ = ["encode", "main", "report", "sample_defaults"]

log = logging.getLogger("jobs.encode_webvid")

PROG = "jobs/encode_webvid.py"


def sample_defaults(values: dict[str, Any]) -> dict[str, Any]:
    """Settings for the built-in sample: its shards as input, `./out/webvid-sample` as output."""
    from jobs.sample_data import SAMPLE_OUTPUT, ensure_sample_shards

    return {
        **values,
        "inputs": [ensure_sample_shards()],
        "output": values.get("output") or str(SAMPLE_OUTPUT.resolve()),
    }


def encode(parsed: ParsedJob, job: str = "encode_webvid") -> RunSummary:
    """Run the pipeline over the parsed settings under the output's lease; return its RunSummary."""
    from pipeline.run import run_pipeline

    settings, options = parsed.settings, parsed.options
    if not options.lock:
        return run_pipeline(settings)
    lease = Lease(settings.output, settings.storage, job, ttl_s=options.lock_ttl_s)
    with lease, LeaseKeeper(lease) as keeper:
        try:
            return run_pipeline(settings)
        except KeyboardInterrupt:
            if keeper.lost is not None:
                raise JobError(ExitCode.BUSY, str(keeper.lost)) from None
            raise


def report(summary: RunSummary, options: JobOptions) -> None:
    """Print the summary for people (and as JSON with --json)."""
    print(summary.table())
    print(f"output: {summary.output}")
    if options.json_summary:
        print(summary.model_dump_json())


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # before Ray is imported
    configure_logging()
    parser = base_parser(PROG, "Encode video shards (WebVid conventions) into WF-VAE latents.")
    busy_code = int(ExitCode.BUSY)
    try:
        parsed = parse_job(
            sys.argv[1:] if argv is None else argv,
            parser,
            JobOptions,
            sample_defaults=sample_defaults,
        )
        busy_code = parsed.options.busy_exit_code
        if parsed.sample:
            log.info("no input given: encoding the built-in sample into %s", parsed.settings.output)
        summary = encode(parsed)
        report(summary, parsed.options)
        check_errors(summary, parsed.options)
    except Exception as error:
        return exit_code_of_failure(error, busy_code, log)
    return int(ExitCode.OK)


if __name__ == "__main__":
    raise SystemExit(main())
