"""The scheduled refresh: list the sources, compare with the output's manifest, encode only what is new.

    python jobs/refresh_dataset.py --input 's3://bucket/webvid/*.tar' \\
        --output s3://bucket/latents/webvid-33x256 --clips.num_frames 33 [--retire-vanished]

Each run, under the output's lease (`jobs.lease`; a second, overlapping run exits 75 at once):

1. lists the sources: globs are listed; members of a brace range or list that do not exist
   (yet) are skipped, not errors, so `{00000..99999}.tar` can name shards still to come;
2. compares them with the manifest (`_manifest/<unit>.json`): new shards, changed shards (a new
   ETag or mtime), and finished units whose sources vanished;
3. with `--retire-vanished`, deletes the units whose sources vanished (marker first, then the
   Parquet files) unless they exceed `--max-retire-fraction` of the output (exit 3: a mistyped
   prefix or a permission problem looks like everything vanished);
4. encodes the new and changed shards (`pipeline.run.run_pipeline`) and, with `--text.encoder`,
   embeds the captions of every committed unit that lacks them (a refresh that only adds a
   text encoder reads no video and writes no latent), writes `refresh.json` at the output
   prefix, prints the summary.

Nothing new: exit 0 without starting Ray or loading the model. Exit codes: `jobs.job_cli`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if __package__ in (None, ""):  # `python jobs/refresh_dataset.py`: import from this checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import logging
import posixpath

from pydantic import BaseModel, Field

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
    from pipeline.manifest import UnitMarker
    from pipeline.settings import PipelineSettings

__all__ = [
    "RefreshOptions",
    "RefreshPlan",
    "RefreshReport",
    "build_parser",
    "existing_inputs",
    "main",
    "plan_refresh",
    "print_report",
    "refresh",
    "retire",
]

log = logging.getLogger("jobs.refresh_dataset")

PROG = "jobs/refresh_dataset.py"
REPORT_FILE = "refresh.json"
SHOWN = 20  # names listed in logs before "... and n more"


class RefreshOptions(JobOptions):
    """The refresh's options (flags, or a config file's `job:` section)."""

    retire_vanished: bool = Field(
        default=False, description="delete units whose sources are no longer listed"
    )
    max_retire_fraction: float = Field(
        default=0.5, ge=0, le=1, description="refuse (exit 3) to retire more than this share"
    )
    dry_run: bool = Field(default=False, description="report the plan; change nothing")


class RefreshPlan(BaseModel):
    """What a refresh found: sources, what is new or changed, and units whose sources vanished."""

    sources: int
    missing_inputs: int = Field(description="named inputs (brace range, list) not present")
    finished_units: int
    new_sources: list[str]
    changed_sources: list[str]
    vanished_units: list[str]
    text_units_pending: int = Field(
        default=0, description="committed units whose clips lack text from text.encoder"
    )


class RefreshReport(BaseModel):
    """`refresh.json`: the plan, what was retired, and the pipeline's summary."""

    started_at: float
    finished_at: float
    plan: RefreshPlan
    retired_units: list[str] = Field(default_factory=list)
    summary: dict[str, Any] | None = None


def _shown(names: list[str]) -> str:
    more = f" ... and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
    return ", ".join(names[:SHOWN]) + more


def existing_inputs(settings: PipelineSettings) -> tuple[list[str], int]:
    """Every input URI that exists now (folders listed once each), and how many did not."""
    from model.storage import open_fs
    from pipeline.storage import expand_inputs, full_uri

    uris = expand_inputs(settings.inputs, settings.storage, settings.input_lists)
    by_folder: dict[str, list[str]] = {}
    for uri in uris:
        by_folder.setdefault(posixpath.dirname(uri), []).append(uri)
    present: list[str] = []
    for folder, members in by_folder.items():
        fs, path = open_fs(folder or ".", settings.storage)
        try:
            listed = {full_uri(fs, p) for p in fs.ls(path, detail=False, refresh=True)}
        except FileNotFoundError:
            listed = set()
        present.extend(uri for uri in members if uri in listed)
    keep = set(present)
    ordered = [uri for uri in uris if uri in keep]
    return ordered, len(uris) - len(ordered)


def plan_refresh(settings: PipelineSettings, uris: list[str], missing: int = 0) -> RefreshPlan:
    """Compare the sources with the output's manifest (reads only; changes nothing)."""
    from pipeline.manifest import load_markers
    from pipeline.sources import list_sources

    tars, items = list_sources(uris, settings.storage)
    current = {t.shard: t.version for t in tars} | {i.uri: i.version for i in items}
    markers = load_markers(settings.output, settings.storage)
    done: set[str] = set().union(*(m.done_sources() for m in markers.values()))
    recorded = {uri for m in markers.values() for uri in m.sources}
    new = [uri for uri, version in current.items() if f"{uri}@{version}" not in done]
    return RefreshPlan(
        text_units_pending=_text_pending(settings, markers),
        sources=len(current),
        missing_inputs=missing,
        finished_units=len(markers),
        new_sources=[uri for uri in new if uri not in recorded],
        changed_sources=[uri for uri in new if uri in recorded],
        vanished_units=sorted(
            m.unit_id for m in markers.values() if any(uri not in current for uri in m.sources)
        ),
    )


def _text_pending(settings: PipelineSettings, markers: Mapping[str, UnitMarker]) -> int:
    """Committed units whose clips lack current text from `text.encoder` (0 without one)."""
    if not settings.text.encoder:
        return 0
    from pipeline.text.run import plan_text, text_identity

    _, identity = text_identity(settings.text)
    return len(plan_text(settings.output, identity, markers, settings.storage, prune=False).pending)


