"""End to end on a real Ray cluster and moto's S3 over HTTP: accounting, parity, metadata, stats, re-runs."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from bundled_model import BATCH_TOLERANCE, LATENT_DIM

from model.errors import ConfigError
from model.latents import ClipEncoder
from model.media import sample_clips, to_model_input
from model.storage import open_fs
from pipeline.manifest import INDEX_FILE, load_markers, write_index, write_marker
from pipeline.records import latent_from_bytes, read_file_metadata
from pipeline.run import run_pipeline

PARITY_TOLERANCE = BATCH_TOLERANCE


def read_prefix(
    output: str, folder: str, storage: Any
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Every row under output/folder (sorted by key) and each file's wfvae metadata."""
    fs, path = open_fs(f"{output}/{folder}", storage)
    rows, metas = [], []
    try:
        names = sorted(fs.ls(path, detail=False, refresh=True))
    except FileNotFoundError:  # no file there: a run without errors writes no errors/ part
        names = []
    for name in names:
        with fs.open(name, "rb") as handle:
            table = pq.read_table(handle)
        rows.extend(table.to_pylist())
        metas.append(read_file_metadata(table.schema))
    return sorted(rows, key=lambda r: r["key"]), metas


def source_name(row: dict[str, Any]) -> str:
    return (row["shard"] or row["source_uri"]).rsplit("/", 1)[-1]


def test_every_input_is_accounted_for(reference_run: tuple[Any, Any], corpus: Any) -> None:
    settings, summary = reference_run
    latents, _ = read_prefix(settings.output, "latents", settings.storage)
    errors, _ = read_prefix(settings.output, "errors", settings.storage)
    outcome = {(source_name(r), r["member_key"]): "ok" for r in latents}
    outcome.update({(source_name(r), r["member_key"]): r["reason"] for r in errors})
    assert outcome == corpus.expected
    assert summary.samples == len(corpus.expected)
    assert summary.clips == len(latents) == sum(v == "ok" for v in corpus.expected.values())
    assert summary.errors_by_reason == dict(
        Counter(v for v in corpus.expected.values() if v != "ok")
    )
    assert {r["stage"] for r in errors} == {"decode"}
    assert len({r["key"] for r in latents}) == len(latents)  # keys are unique


def test_captions_and_geometry_columns(reference_run: tuple[Any, Any]) -> None:
    settings, _ = reference_run
    latents, _ = read_prefix(settings.output, "latents", settings.storage)
    by_member = {r["member_key"]: r for r in latents}
    assert by_member["000001"]["caption"] == "cyclists on a road"  # from the tar's .txt
    assert json.loads(by_member["000001"]["metadata"])["key"] == "000001"  # the tar's .json
    assert by_member["clip_a"]["caption"] == "a noisy phone call"  # sidecar .txt
    assert by_member["clip_b"]["caption"] == ""
    assert by_member["1001"]["caption"] == "a square"  # WebVid's name column
    bikes = by_member["000001"]
    assert bikes["source_size"] == [68, 160] and bikes["target_size"] == [64, 64]
    assert bikes["frame_indices"] == list(range(9)) and bikes["fps"] == pytest.approx(24.0)
    assert bikes["latent_shape"] == [LATENT_DIM, 3, 8, 8] and bikes["latent_dtype"] == "float32"
    assert bikes["latent_kind"] == "mean" and bikes["bucket"] is None


def largest_difference_from_in_process(
    latents: list[dict[str, Any]], media: dict[str, bytes], clips: Any, encoder: ClipEncoder
) -> float:
    """Max |stored - encoded here| over latent rows; `media` maps member keys to video bytes.
    Each row's clip is sampled again from its video and must have the row's frame indices."""
    worst = 0.0
    for row in latents:
        clip = sample_clips(media[row["member_key"]], clips)[row["clip_index"]]
        assert clip.frame_indices == row["frame_indices"]
        with torch.inference_mode():
            expected = encoder.vae.encode(to_model_input(clip.frames)).mean[0].numpy()  # (C, t, h, w)
        stored = latent_from_bytes(row["latent"], row["latent_shape"], row["latent_dtype"])
        assert stored.shape == expected.shape
        worst = max(worst, float(np.abs(stored - expected).max()))
    return worst


def test_latents_equal_in_process_encoding(reference_run: tuple[Any, Any], corpus: Any) -> None:
    settings, _ = reference_run
    latents, metas = read_prefix(settings.output, "latents", settings.storage)
    encoder = ClipEncoder(dtype="float32", device="cpu")
    names = {
        "000000": "carphone", "000001": "bikes", "000003": "synth_a", "000100": "bunny",
        "clip_a": "carphone_distorted", "clip_b": "synth_b", "1001": "synth_c",
    }  # fmt: skip
    media = {key: corpus.media[name] for key, name in names.items()}
    worst = largest_difference_from_in_process(latents, media, settings.clips, encoder)
    assert worst <= PARITY_TOLERANCE, worst
    meta = metas[0]
    assert meta["model_id"] == encoder.model_id and meta["config_hash"] == encoder.config_hash
    assert meta["encode_dtype"] == "float32" and meta["latent_kind"] == "mean"
    assert json.loads(meta["scale"]) == pytest.approx(list(encoder.vae.config.scale))
    assert json.loads(meta["shift"]) == pytest.approx(list(encoder.vae.config.shift))


