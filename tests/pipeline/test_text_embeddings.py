"""Caption embeddings on the cluster: a refresh that adds a text encoder to an existing output
runs only the text stage (no source read, no latent written), every clip gets its text row (an
embedding equal to transformers' in-process, a null without a caption, an error row for a
caption that will not tokenize), and the trainer's reader, Hugging Face `datasets`, Ray Data,
duckdb and polars get a clip's latent and embedding through the documented join on `key`."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from test_pipeline_run import read_prefix

from jobs.refresh_dataset import main as refresh_main
from model.storage import open_fs
from model.text_encoder import CaptionEncoder
from pipeline.reader import LatentShardDataset
from pipeline.records import latent_from_bytes, read_file_metadata
from pipeline.text.layout import list_text_folders, load_text_markers

MAX_TOKENS = 8
VIDEO_FOLDERS = ("latents", "errors", "_manifest")


def _state(root: Path) -> dict[str, tuple[str, int]]:
    """Relative path -> (sha256, mtime in ns) of every file the video stage owns."""
    return {
        str(path.relative_to(root)): (
            hashlib.sha256(path.read_bytes()).hexdigest(),
            path.stat().st_mtime_ns,
        )
        for folder in VIDEO_FOLDERS
        for path in sorted((root / folder).rglob("*"))
        if path.is_file()
    }


def _refresh_flags(
    output: Path, s3_inputs: list[str], s3_endpoint: str, text_encoder: Path
) -> list[str]:
    inputs = [flag for uri in s3_inputs for flag in ("--input", uri)]
    return [
        *inputs,
        "--output", str(output),
        "--storage.endpoint_url", s3_endpoint,
        "--clips.num_frames", "9", "--clips.height", "64", "--clips.width", "64",
        "--encoder.dtype", "float32",
        "--progress_bars", "false",
        "--text.encoder", str(text_encoder),
        "--text.max_tokens", str(MAX_TOKENS),
        "--text.dtype", "float32",
        "--text.batch_size", "3",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def refreshed(
    reference_run: tuple[Any, Any],
    tiny_text_encoder: Path,
    s3_inputs: list[str],
    s3_endpoint: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Any]:
    """The reference run's output, copied to a local folder, then refreshed with a text encoder:
    the state of its video files before and after, and the refresh's report."""
    settings, summary = reference_run
    fs, path = open_fs(settings.output, settings.storage)
    root = tmp_path_factory.mktemp("text-refresh") / "out"
    for name in fs.find(path):
        target = root / name[len(path) :].lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        fs.get_file(name, str(target))
    before = _state(root)
    flags = _refresh_flags(root, s3_inputs, s3_endpoint, tiny_text_encoder)
    code = refresh_main(flags)
    report = json.loads((root / "refresh.json").read_text())
    return {
        "root": root,
        "settings": settings,
        "video_summary": summary,
        "before": before,
        "after": _state(root),
        "code": code,
        "report": report,
        "flags": flags,
    }


def _text_folder(root: Path) -> Path:
    (tag,) = list_text_folders(str(root), _storage()).keys()
    return root / "text" / tag


def _storage() -> Any:
    from model.storage import StorageSettings

    return StorageSettings()


def test_a_refresh_that_adds_a_text_encoder_runs_only_the_text_stage(
    refreshed: dict[str, Any],
) -> None:
    assert refreshed["code"] == 0
    report = refreshed["report"]
    assert not report["plan"]["new_sources"] and not report["plan"]["changed_sources"]
    summary = report["summary"]
    # the video stage read, decoded and encoded nothing
    assert summary["units_processed"] == summary["clips"] == summary["samples"] == 0
    assert summary["first_result_s"] is None and summary["cpu_seconds"] < 60
    # the latents, errors and markers are the same bytes with the same mtimes
    assert refreshed["after"] == refreshed["before"]
    text = summary["text"]
    video = refreshed["video_summary"]
    assert text["units_processed"] == text["units_total"] > 0 and text["units_skipped"] == 0
    assert text["rows"] == video.clips == text["embedded"] + text["nulls"] + text["errors"]
    assert text["nulls"] == 1  # clip_b.mp4 has no sidecar caption
    assert text["errors_by_reason"] == {"untokenizable": 1}  # "a big rabbit"
    assert text["captions_encoded"] == text["embedded"]  # every caption of the corpus differs


