"""Reading WebDataset tars from S3 member by member, loose files with sidecars, WebVid tables, grouping."""

from __future__ import annotations

import io
import json
import tarfile
from typing import Any

from model.storage import StorageSettings, open_fs
from pipeline.sources import (
    Sample,
    SampleError,
    WorkUnit,
    group_items,
    iter_unit_samples,
    list_sources,
)
from pipeline.storage import atomic_write


def test_tar_shard_streams_samples_with_captions_and_metadata(
    s3_corpus: str, s3_endpoint: str, corpus: Any
) -> None:
    storage = StorageSettings(endpoint_url=s3_endpoint)
    (unit,), loose = list_sources([f"{s3_corpus}/shards/shard-00000.tar"], storage)
    assert loose == [] and unit.kind == "tar" and unit.version
    samples = list(iter_unit_samples(unit, storage))
    assert [s.member_key for s in samples] == ["000000", "000001", "000002", "000003"]
    assert all(isinstance(s, Sample) for s in samples)
    first = samples[0]
    assert isinstance(first, Sample)
    assert first.video == corpus.media["carphone"]
    assert first.caption == "a man on a phone in a car"
    assert json.loads(first.metadata)["key"] == "000000"
    assert first.source_uri == unit.shard and first.version == unit.version


def test_a_truncated_or_missing_shard_yields_what_it_can_then_an_error(
    s3_corpus: str, s3_endpoint: str
) -> None:
    storage = StorageSettings(endpoint_url=s3_endpoint)
    fs, path = open_fs(f"{s3_corpus}/shards/shard-00000.tar", storage)
    whole = fs.cat_file(path)
    cut = f"{s3_corpus}/broken/shard-cut.tar"
    atomic_write(cut, whole[: len(whole) * 2 // 3], storage)
    (unit,), _ = list_sources([cut], storage)
    samples = list(iter_unit_samples(unit, storage))
    assert isinstance(samples[-1], SampleError) and samples[-1].reason == "shard_unreadable"
    assert 1 <= len(samples) - 1 < 4 and all(isinstance(s, Sample) for s in samples[:-1])

    missing = WorkUnit(unit_id="gone", kind="tar", shard=f"{s3_corpus}/broken/none.tar")
    (error,) = list(iter_unit_samples(missing, storage))
    assert isinstance(error, SampleError) and "FileNotFoundError" in error.message


def test_sample_without_a_video_member_is_an_error(tmp_path: Any) -> None:
    shard = tmp_path / "odd.tar"
    with tarfile.open(shard, "w") as tar:
        for name, data in (("a.txt", b"caption only"), ("b.mp4", b"x"), ("b.txt", b"b")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    (unit,), _ = list_sources([str(shard)], StorageSettings())
    first, second = iter_unit_samples(unit, StorageSettings())
    assert isinstance(first, SampleError) and first.reason == "no_video"
    assert isinstance(second, Sample) and second.video == b"x" and second.caption == "b"


def test_loose_files_sidecars_and_webvid_tables(s3_corpus: str, s3_endpoint: str) -> None:
    storage = StorageSettings(endpoint_url=s3_endpoint)
    tars, items = list_sources(
        [
            f"{s3_corpus}/files/clip_a.mp4",
            f"{s3_corpus}/files/clip_b.mp4",
            f"{s3_corpus}/webvid/results_2M_val.csv",
        ],
        storage,
    )
    assert tars == []
    by_key = {i.key: i for i in items}
    assert by_key["clip_a"].caption == "a noisy phone call" and by_key["clip_a"].version
    assert by_key["clip_b"].caption == ""
    assert by_key["1001"].uri == f"{s3_corpus}/webvid/videos/1001.mp4"
    assert by_key["1001"].caption == "a square"


def test_groups_are_deterministic_and_survive_removing_finished_groups(
    s3_corpus: str, s3_endpoint: str
) -> None:
    storage = StorageSettings(endpoint_url=s3_endpoint)
    _, items = list_sources(
        [f"{s3_corpus}/files/{n}.mp4" for n in ("clip_a", "clip_b", "short")]
        + [f"{s3_corpus}/webvid/results_2M_val.csv"],
        storage,
    )
    groups = group_items(items, 2)
    assert [len(g.items) for g in groups] == [2, 2, 1]
    assert group_items(list(reversed(items)), 2) == groups
    finished = set(groups[1].items)
    rest = group_items([i for i in items if i not in finished], 2)
    assert [g.unit_id for g in rest] == [groups[0].unit_id, groups[2].unit_id]
    assert WorkUnit.from_row(groups[0].to_row()) == groups[0]


def test_parquet_tables_and_plain_video_extensions(corpus: Any, tmp_path: Any) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "a.webm").write_bytes(b"not really webm")
    table = pa.table(
        {
            "key": ["x1"],
            "caption": ["from parquet"],
            "uri": [f"file://{corpus.root}/files/clip_a.mp4"],
        }
    )
    pq.write_table(table, tmp_path / "list.parquet")
    tars, items = list_sources(
        [str(tmp_path / "list.parquet"), str(tmp_path / "v" / "a.webm")], StorageSettings()
    )
    assert tars == []
    assert [(i.key, i.caption, i.uri) for i in items] == [
        ("x1", "from parquet", str(corpus.root / "files" / "clip_a.mp4")),
        ("a", "", str(tmp_path / "v" / "a.webm")),
    ]
