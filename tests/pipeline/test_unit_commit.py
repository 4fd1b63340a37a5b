"""The commit protocol without Ray: workers' part files, the driver's markers, visibility and clean-up."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_pipeline_run import read_prefix

from model.storage import StorageSettings
from pipeline.committer import UnitCommitter
from pipeline.manifest import (
    INDEX_FILE,
    committed_files,
    load_markers,
    remove_orphans,
    write_index,
)
from pipeline.parts import PART_SCHEMA, part_records
from pipeline.reader import LatentShardDataset, list_shards
from pipeline.records import ENCODED_SCHEMA, latent_to_bytes
from pipeline.sources import WorkUnit

STORAGE = StorageSettings()
META = {"latent_kind": "mean", "model_id": "test-model"}
LATENT_SHAPE = (4, 2, 3, 3)  # (C, t, h, w)


def unit(name: str) -> WorkUnit:
    return WorkUnit(unit_id=name, kind="tar", shard=f"/in/{name}.tar", version="v1")


def clip_row(unit_id: str, sample: int, clip: int, clips_in_sample: int) -> dict[str, Any]:
    latent = np.full(LATENT_SHAPE, sample + clip / 10, np.float32)
    data, shape, dtype = latent_to_bytes(latent)
    return {
        "row_kind": "clip", "unit_id": unit_id, "sample_index": sample,
        "sample_rows": clips_in_sample, "key": f"{unit_id}-{sample}-{clip}", "clip_index": clip,
        "member_key": str(sample), "latent": data, "latent_shape": shape, "latent_dtype": dtype,
    }  # fmt: skip


def error_row(unit_id: str, sample: int, reason: str) -> dict[str, Any]:
    return {
        "row_kind": "error", "unit_id": unit_id, "sample_index": sample, "sample_rows": 1,
        "key": f"{unit_id}-{sample}-error", "stage": "decode", "reason": reason, "message": "bad",
    }  # fmt: skip


def end_row(unit_id: str, samples: int) -> dict[str, Any]:
    return {"row_kind": "unit_end", "unit_id": unit_id, "unit_samples": samples}


def encoded(rows: list[dict[str, Any]]) -> pa.Table:
    empty = {"sample_index": -1, "sample_rows": 0, "unit_samples": 0, "key": "", "clip_index": 0}
    return pa.Table.from_pylist([{**empty, **r} for r in rows], schema=ENCODED_SCHEMA)


def test_parts_hold_one_unit_each_and_no_file_is_empty(tmp_path: Path) -> None:
    batch = encoded(
        [clip_row("a", 0, 0, 2), error_row("b", 0, "unreadable"), clip_row("a", 0, 1, 2)]
        + [end_row("b", 1), end_row("c", 0)]
    )
    records = part_records(batch, str(tmp_path), STORAGE, META).to_pylist()
    by_unit = {r["unit_id"]: r for r in records}
    assert sorted(by_unit) == ["a", "b", "c"]
    a, b, c = by_unit["a"], by_unit["b"], by_unit["c"]
    assert (a["sample_index"], a["sample_rows"], a["rows_here"], a["clips"]) == ([0], [2], [2], 2)
    assert a["latents_file"].startswith("a.") and a["errors_file"] == ""
    assert b["latents_file"] == "" and b["errors_file"].startswith("b.")  # all bad: no latents file
    assert (b["unit_samples"], json.loads(b["error_reasons"])) == (1, {"unreadable": 1})
    assert (c["unit_samples"], c["sample_index"], c["latents_file"], c["errors_file"]) == (
        0, [], "", ""
    )  # fmt: skip
    assert sorted(p.name for p in (tmp_path / "latents").iterdir()) == [a["latents_file"]]
    table = pq.read_table(tmp_path / "latents" / a["latents_file"])
    assert table.column("key").to_pylist() == ["a-0-0", "a-0-1"]
    assert table.num_rows == 2 and "latent" in table.column_names
    sums = json.loads(a["sums"])
    assert sums["count"] == [2 * 2 * 3 * 3] * 4  # 2 clips of t*h*w elements per channel
    assert sums["total"] == pytest.approx([18 * (0.0 + 0.1)] * 4)
    # the same rows again (a retried write) land on the same file name
    again = part_records(batch, str(tmp_path), STORAGE, META).to_pylist()
    assert [r["latents_file"] for r in again] == [r["latents_file"] for r in records]


def test_a_unit_is_committed_only_once_all_its_samples_are_written(tmp_path: Path) -> None:
    output = str(tmp_path)
    first = part_records(
        encoded([clip_row("a", 1, 0, 1), clip_row("a", 0, 0, 2)]), output, STORAGE, META
    )
    second = part_records(
        encoded([clip_row("a", 0, 1, 2), error_row("a", 2, "too_short"), end_row("a", 3)]),
        output, STORAGE, META,
    )  # fmt: skip
    committer = UnitCommitter(output, STORAGE, [unit("a")], settings_hash="h")
    assert committer.add(first) == []
    assert load_markers(output, STORAGE) == {} and list_shards(output, STORAGE) == []
    assert committer.add(second) == ["a"]
    (marker,) = committer.finish()
    assert (marker.samples, marker.clips, marker.errors) == (3, 3, 1)
    assert marker.errors_by_reason == {"too_short": 1}
    assert len(marker.latent_files or []) == 2 and len(marker.error_files or []) == 1
    assert load_markers(output, STORAGE) == {"a": marker}
    keys = sorted(row["key"] for row in LatentShardDataset(output, STORAGE))
    assert keys == ["a-0-0", "a-0-1", "a-1-0"]
    assert marker.sums.count == [3 * 18] * 4


def test_a_part_received_twice_is_counted_once(tmp_path: Path) -> None:
    output = str(tmp_path)
    records = part_records(
        encoded([clip_row("a", 0, 0, 1), end_row("a", 1)]), output, STORAGE, META
    )
    committer = UnitCommitter(output, STORAGE, [unit("a")], settings_hash="h")
    assert committer.add(pa.concat_tables([records, records])) == ["a"]
    (marker,) = committer.finish()
    assert marker.clips == 1 and len(marker.latent_files or []) == 1


def test_an_incomplete_unit_is_an_error_at_the_end(tmp_path: Path) -> None:
    records = part_records(encoded([clip_row("a", 0, 0, 2)]), str(tmp_path), STORAGE, META)
    committer = UnitCommitter(str(tmp_path), STORAGE, [unit("a")], settings_hash="h")
    committer.add(records)
    with pytest.raises(RuntimeError, match="units left incomplete: \\['a'\\]"):
        committer.finish()


def test_parts_no_marker_lists_are_invisible_and_removed(tmp_path: Path) -> None:
    output = str(tmp_path)
    done = part_records(encoded([clip_row("a", 0, 0, 1), end_row("a", 1)]), output, STORAGE, META)
    committer = UnitCommitter(output, STORAGE, [unit("a")], settings_hash="h")
    committer.add(done)
    committer.finish()
    # an interrupted unit, and a stray part of the committed one (a write retried with other rows)
    part_records(encoded([clip_row("b", 0, 0, 2)]), output, STORAGE, META)
    part_records(encoded([clip_row("a", 0, 0, 1), error_row("a", 1, "x")]), output, STORAGE, META)
    assert len(list((tmp_path / "latents").iterdir())) == 3
    assert [Path(f).name for f in committed_files(output, STORAGE)] == done.column(
        "latents_file"
    ).to_pylist()
    latents, _ = read_prefix(output, "latents", STORAGE)
    assert len(latents) == 3  # what a reader that ignores the manifest would see
    markers = load_markers(output, STORAGE)
    assert remove_orphans(output, markers, STORAGE) == ["a", "b"]
    assert sorted(p.name for p in (tmp_path / "latents").iterdir()) == markers["a"].files("latents")
    assert not list((tmp_path / "errors").iterdir())


def test_the_driver_receives_small_records_only() -> None:
    assert "latent" not in PART_SCHEMA.names and "frames" not in PART_SCHEMA.names


def test_the_manifest_index_is_a_cache_the_listing_overrules(tmp_path: Path) -> None:
    output = str(tmp_path)
    committer = UnitCommitter(output, STORAGE, [unit("a"), unit("b")], settings_hash="h")
    for name in ("a", "b"):
        rows = encoded([clip_row(name, 0, 0, 1), end_row(name, 1)])
        committer.add(part_records(rows, output, STORAGE, META))
    markers = {m.unit_id: m for m in committer.finish()}
    write_index(output, markers, STORAGE)
    manifest = tmp_path / "_manifest"
    assert load_markers(output, STORAGE) == markers
    # b redone with other counts after the index was written; a deleted (retired)
    redone = markers["b"].model_copy(update={"clips": 7})
    (manifest / "b.json").write_text(redone.model_dump_json())
    (manifest / "a.json").unlink()
    assert load_markers(output, STORAGE) == {"b": redone}
    (manifest / INDEX_FILE).write_bytes(b"not gzip")  # a damaged index costs GETs, not a failure
    assert load_markers(output, STORAGE) == {"b": redone}
