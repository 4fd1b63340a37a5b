"""What the job entry points share: flags and config files to PipelineSettings, exit codes, errors, the error-share check.

Settings come, highest priority first, from flags (`--input`, `--output`, and every
PipelineSettings field as `--clips.num_frames 33`), a YAML/JSON file (`--config`), the
`WFVAE_PIPELINE_*` environment, then the defaults. A config file holds PipelineSettings fields at
its top level and the job's own options (`JobOptions` / `RefreshOptions`) under `job:`.

Exit codes (`ExitCode`), the same for every job, so a scheduler can act on them:

    0   OK        the output is up to date (new work encoded, or nothing to do)
    1   FAILED    an unexpected error (storage or cluster trouble, a bug): retrying may help
    2   USAGE     bad flags or config, an output written with other settings, a model that
                  will not load: fix the configuration; retrying will not help
    3   DATA      the run needs a person: too many samples failed, no input matched (an
                  empty folder, a mistyped prefix), or a retirement bigger than allowed was
                  refused
    4   STALLED   no stage of the pipeline finished a block for `--stall_timeout_s` (a hung
                  read, a lost resource): the message names the stage; committed units are
                  kept, so a rerun goes on from there
    75  BUSY      another run holds the output's lease (sysexits EX_TEMPFAIL): try later;
                  `--busy-exit-code 0` makes this a success for schedulers that alert on
                  any non-zero code
"""

from __future__ import annotations

import argparse
import enum
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

if TYPE_CHECKING:  # imported where used: they bring torch and the media path
    from pipeline.settings import PipelineSettings
    from pipeline.summary import RunSummary

__all__ = [
    "ExitCode",
    "JobError",
    "JobOptions",
    "ParsedJob",
    "base_parser",
    "check_errors",
    "configure_logging",
    "exit_code_for",
    "exit_code_of_failure",
    "inputs_given",
    "parse_job",
]

log = logging.getLogger(__name__)

ENV_PREFIX = "WFVAE_PIPELINE_"


class ExitCode(enum.IntEnum):
    """Process exit codes of the jobs (see the module docstring)."""

    OK = 0
    FAILED = 1
    USAGE = 2
    DATA = 3
    STALLED = 4
    BUSY = 75


class JobError(Exception):
    """A job stopping on purpose, with the exit code it should end with."""

    def __init__(self, code: ExitCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class JobOptions(BaseModel):
    """Options of a job run beyond the pipeline's settings (a config file's `job:` section)."""

    model_config = ConfigDict(extra="forbid")

    max_error_fraction: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="exit 3 when more than this fraction of the run's samples failed; None: never",
    )
    lock: bool = Field(
        default=True, description="hold the output's lease while running (local paths and S3)"
    )
    lock_ttl_s: float = Field(
        default=60.0,
        gt=0,
        description="lease length on object storage, renewed every third: a driver that died "
        "without releasing it blocks the next run this long at most",
    )
    busy_exit_code: int = Field(
        default=int(ExitCode.BUSY),
        ge=0,
        le=255,
        description="exit code when another run holds the lease",
    )
    json_summary: bool = Field(default=False, description="also print the summary as JSON")


@dataclass(frozen=True)
class ParsedJob:
    """A parsed command line: the pipeline's settings and the job's options."""

    settings: PipelineSettings
    options: JobOptions  # the job's own subclass: RefreshOptions for the refresh
    sample: bool = False  # no inputs given: the built-in sample dataset


def configure_logging() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def base_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The flags every job takes; each job adds its own."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        add_help=False,
        epilog="Every PipelineSettings field is a flag too, e.g. --clips.num_frames 33 "
        "--clips.height 256 --storage.endpoint_url http://minio:9000 --concurrency 4 "
        "(--help-settings lists them). Exit codes: 0 ok, 1 failed, 2 usage/config, "
        "3 needs a person, 75 lease busy.",
    )
    parser.add_argument("-h", "--help", action="store_true", help="show this help and exit")
    parser.add_argument(
        "--help-settings", action="store_true", help="list every PipelineSettings flag and exit"
    )
    parser.add_argument("--config", help="YAML or JSON file of PipelineSettings (+ `job:`)")
    parser.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="URI",
        help="input URI, glob or brace range (repeatable): s3://b/webvid/{00000..00099}.tar, "
        "a WebVid CSV (contentUrl, name), video files",
    )
    parser.add_argument(
        "--input-list", action="append", default=[], metavar="URI", help="file of input URIs"
    )
    parser.add_argument("--output", help="output prefix: s3://…, gs://… or a local folder")
    parser.add_argument(
        "--max-error-fraction", type=float, help="exit 3 above this fraction of failed samples"
    )
    parser.add_argument("--no-lock", action="store_true", help="run without the output lease")
    parser.add_argument("--lock-ttl-s", type=float, help="lease length on object storage")
    parser.add_argument(
        "--busy-exit-code", type=int, help="exit code when another run holds the lease"
    )
    parser.add_argument("--json", action="store_true", help="also print the summary as JSON")
    return parser


