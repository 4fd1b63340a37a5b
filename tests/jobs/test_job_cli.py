"""Job command lines and config files to settings, the built-in sample, and exit codes."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from jobs.encode_webvid import PROG, sample_defaults
from jobs.encode_webvid import main as encode_main
from jobs.job_cli import ExitCode, JobError, JobOptions, base_parser, check_errors, parse_job
from jobs.refresh_dataset import main as refresh_main
from jobs.sample_data import SAMPLE_SHARDS, ensure_sample_shards
from model.media import ClipSettings, sample_clips
from pipeline.storage import expand_braces


def parse(argv: list[str], **kwargs):
    return parse_job(argv, base_parser(PROG, ""), JobOptions, **kwargs)


def test_flags_keep_brace_lists_and_reach_nested_settings() -> None:
    parsed = parse(
        ["--input", "s3://b/webvid/{00000..00099}.tar", "--input", "s3://b/{a,b}.csv",
         "--output", "s3://b/latents", "--clips.num_frames", "33", "--storage.endpoint_url",
         "http://minio:9000", "--max-error-fraction", "0.1", "--json"]
    )  # fmt: skip
    assert parsed.settings.inputs == ["s3://b/webvid/{00000..00099}.tar", "s3://b/{a,b}.csv"]
    assert parsed.settings.clips.num_frames == 33
    assert parsed.settings.storage.endpoint_url == "http://minio:9000"
    assert parsed.options.max_error_fraction == 0.1 and parsed.options.json_summary
    assert not parsed.sample


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_config_file_with_job_section_and_flags_on_top(tmp_path: Path, suffix: str) -> None:
    values = {
        "inputs": ["s3://b/results_2M_val.csv"],
        "output": "s3://b/from-file",
        "clips": {"num_frames": 17, "height": 128, "width": 128},
        "job": {"max_error_fraction": 0.02, "lock_ttl_s": 60},
    }
    config = tmp_path / f"job{suffix}"
    if suffix == ".yaml":
        import yaml

        config.write_text(yaml.safe_dump(values))
    else:
        config.write_text(json.dumps(values))
    parsed = parse(["--config", str(config), "--output", "s3://b/from-flag", "--clips.width", "64"])
    assert parsed.settings.inputs == ["s3://b/results_2M_val.csv"]
    assert parsed.settings.output == "s3://b/from-flag"
    assert (parsed.settings.clips.height, parsed.settings.clips.width) == (128, 64)
    assert parsed.options.max_error_fraction == 0.02 and parsed.options.lock_ttl_s == 60


def test_bad_settings_exit_2_with_the_problem_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("inputs: [a.tar]\noutput: out\nclips: {num_frames: 10}\n")
    assert encode_main(["--config", str(bad)]) == ExitCode.USAGE
    assert "num_frames must be 1 + 4k" in caplog.text
    assert encode_main(["--config", str(tmp_path / "missing.yaml")]) == ExitCode.USAGE
    assert refresh_main(["--output", str(tmp_path / "o")]) == ExitCode.USAGE  # no input
    with pytest.raises(SystemExit) as stop:
        encode_main(["--input", "a.tar", "--output", "o", "--no-such-flag", "1"])
    assert stop.value.code == ExitCode.USAGE


def test_refresh_with_no_matching_source_exits_3(tmp_path: Path) -> None:
    args = ["--input", str(tmp_path / "shards" / "*.tar"), "--output", str(tmp_path / "out")]
    assert refresh_main(args) == ExitCode.DATA


def test_error_fraction_limit() -> None:
    summary = SimpleNamespace(samples=10, errors=2, errors_by_reason={"unreadable": 2})
    check_errors(summary, JobOptions(max_error_fraction=0.2))
    with pytest.raises(JobError) as error:
        check_errors(summary, JobOptions(max_error_fraction=0.1))
    assert error.value.code == ExitCode.DATA and "2 of 10 samples failed" in str(error.value)


def test_no_input_means_the_built_in_sample_of_real_footage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    parsed = parse([], sample_defaults=sample_defaults)
    assert parsed.sample and parsed.settings.output == str(tmp_path / "out" / "webvid-sample")
    shards = expand_braces(parsed.settings.inputs[0])
    assert [Path(s).name for s in shards] == [f"{name}.tar" for name in sorted(SAMPLE_SHARDS)]
    first = Path(shards[0]).read_bytes()
    assert ensure_sample_shards(tmp_path / "out" / "sample-shards") == parsed.settings.inputs[0]
    assert Path(shards[0]).read_bytes() == first  # built once, then reused
    with tarfile.open(shards[0]) as tar:  # video2dataset's layout: key.mp4, key.txt, key.json
        names = tar.getnames()
        assert names[:3] == ["000000000.mp4", "000000000.txt", "000000000.json"]
        video = tar.extractfile("000000000.mp4").read()  # type: ignore[union-attr]
        meta = json.loads(tar.extractfile("000000000.json").read())  # type: ignore[union-attr]
    assert meta["caption"] == SAMPLE_SHARDS["00000"][0].caption
    clip = sample_clips(video, ClipSettings(num_frames=9, height=64, width=64))[0]
    assert clip.source_size == (272, 640) and clip.frames.std() > 10  # real, varied pixels