def retire(settings: PipelineSettings, plan: RefreshPlan, options: RefreshOptions) -> list[str]:
    """Delete the units whose sources vanished, within the allowed share; return their ids."""
    from pipeline.manifest import delete_unit

    if not plan.vanished_units:
        return []
    if not options.retire_vanished:
        log.warning(
            "%d units have sources that vanished (kept; --retire-vanished deletes them): %s",
            len(plan.vanished_units),
            _shown(plan.vanished_units),
        )
        return []
    share = len(plan.vanished_units) / max(plan.finished_units, 1)
    if share > options.max_retire_fraction:
        raise JobError(
            ExitCode.DATA,
            f"refusing to retire {len(plan.vanished_units)} of {plan.finished_units} units "
            f"({share:.0%} > --max-retire-fraction {options.max_retire_fraction:.0%}); "
            "check the input prefix, or raise the limit",
        )
    for unit_id in plan.vanished_units:
        delete_unit(settings.output, unit_id, settings.storage)
    log.info("retired %d units: %s", len(plan.vanished_units), _shown(plan.vanished_units))
    return list(plan.vanished_units)


def refresh(parsed: ParsedJob) -> RefreshReport:
    """One refresh (the caller holds the lease)."""
    from pipeline.manifest import write_json
    from pipeline.run import run_pipeline
    from pipeline.storage import join_uri

    settings, options = parsed.settings, parsed.options
    started = time.time()
    uris, missing = existing_inputs(settings)
    if not uris:
        raise JobError(ExitCode.DATA, f"no source matched {settings.inputs + settings.input_lists}")
    plan = plan_refresh(settings, uris, missing)
    log.info(
        "%d sources (%d named inputs absent), %d finished units: %d new, %d changed, %d vanished; "
        "%d units to embed captions of",
        plan.sources, missing, plan.finished_units, len(plan.new_sources),
        len(plan.changed_sources), len(plan.vanished_units), plan.text_units_pending,
    )  # fmt: skip
    if options.dry_run:
        return RefreshReport(started_at=started, finished_at=time.time(), plan=plan)
    retired = retire(settings, plan, options)
    summary = None
    if plan.new_sources or plan.changed_sources or retired or plan.text_units_pending:
        run = run_pipeline(settings.model_copy(update={"inputs": uris, "input_lists": []}))
        check_errors(run, options)
        summary = run.model_dump(mode="json")
    report = RefreshReport(
        started_at=started,
        finished_at=time.time(),
        plan=plan,
        retired_units=retired,
        summary=summary,
    )
    write_json(
        join_uri(settings.output, REPORT_FILE), report.model_dump(mode="json"), settings.storage
    )
    return report


def print_report(report: RefreshReport, options: RefreshOptions) -> None:
    plan = report.plan
    print(
        f"refresh: {plan.sources} sources; {len(plan.new_sources)} new, {len(plan.changed_sources)} "
        f"changed; {len(plan.vanished_units)} units with vanished sources, "
        f"{len(report.retired_units)} retired" + (" (dry run)" if options.dry_run else "")
    )
    if report.summary is None:
        print("nothing to encode: the output is up to date")
    else:
        s = report.summary
        print(
            f"units {s['units_processed']} processed, {s['units_skipped']} skipped; samples "
            f"{s['samples']}; clips {s['clips']}; errors {s['errors']}; {s['seconds']:.1f}s"
        )
        if s.get("text"):
            t = s["text"]
            print(
                f"text ({t['folder']}): units {t['units_processed']} embedded, "
                f"{t['units_skipped']} current; {t['embedded']} embeddings, {t['nulls']} without "
                f"caption, {t['errors']} errors; {t['seconds']:.1f}s"
            )
    if options.json_summary:
        print(report.model_dump_json())


def build_parser() -> argparse.ArgumentParser:
    parser = base_parser(PROG, "Encode only new source shards into an existing latent output.")
    parser.add_argument(
        "--retire-vanished", action="store_true", help="delete units whose sources vanished"
    )
    parser.add_argument(
        "--max-retire-fraction", type=float, help="largest share of units to retire"
    )
    parser.add_argument("--dry-run", action="store_true", help="report the plan; change nothing")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # before Ray is imported
    configure_logging()
    parser = build_parser()
    args = sys.argv[1:] if argv is None else list(argv)
    busy_code = int(ExitCode.BUSY)
    try:
        known, _ = parser.parse_known_args(args)
        extra: dict[str, Any] = {}
        if known.retire_vanished:
            extra["retire_vanished"] = True
        if known.max_retire_fraction is not None:
            extra["max_retire_fraction"] = known.max_retire_fraction
        if known.dry_run:
            extra["dry_run"] = True
        parsed = parse_job(args, parser, RefreshOptions, extra_options=extra)
        options = parsed.options
        busy_code = options.busy_exit_code
        if not options.lock or options.dry_run:
            report = refresh(parsed)
        else:
            lease = Lease(
                parsed.settings.output,
                parsed.settings.storage,
                "refresh_dataset",
                options.lock_ttl_s,
            )
            with lease, LeaseKeeper(lease) as keeper:
                try:
                    report = refresh(parsed)
                except KeyboardInterrupt:
                    if keeper.lost is not None:
                        raise JobError(ExitCode.BUSY, str(keeper.lost)) from None
                    raise
        print_report(report, options)
    except Exception as error:
        return exit_code_of_failure(error, busy_code, log)
    return int(ExitCode.OK)


if __name__ == "__main__":
    raise SystemExit(main())
