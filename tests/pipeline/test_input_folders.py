"""Folders and prefixes as inputs, local and on S3; inputs that match nothing stop the job loudly."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from test_pipeline_resume import assert_same_rows

from jobs.encode_webvid import main as encode_main
from jobs.refresh_dataset import main as refresh_main
from model.storage import StorageSettings
from pipeline.run import run_pipeline
from pipeline.sources import list_sources
from pipeline.storage import expand_inputs

CORPUS_INPUTS = [
    "files/clip_a.mp4",
    "files/clip_b.mp4",
    "files/short.mp4",
    "shards/shard-00000.tar",
    "shards/shard-00001.tar",
    "webvid/results_2M_val.csv",
    "webvid/videos/1001.mp4",
    "webvid/videos/1002.mp4",
]  # fmt: skip  (every input file of the corpus, and not the .txt captions beside the videos)


def test_a_local_folder_is_every_input_under_it(corpus: Any) -> None:
    storage = StorageSettings()
    root = str(corpus.root)
    assert expand_inputs([root], storage) == [f"{root}/{name}" for name in CORPUS_INPUTS]
    assert expand_inputs([f"{root}/files/"], storage) == [
        f"{root}/{name}" for name in CORPUS_INPUTS if name.startswith("files/")
    ]
    tars, items = list_sources(expand_inputs([root], storage), storage)
    assert sorted(t.shard.rsplit("/", 1)[-1] for t in tars) == [
        "shard-00000.tar",
        "shard-00001.tar",
    ]
    # the CSV's videos come once, with the CSV's keys and captions; loose videos their sidecars
    assert sorted((i.key, i.caption) for i in items) == [
        ("1001", "a square"), ("1002", "bad"), ("clip_a", "a noisy phone call"),
        ("clip_b", ""), ("short", ""),
    ]  # fmt: skip


def test_s3_prefixes_are_every_input_under_them(s3_corpus: str, s3_endpoint: str) -> None:
    storage = StorageSettings(endpoint_url=s3_endpoint)
    # with a trailing slash, or without one where no file has that name
    found = expand_inputs([f"{s3_corpus}/shards/", f"{s3_corpus}/webvid"], storage)
    assert found == [
        f"{s3_corpus}/{name}" for name in CORPUS_INPUTS if name.startswith(("shards/", "webvid/"))
    ]
    assert expand_inputs([f"{s3_corpus}/no-such-prefix/"], storage) == []


@pytest.mark.slow
def test_a_run_over_s3_prefixes_equals_the_run_over_named_inputs(
    reference_run: tuple[Any, Any], s3_corpus: str
) -> None:
    reference, _ = reference_run
    settings = reference.model_copy(
        update={
            "inputs": [f"{s3_corpus}/shards/", f"{s3_corpus}/files/", f"{s3_corpus}/webvid/"],
            "output": f"{s3_corpus}/out/from-prefixes",
            "concurrency": "1-2",  # and an autoscaling encoder pool
        }
    )
    summary = run_pipeline(settings)
    assert summary.units_processed == 5
    assert_same_rows(settings.output, reference.output, settings.storage)


def test_inputs_that_match_nothing_stop_the_job_with_exit_3(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    empty = tmp_path / "incoming"
    empty.mkdir()
    (empty / "notes.txt").write_text("no video here")
    caplog.set_level(logging.ERROR)
    code = encode_main(["--input", f"{empty}/", "--output", str(tmp_path / "out")])
    assert code == 3
    assert "no input matched" in caplog.text and str(empty) in caplog.text
    assert "a folder stands for the files under it ending in .tar" in caplog.text
    assert not (tmp_path / "out" / "summary.json").exists()


def test_refresh_takes_an_s3_prefix(
    s3_corpus: str, s3_endpoint: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        "--input", f"{s3_corpus}/shards/", "--output", str(tmp_path / "out"),
        "--storage.endpoint_url", s3_endpoint, "--dry-run", "--json",
    ]  # fmt: skip
    assert refresh_main(args) == 0
    report = capsys.readouterr().out.strip().splitlines()[-1]
    assert '"sources":2' in report.replace(" ", "")
