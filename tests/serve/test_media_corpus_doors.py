"""Every kind of video a real bucket holds, through both doors: the pipeline over a folder and `POST /encode`.

Each corpus file (`media_samples.corpus_videos`) must end as the same clips, or the same error
reason, by either door; nothing under the folder goes unaccounted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.dataset as pads
import pytest
import torch
from media_samples import OK, PARTIAL, CorpusVideo
from serve_testing import (
    CLIP,
    ENCODER,
    TOLERANCE,
    Service,
    max_abs_diff,
    safetensors_metadata,
    safetensors_tensors,
)

from pipeline.records import latent_from_bytes

CLIPS = CLIP.model_copy(update={"clip_mode": "all"})  # 24 frames: two clips of 9
NOT_VIDEOS = {"cover.jpg": b"\xff\xd8\xff not a video", "notes.json": b"{}"}


def _rows(prefix: Path, folder: str) -> list[dict[str, Any]]:
    if not (prefix / folder).exists():
        return []
    return pads.dataset(str(prefix / folder), format="parquet").to_table().to_pylist()


@pytest.fixture(scope="module")
def corpus_run(
    media_corpus: dict[str, CorpusVideo],
    tmp_path_factory: pytest.TempPathFactory,
    ray_cluster: None,
) -> tuple[Path, Any]:
    """The corpus in a folder (with a caption and two files that are no video), through the pipeline."""
    from pipeline.run import run_pipeline
    from pipeline.settings import PipelineSettings

    root = tmp_path_factory.mktemp("bucket")
    inputs = root / "uploads"
    inputs.mkdir()
    for name, video in media_corpus.items():
        (inputs / name).write_bytes(video.data)
    (inputs / "phone_rotated.txt").write_text("a street, filmed upright")  # a caption: taken
    for name, data in NOT_VIDEOS.items():
        (inputs / name).write_bytes(data)
    output = root / "latents"
    settings = PipelineSettings(
        inputs=[f"{inputs}/"],
        output=str(output),
        clips=CLIPS,
        encoder=ENCODER,
        batch_size=4,
        files_per_unit=8,
        progress_bars=False,
        read_num_cpus=0.25,
        encoder_num_cpus=0.25,
    )
    return output, run_pipeline(settings)


def test_the_pipeline_takes_every_kind_and_accounts_for_every_file(
    corpus_run: tuple[Path, Any], media_corpus: dict[str, CorpusVideo]
) -> None:
    output, summary = corpus_run
    latents, errors = _rows(output, "latents"), _rows(output, "errors")
    outcome: dict[str, str] = {}
    for row in latents:
        name = row["source_uri"].rsplit("/", 1)[-1]
        notes = json.loads(row["metadata"]).get("decode") if row["metadata"] else None
        outcome[name] = PARTIAL if notes else OK
    outcome.update({row["source_uri"].rsplit("/", 1)[-1]: row["reason"] for row in errors})
    assert outcome == {name: video.outcome for name, video in media_corpus.items()}
    assert summary.samples == len(media_corpus)
    assert summary.errors_by_reason == {"truncated": 1}
    (truncated,) = [r for r in errors if r["reason"] == "truncated"]
    assert "of the 24 frames the video states decode" in truncated["message"]
    partial = [r for r in latents if r["source_uri"].endswith("truncated.mp4")]
    assert [r["frame_indices"] for r in partial] == [list(range(9))]
    notes = json.loads(partial[0]["metadata"])["decode"]
    assert notes["frames_stated"] == 24 and 9 <= notes["frames_readable"] < 18
    rotated = [r for r in latents if r["source_uri"].endswith("phone_rotated.mp4")]
    assert {tuple(r["source_size"]) for r in rotated} == {(96, 64)}  # shown portrait
    assert {r["caption"] for r in rotated} == {"a street, filmed upright"}
    not_taken = json.loads((output / "summary.json").read_text())["inputs_not_taken"]
    assert not_taken["count"] == len(NOT_VIDEOS)
    assert not_taken["by_extension"] == {".jpg": 1, ".json": 1}
    assert [n.rsplit("/", 1)[-1] for n in not_taken["named"]] == sorted(NOT_VIDEOS)


def test_encode_gives_what_the_pipeline_wrote_for_every_kind(
    corpus_run: tuple[Path, Any], media_corpus: dict[str, CorpusVideo], service: Service
) -> None:
    output, _ = corpus_run
    written: dict[str, list[torch.Tensor]] = {}
    for row in sorted(_rows(output, "latents"), key=lambda r: r["clip_index"]):
        latent = latent_from_bytes(row["latent"], row["latent_shape"], row["latent_dtype"])
        written.setdefault(row["source_uri"].rsplit("/", 1)[-1], []).append(
            torch.from_numpy(latent.copy())
        )
    query = {
        "num_frames": CLIPS.num_frames,
        "height": CLIPS.height,
        "width": CLIPS.width,
        "clip_mode": "all",
    }
    for name, video in media_corpus.items():
        answer = service.client.post(
            f"{service.url}/encode",
            params=query,
            content=video.data,
            headers={**service.auth, "Content-Type": "application/octet-stream"},
        )
        if video.outcome not in (OK, PARTIAL):
            assert answer.status_code == 400, (name, answer.text)
            assert answer.json()["reason"] == video.outcome, name
            continue
        assert answer.status_code == 200, (name, answer.text)
        latent = safetensors_tensors(answer.content)["latent"]  # (N, C, t, h, w)
        assert max_abs_diff(latent, torch.stack(written[name])) <= TOLERANCE, name
        meta = safetensors_metadata(answer.content)
        assert ("decode" in meta) == (video.outcome == PARTIAL), name
