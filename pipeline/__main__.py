"""Command line: `python -m pipeline [--config run.yaml] [--output s3://…] [--inputs …] …`."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run the pipeline with settings from a file and flags; print the summary."""
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    args = list(sys.argv[1:] if argv is None else argv)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None, help="YAML or JSON file of PipelineSettings")
    known, rest = pre.parse_known_args(args)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    from pipeline.run import run_pipeline
    from pipeline.settings import load_settings

    settings = load_settings(known.config, rest)
    summary = run_pipeline(settings)
    print(summary.table())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