def test_every_clip_has_its_embedding_equal_to_transformers_in_process(
    refreshed: dict[str, Any], tiny_text_encoder: Path
) -> None:
    root, settings = refreshed["root"], refreshed["settings"]
    latents, _ = read_prefix(settings.output, "latents", settings.storage)
    folder = _text_folder(root)
    texts = {
        r["key"]: r
        for path in sorted((folder / "embeddings").glob("*.parquet"))
        for r in pq.read_table(path).to_pylist()
    }
    errors = [
        r
        for path in sorted((folder / "errors").glob("*.parquet"))
        for r in pq.read_table(path).to_pylist()
    ]
    assert sorted([*texts, *(e["key"] for e in errors)]) == [r["key"] for r in latents]
    assert [(e["caption"], e["stage"], e["reason"]) for e in errors] == [
        ("a big rabbit", "text", "untokenizable")
    ]
    encoder = CaptionEncoder(str(tiny_text_encoder), MAX_TOKENS, dtype="float32")
    for row in latents:
        if row["key"] not in texts:
            continue
        text = texts[row["key"]]
        if not row["caption"]:
            assert text["text_embedding"] is None and text["token_count"] is None
            continue
        tokens = encoder.tokenizer(
            [row["caption"]], padding="max_length", truncation=True, max_length=MAX_TOKENS,
            return_tensors="pt",
        )  # fmt: skip
        with torch.inference_mode():
            hidden = encoder.model(**tokens).last_hidden_state[0]  # (max_tokens, dim)
        count = int(tokens["attention_mask"].sum())
        expected = hidden[:count].numpy()  # the padding trimmed
        stored = latent_from_bytes(text["text_embedding"], text["text_shape"], text["text_dtype"])
        assert text["token_count"] == count and text["text_shape"] == [count, 32]
        assert np.abs(stored - expected).max() <= 1e-6 * max(1.0, float(np.abs(expected).max()))
    counts = {r["caption"]: texts[r["key"]]["token_count"] for r in latents if r["key"] in texts}
    assert counts["a man on a phone in a car"] == MAX_TOKENS  # 9 tokens, truncated
    meta = read_file_metadata(pq.read_schema(next((folder / "embeddings").glob("*.parquet"))))
    identity = json.loads((folder / "text_encoder.json").read_text())
    assert meta["text_encoder_id"] == identity["text_encoder_id"]
    assert meta["config_hash"] == identity["config_hash"] and meta["text_dtype"] == "float32"


def test_a_second_refresh_finds_the_text_current(refreshed: dict[str, Any]) -> None:
    root = refreshed["root"]
    markers = load_text_markers(str(_text_folder(root)), _storage())
    assert refresh_main(refreshed["flags"]) == 0
    report = json.loads((root / "refresh.json").read_text())
    assert report["plan"]["text_units_pending"] == 0 and report["summary"] is None
    assert load_text_markers(str(_text_folder(root)), _storage()) == markers