def test_parquet_reads_back_with_pandas_and_torch(reference_run: tuple[Any, Any]) -> None:
    settings, _ = reference_run
    fs, path = open_fs(f"{settings.output}/latents", settings.storage)
    name = sorted(n for n in fs.ls(path, detail=False) if "shard-00000" in n)[0]
    with fs.open(name, "rb") as handle:
        frame = pq.read_table(handle).to_pandas()
    row = frame.iloc[0]
    z = torch.frombuffer(bytearray(row["latent"]), dtype=torch.float32).reshape(
        list(row["latent_shape"])
    )
    assert z.shape == (LATENT_DIM, 3, 8, 8) and torch.isfinite(z).all()


def test_latent_statistics_match_the_rows(reference_run: tuple[Any, Any]) -> None:
    settings, _ = reference_run
    latents, _ = read_prefix(settings.output, "latents", settings.storage)
    stacked = np.concatenate(
        [
            latent_from_bytes(r["latent"], r["latent_shape"], r["latent_dtype"]).reshape(
                LATENT_DIM, -1
            )
            for r in latents
        ],
        axis=1,
    )  # (C, N)
    fs, path = open_fs(f"{settings.output}/latent_stats.json", settings.storage)
    stats = json.loads(fs.cat_file(path))
    assert stats["units"] == 5
    # The job sums in float64 (pipeline/committer.py): against a float64 computation only the
    # order of those sums differs, ~1e-15 of the values.
    exact = stacked.astype(np.float64)
    np.testing.assert_allclose(stats["mean"], exact.mean(axis=1), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(stats["std"], exact.std(axis=1), rtol=1e-9, atol=1e-12)


def copy_output(settings: Any, name: str) -> Any:
    """A copy of a finished output under a new prefix, so a test can change it alone."""
    fs, src = open_fs(settings.output, settings.storage)
    destination = f"{settings.output.rsplit('/', 1)[0]}/{name}"
    _, dst = open_fs(destination, settings.storage)
    for path in fs.find(src):
        fs.copy(path, dst + path[len(src) :])
    return settings.model_copy(update={"output": destination})


def test_rerun_skips_finished_shards_and_takes_new_ones(
    reference_run: tuple[Any, Any], corpus: Any, s3_endpoint: str
) -> None:
    import boto3

    settings = copy_output(reference_run[0], "rerun")
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")

    def listing() -> dict[str, str]:
        objects = client.list_objects_v2(Bucket="videos", Prefix="out/rerun/")["Contents"]
        return {
            o["Key"]: o["ETag"]
            for o in objects
            if ("/_manifest/" in o["Key"] or "/latents/" in o["Key"])
            and not o["Key"].endswith(INDEX_FILE)  # the manifest index: rewritten by each run
        }

    before = listing()
    again = run_pipeline(settings)
    assert (again.units_processed, again.units_skipped, again.clips) == (0, 5, 0)
    assert listing() == before  # nothing rewritten

    client.put_object(Bucket="videos", Key="files/late.mp4", Body=corpus.media["synth_a"])
    try:
        grown = run_pipeline(settings)
    finally:
        client.delete_object(Bucket="videos", Key="files/late.mp4")
    assert (grown.units_processed, grown.units_skipped, grown.clips, grown.errors) == (1, 5, 1, 0)
    latents, _ = read_prefix(settings.output, "latents", settings.storage)
    assert [r["member_key"] for r in latents].count("late") == 1
    assert len(load_markers(settings.output, settings.storage)) == 6
    assert {k: v for k, v in listing().items() if k in before} == before


def test_a_prefix_holds_one_encode_precision(
    reference_run: tuple[Any, Any], corpus: Any, s3_endpoint: str
) -> None:
    import boto3

    settings = copy_output(reference_run[0], "other-precision")
    markers = load_markers(settings.output, settings.storage)
    _, metadata = read_prefix(settings.output, "latents", settings.storage)
    assert {m.encode_dtype for m in markers.values()} == {meta["encode_dtype"] for meta in metadata}
    # As if a refresh ran where `auto` resolved otherwise: the finished units name float16.
    for marker in markers.values():
        marker.encode_dtype = "float16"
        write_marker(settings.output, marker, settings.storage)
    write_index(settings.output, markers, settings.storage)
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    client.put_object(Bucket="videos", Key="files/late.mp4", Body=corpus.media["synth_a"])
    try:
        with pytest.raises(ConfigError, match="5 units encoded in float16.*one prefix holds one precision"):
            run_pipeline(settings)
    finally:
        client.delete_object(Bucket="videos", Key="files/late.mp4")
    assert len(load_markers(settings.output, settings.storage)) == 5  # nothing added


def test_other_settings_on_the_same_prefix_are_refused(reference_run: tuple[Any, Any]) -> None:
    settings, _ = reference_run
    changed = settings.model_copy(
        update={"clips": settings.clips.model_copy(update={"num_frames": 5})}
    )
    with pytest.raises(ConfigError, match="new output prefix"):
        run_pipeline(changed)