def _read_config(path: str) -> dict[str, Any]:
    file = Path(path)
    if not file.is_file():
        raise JobError(ExitCode.USAGE, f"config file {path} does not exist")
    text = file.read_text()
    try:
        if file.suffix in (".yaml", ".yml"):
            import yaml

            values = yaml.safe_load(text) or {}
        else:
            values = json.loads(text)
    except Exception as error:
        raise JobError(ExitCode.USAGE, f"config file {path}: {error}") from error
    if not isinstance(values, dict):
        raise JobError(ExitCode.USAGE, f"config file {path} must hold a mapping")
    return values


def inputs_given(values: dict[str, Any], rest: Sequence[str]) -> bool:
    """True when a file, flag or `WFVAE_PIPELINE_*` variable names any input."""
    if values.get("inputs") or values.get("input_lists"):
        return True
    if any(arg.split("=", 1)[0] in ("--inputs", "--input_lists") for arg in rest):
        return True
    return any(os.environ.get(f"{ENV_PREFIX}{name}") for name in ("INPUTS", "INPUT_LISTS"))


def _option_overrides(args: argparse.Namespace) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    if args.max_error_fraction is not None:
        overrides["max_error_fraction"] = args.max_error_fraction
    if args.no_lock:
        overrides["lock"] = False
    if args.lock_ttl_s is not None:
        overrides["lock_ttl_s"] = args.lock_ttl_s
    if args.busy_exit_code is not None:
        overrides["busy_exit_code"] = args.busy_exit_code
    if args.json:
        overrides["json_summary"] = True
    return overrides


def parse_job(
    argv: Sequence[str],
    parser: argparse.ArgumentParser,
    options_type: type[JobOptions],
    extra_options: dict[str, Any] | None = None,
    sample_defaults: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> ParsedJob:
    """Flags, config file and environment to (PipelineSettings, options).

    With no input anywhere, `sample_defaults(values)` (if given) fills in the built-in sample's
    inputs and output; otherwise a missing input is a usage error.
    """
    from pipeline.settings import PipelineSettings

    args, rest = parser.parse_known_args(list(argv))
    if args.help:
        parser.print_help()
        raise SystemExit(0)
    if args.help_settings:
        PipelineSettings(_cli_parse_args=["--help"], output="", inputs=["-"])
    values = _read_config(args.config) if args.config else {}
    job_values = dict(values.pop("job", None) or {})
    if args.input:
        if any(arg.split("=", 1)[0] == "--inputs" for arg in rest):
            raise JobError(ExitCode.USAGE, "give inputs with --input or --inputs, not both")
        values["inputs"] = list(args.input)  # not comma-split, so {a,b} brace lists survive
    if args.input_list:
        values["input_lists"] = list(args.input_list)
    if args.output:
        values["output"] = args.output
    sample = False
    if not inputs_given(values, rest):
        if sample_defaults is None:
            raise JobError(ExitCode.USAGE, "no input given: pass --input URI (or a --config)")
        values = sample_defaults(values)
        sample = True
    try:
        options = options_type(**{**job_values, **(extra_options or {}), **_option_overrides(args)})
        settings = PipelineSettings(_cli_parse_args=list(rest), **values)
    except ValidationError as error:
        raise JobError(ExitCode.USAGE, f"invalid settings:\n{error}") from error
    return ParsedJob(settings=settings, options=options, sample=sample)


def check_errors(summary: RunSummary, options: JobOptions) -> None:
    """Raise JobError(DATA) when more samples failed than the options allow."""
    if options.max_error_fraction is None or summary.samples == 0:
        return
    fraction = summary.errors / summary.samples
    if fraction > options.max_error_fraction:
        raise JobError(
            ExitCode.DATA,
            f"{summary.errors} of {summary.samples} samples failed ({fraction:.1%}), above "
            f"--max-error-fraction {options.max_error_fraction:.1%}: {summary.errors_by_reason}",
        )


def exit_code_for(error: BaseException) -> ExitCode:
    """The exit code of an error that ended a job."""
    from model.errors import CheckpointError, ConfigError
    from pipeline.progress import PipelineStalledError
    from pipeline.sources import NoInputsError

    if isinstance(error, JobError):
        return error.code
    if isinstance(error, NoInputsError):
        return ExitCode.DATA
    if isinstance(error, PipelineStalledError):
        return ExitCode.STALLED
    if isinstance(error, ConfigError | CheckpointError | ValidationError):
        return ExitCode.USAGE
    return ExitCode.FAILED


def exit_code_of_failure(error: BaseException, busy_code: int, job_log: logging.Logger) -> int:
    """Logs the error that ended a job once and returns the process exit code for it."""
    from jobs.lease import LeaseBusyError

    if isinstance(error, LeaseBusyError):
        job_log.warning("not running: %s", error)
        return busy_code
    code = exit_code_for(error)
    if code == ExitCode.BUSY:
        job_log.error("%s", error)
        return busy_code
    job_log.error("%s", error, exc_info=code == ExitCode.FAILED)
    return int(code)
