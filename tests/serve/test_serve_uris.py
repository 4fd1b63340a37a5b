"""URI bodies: only objects under `allowed_uri_prefixes` are read, and every other URI gets the
answer a missing object gets, whatever exists behind it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from serve_testing import ALLOWED_PREFIX, BUCKET, Service, s3_client

from serve.errors import ObjectUnavailable, URIBodiesOff
from serve.uris import MAX_URI_CHARS, check_uri, normalize_prefix

SECRET_BUCKET = "secret-bucket"
ALLOWED_OBJECT = f"{ALLOWED_PREFIX}carphone.mp4"

# Each names a real, readable video the service's credentials reach (but outside the list),
# an object that does not exist, or something that is not a plain object URI at all.
REFUSED_URIS = [
    f"s3://{SECRET_BUCKET}/secret.mp4",  # exists, another bucket
    f"s3://{BUCKET}/private/secret.mp4",  # exists, same bucket, outside the folder
    f"{ALLOWED_PREFIX}../private/secret.mp4",  # climbs out of the folder
    f"{ALLOWED_PREFIX}./carphone.mp4",
    f"s3://{BUCKET}/clips",  # the folder's name without its slash is not under it
    f"s3://{BUCKET}/clipsX/secret.mp4",
    f"{ALLOWED_OBJECT}::file:///etc/passwd",  # fsspec chaining after an allowed prefix
    f"simplecache::{ALLOWED_OBJECT}",
    "file:///etc/passwd",
    f"gs://{BUCKET}/clips/carphone.mp4",
    f"S3://{BUCKET}/clips/carphone.mp4",
    f"{ALLOWED_PREFIX}\x00carphone.mp4",
    f"{ALLOWED_PREFIX}a\\..\\b.mp4",
    "s3://bücket-ünïcode/clips/a.mp4",
    f"s3://{'b' * 5000}/clips/a.mp4",
    ALLOWED_PREFIX + "k" * MAX_URI_CHARS,
    " ",
]
MISSING_URI = f"{ALLOWED_PREFIX}missing.mp4"  # allowed, but no such object


# --- the check as text ------------------------------------------------------------------------
def test_prefixes_are_folders() -> None:
    assert normalize_prefix("s3://b/videos") == "s3://b/videos/"
    assert normalize_prefix("gs://b/") == "gs://b/"
    with pytest.raises(ValueError, match="fsspec chain"):
        normalize_prefix("s3://b::file:///")


@pytest.mark.parametrize("uri", REFUSED_URIS)
def test_refused_uris_look_missing(uri: str) -> None:
    with pytest.raises(ObjectUnavailable):
        check_uri(uri, [ALLOWED_PREFIX])


def test_an_empty_list_turns_uri_bodies_off() -> None:
    with pytest.raises(URIBodiesOff):
        check_uri(ALLOWED_OBJECT, [])
    assert check_uri(ALLOWED_OBJECT, [ALLOWED_PREFIX]) == ALLOWED_OBJECT


# --- over HTTP --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def objects(s3_endpoint: str, sample_videos: dict[str, Path]) -> Iterator[None]:
    """The allowed video, and real videos the service's credentials could read elsewhere."""
    video = sample_videos["carphone_distorted"].read_bytes()
    s3 = s3_client(s3_endpoint)
    for bucket in (BUCKET, SECRET_BUCKET):
        if bucket not in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
            s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=BUCKET, Key="clips/carphone.mp4", Body=video)
    s3.put_object(Bucket=BUCKET, Key="private/secret.mp4", Body=video)
    s3.put_object(Bucket=SECRET_BUCKET, Key="secret.mp4", Body=video)
    yield


def test_the_allowed_object_is_encoded(service: Service, objects: None) -> None:
    answer = service.client.post(
        f"{service.url}/encode", json={"uri": ALLOWED_OBJECT}, headers=service.auth
    )
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize("uri", [MISSING_URI, *REFUSED_URIS])
def test_every_other_uri_gets_the_missing_objects_answer(
    service: Service, objects: None, uri: str
) -> None:
    """Same status, same words (but the URI): nothing tells "exists" from "missing" from
    "not allowed", and nothing of the storage library's text comes back."""
    answer = service.client.post(f"{service.url}/encode", json={"uri": uri}, headers=service.auth)
    assert answer.status_code == 404, answer.text
    assert answer.json() == {"error": "ObjectUnavailable", "detail": str(ObjectUnavailable(uri))}


def test_uri_bodies_are_off_without_prefixes(guard_service: Service, objects: None) -> None:
    answer = guard_service.client.post(
        f"{guard_service.url}/encode", json={"uri": ALLOWED_OBJECT}, headers=guard_service.auth
    )
    assert answer.status_code == 403, answer.text
    assert "allowed_uri_prefixes is empty" in answer.json()["detail"]
