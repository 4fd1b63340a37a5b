"""The output as users' tools read it: Hugging Face `datasets` and `ray.data.read_parquet`, a unit of only bad videos included."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from test_pipeline_run import read_prefix

from model.storage import open_fs
from pipeline.manifest import load_markers


@pytest.fixture(scope="module")
def local_copy(reference_run: tuple[Any, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference run's output (on S3) copied to a local folder, as a user downloads it."""
    settings, _ = reference_run
    fs, path = open_fs(settings.output, settings.storage)
    root = tmp_path_factory.mktemp("output-copy")
    for name in fs.find(path):
        target = root / name[len(path) :].lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        fs.get_file(name, str(target))
    return root


def test_a_unit_of_only_bad_videos_has_no_empty_file(
    reference_run: tuple[Any, Any], local_copy: Path
) -> None:
    settings, _ = reference_run
    markers = load_markers(settings.output, settings.storage)
    all_bad = [m for m in markers.values() if m.clips == 0]
    assert all_bad and all(m.latent_files == [] and m.errors for m in all_bad)  # webvid's "text"
    for path in sorted(local_copy.glob("*/*.parquet")):
        meta = pq.ParquetFile(path).metadata
        assert meta.num_rows > 0, path
        assert all(meta.row_group(i).num_rows > 0 for i in range(meta.num_row_groups)), path


def test_hugging_face_datasets_loads_the_latents_folder(
    reference_run: tuple[Any, Any], local_copy: Path, tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    from datasets import load_dataset

    settings, summary = reference_run
    expected, _ = read_prefix(settings.output, "latents", settings.storage)
    loaded = load_dataset(
        "parquet",
        data_files=str(local_copy / "latents" / "*.parquet"),
        split="train",
        cache_dir=str(tmp_path / "hf-cache"),
    )
    assert loaded.num_rows == summary.clips == len(expected)
    assert sorted(loaded["key"]) == [r["key"] for r in expected]
    row = next(r for r in loaded if r["key"] == expected[0]["key"])
    assert (
        row["latent"] == expected[0]["latent"]
        and row["latent_shape"] == expected[0]["latent_shape"]
    )
    errors = load_dataset(
        "parquet",
        data_files=str(local_copy / "errors" / "*.parquet"),
        split="train",
        cache_dir=str(tmp_path / "hf-cache"),
    )
    assert errors.num_rows == summary.errors


def test_ray_data_reads_the_latents_folder(
    reference_run: tuple[Any, Any], local_copy: Path
) -> None:
    import ray

    settings, summary = reference_run
    expected, _ = read_prefix(settings.output, "latents", settings.storage)
    rows = ray.data.read_parquet(str(local_copy / "latents")).take_all()
    assert len(rows) == summary.clips
    assert sorted(r["key"] for r in rows) == [r["key"] for r in expected]
    errors = ray.data.read_parquet(str(local_copy / "errors")).count()
    assert errors == summary.errors
