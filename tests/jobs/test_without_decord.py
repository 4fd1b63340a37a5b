"""The main job on a machine where decord does not install (aarch64 GPU nodes): PyAV decodes instead."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow.dataset as pads
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_main_job_runs_where_decord_is_not_installed(tmp_path: Path) -> None:
    # A `decord` package that fails to import, first on the path of the job and of the Ray
    # workers it starts (they inherit its environment): what `import decord` does without it.
    blocked = tmp_path / "site" / "decord"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text('raise ImportError("No module named \'decord\' (blocked by the test)")\n')
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), str(REPO_ROOT)]),
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    }
    probe = "from model.media import available_decoders; print(','.join(available_decoders()))"
    found = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=True)
    assert "decord" not in found.stdout and "pyav" in found.stdout

    out = tmp_path / "out"
    small = ["--clips.num_frames", "5", "--clips.height", "64", "--clips.width", "64"]
    job = subprocess.run([sys.executable, "jobs/encode_webvid.py", "--output", str(out), *small],
                         cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert job.returncode == 0, job.stdout[-2000:] + job.stderr[-3000:]
    latents = pads.dataset(str(out / "latents"), format="parquet").to_table()
    assert latents.num_rows > 0
    errors = pads.dataset(str(out / "errors"), format="parquet").to_table() if (out / "errors").exists() else None
    assert errors is None or "no_decoder" not in errors.column("reason").to_pylist()
