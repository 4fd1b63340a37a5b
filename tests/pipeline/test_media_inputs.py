"""Video inputs under folders and prefixes: every container FFmpeg reads is taken, the rest counted and named."""

from __future__ import annotations

from pathlib import Path

from model.storage import StorageSettings
from pipeline.settings import PipelineSettings
from pipeline.sources import inputs_not_taken, list_sources
from pipeline.storage import VIDEO_EXTENSIONS, list_inputs

# The containers users store video in, beyond MP4 and WebM (the list, and their kin).
STORED_AS = (
    ".ts",
    ".m2ts",
    ".mts",
    ".flv",
    ".3gp",
    ".mpg",
    ".mpeg",
    ".wmv",
    ".ogv",
    ".mov",
    ".mkv",
    ".avi",
)


def test_every_video_container_under_a_folder_is_taken_and_the_rest_named(tmp_path: Path) -> None:
    assert set(STORED_AS) <= set(VIDEO_EXTENSIONS)
    folder = tmp_path / "bucket"
    (folder / "deep").mkdir(parents=True)
    videos = [folder / f"clip{ending}" for ending in STORED_AS] + [folder / "deep" / "CAPS.MTS"]
    for video in videos:
        video.write_bytes(b"x")
    (folder / "clip.txt").write_text(
        "the caption of clip.*"
    )  # beside videos: read as their caption
    others = [folder / "thumb.jpg", folder / "deep" / "meta.json", folder / "README"]
    for other in others:
        other.write_bytes(b"x")
    listing = list_inputs([f"{folder}/"], StorageSettings())
    assert sorted(listing.inputs) == sorted(str(v) for v in videos)
    assert listing.not_taken == sorted(str(o) for o in others)
    tars, items = list_sources(listing.inputs, StorageSettings())
    assert not tars and len(items) == len(videos)
    assert {i.caption for i in items if i.key == "clip"} == {"the caption of clip.*"}


def test_named_inputs_of_no_known_kind_are_counted_with_the_folders_leftovers() -> None:
    counted = inputs_not_taken(["/b/x.jpg", "/b/y.json", "/b/z"], ["/in/a.mp4", "/in/notes.docx"])
    assert counted.count == 4
    assert counted.by_extension == {"(none)": 1, ".docx": 1, ".jpg": 1, ".json": 1}
    assert counted.named == ["/b/x.jpg", "/b/y.json", "/b/z", "/in/notes.docx"]
    assert "4 files under the inputs are no video, tar or table" in counted.describe()


def test_an_s3_prefix_takes_transport_streams_and_names_the_rest(s3_endpoint: str) -> None:
    import boto3

    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(
        Bucket="broadcast"
    )
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    for key in ("captures/a.ts", "captures/b.flv", "captures/c.3gp", "captures/poster.png"):
        s3.put_object(Bucket="broadcast", Key=key, Body=b"x")
    listing = list_inputs(["s3://broadcast/captures/"], StorageSettings(endpoint_url=s3_endpoint))
    assert listing.inputs == [f"s3://broadcast/captures/{n}" for n in ("a.ts", "b.flv", "c.3gp")]
    assert listing.not_taken == ["s3://broadcast/captures/poster.png"]


def test_the_frame_rule_of_target_fps_is_part_of_the_output_hash() -> None:
    """With target_fps, clip frames are the ones shown nearest each instant: a prefix cut at
    d2e27f1 (a stride of round(source fps / target fps)) holds other frames, so its hash differs
    and a run refuses to add to it; without target_fps nothing changed, nor does the hash."""
    base = PipelineSettings(inputs=["x.tar"], output="/tmp/o")
    assert base.output_hash("m") == "d8b2c82b454d8c74"  # as at f8b0cd3 and d2e27f1
    timed = base.model_copy(update={"clips": base.clips.model_copy(update={"target_fps": 12.0})})
    assert timed.output_hash("m") not in ("4d472bfa9581c2da", base.output_hash("m"))  # d2e27f1's