def _expected(refreshed: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The stored latent rows and text rows, by key."""
    settings = refreshed["settings"]
    latents, _ = read_prefix(settings.output, "latents", settings.storage)
    folder = _text_folder(refreshed["root"])
    texts = {
        r["key"]: r
        for path in sorted((folder / "embeddings").glob("*.parquet"))
        for r in pq.read_table(path).to_pylist()
    }
    return {r["key"]: r for r in latents}, texts


def _check_joined(rows: list[dict[str, Any]], refreshed: dict[str, Any]) -> None:
    latents, texts = _expected(refreshed)
    assert sorted(r["key"] for r in rows) == sorted(latents)
    for row in rows:
        assert row["latent"] == latents[row["key"]]["latent"]
        text = texts.get(row["key"], {})
        assert row["text_embedding"] == text.get("text_embedding")
        assert row["token_count"] == text.get("token_count")
    assert sum(r["text_embedding"] is not None for r in rows) == len(latents) - 2  # null, error


@pytest.fixture(scope="module")
def globs(refreshed: dict[str, Any]) -> tuple[str, str]:
    root = refreshed["root"]
    return str(root / "latents" / "*.parquet"), str(_text_folder(root) / "embeddings" / "*.parquet")


def test_duckdb_joins_latents_and_embeddings(
    refreshed: dict[str, Any], globs: tuple[str, str]
) -> None:
    import duckdb

    latents, texts = globs
    query = (
        f"select * from read_parquet('{latents}') as l "
        f"left join read_parquet('{texts}') as t using (key)"
    )
    relation = duckdb.sql(query)
    rows = [dict(zip(relation.columns, values, strict=True)) for values in relation.fetchall()]
    _check_joined(rows, refreshed)


def test_polars_joins_latents_and_embeddings(
    refreshed: dict[str, Any], globs: tuple[str, str]
) -> None:
    import polars as pl

    latents, texts = globs
    joined = pl.read_parquet(latents).join(pl.read_parquet(texts), on="key", how="left")
    _check_joined(joined.to_dicts(), refreshed)


def test_hugging_face_datasets_joins_latents_and_embeddings(
    refreshed: dict[str, Any], globs: tuple[str, str], tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    from datasets import Dataset, load_dataset

    latents, texts = globs
    cache = str(tmp_path / "hf-cache")
    left = load_dataset("parquet", data_files=latents, split="train", cache_dir=cache)
    right = load_dataset("parquet", data_files=texts, split="train", cache_dir=cache)
    joined = Dataset.from_pandas(
        left.to_pandas().merge(right.to_pandas(), on="key", how="left"), preserve_index=False
    )
    # pandas holds a left join's missing integers as NaN: token_count comes back a float
    rows = [{**r, "token_count": _int_or_none(r["token_count"])} for r in joined]
    _check_joined(rows, refreshed)


def _int_or_none(value: float | None) -> int | None:
    return None if value is None or value != value else int(value)


def test_ray_data_joins_latents_and_embeddings(
    refreshed: dict[str, Any], globs: tuple[str, str]
) -> None:
    import ray

    latents, texts = (str(Path(g).parent) for g in globs)
    joined = ray.data.read_parquet(latents).join(
        ray.data.read_parquet(texts), join_type="left_outer", num_partitions=1, on=("key",)
    )
    _check_joined(joined.take_all(), refreshed)


def test_the_trainers_reader_yields_the_embedding_and_its_mask(refreshed: dict[str, Any]) -> None:
    latents, texts = _expected(refreshed)
    root = str(refreshed["root"])
    dataset = LatentShardDataset(root, batch_size=3)
    assert dataset.text is not None and dataset.text.max_tokens == MAX_TOKENS
    seen = 0
    for batch in dataset:
        embeddings, masks = batch["text_embedding"], batch["text_mask"]  # (B, L, D), (B, L)
        assert embeddings.shape[:2] == masks.shape and embeddings.shape[2] == 32
        assert masks.shape[1] == max(batch["text_token_count"])  # the batch's longest caption
        for i, key in enumerate(batch["key"]):
            seen += 1
            count = batch["text_token_count"][i]
            assert masks[i].sum() == count and not masks[i, count:].any()
            text = texts.get(key)
            if text is None or text["text_embedding"] is None:
                assert count == 0
                continue
            stored = latent_from_bytes(
                text["text_embedding"], text["text_shape"], text["text_dtype"]
            )
            assert np.array_equal(embeddings[i, :count].numpy(), stored)
            assert not embeddings[i, count:].any()
    assert seen == len(latents)
    fixed = LatentShardDataset(root, text_tokens=12)
    sample = next(iter(fixed))
    assert sample["text_embedding"].shape == (12, 32) and sample["text_mask"].shape == (12,)
    assert "text_embedding" not in next(iter(LatentShardDataset(root, text_encoder=None)))
    with pytest.raises(ValueError, match="match 'other'"):
        LatentShardDataset(root, text_encoder="other")


def test_one_job_encodes_video_and_then_text(
    corpus: Any,
    ray_cluster: None,
    tiny_text_encoder: Path,
    make_settings: Callable[..., Any],
    tmp_path: Path,
) -> None:
    from pipeline.run import run_pipeline

    settings = make_settings(
        inputs=[
            str(corpus.root / "files" / "clip_a.mp4"),
            str(corpus.root / "files" / "clip_b.mp4"),
        ],
        output=str(tmp_path / "out"),
        text={"encoder": str(tiny_text_encoder), "max_tokens": MAX_TOKENS, "dtype": "float32"},
    )
    summary = run_pipeline(settings)
    assert summary.clips == 2 and summary.text is not None
    assert (summary.text.units_processed, summary.text.embedded, summary.text.nulls) == (1, 1, 1)
    rows = list(LatentShardDataset(str(tmp_path / "out")))
    by_caption = {r["caption"]: r for r in rows}
    assert by_caption["a noisy phone call"]["text_token_count"] == 5
    assert by_caption[""]["text_token_count"] == 0
    summary_json = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary_json["text"]["folder"].startswith("text/tiny-t5-")
