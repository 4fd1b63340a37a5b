"""The output lease: one job at a time writes to an output prefix (flock locally, conditional writes on S3).

Why a lease and not only idempotent writes: units are deterministic and written atomically, but a
run's planning step deletes Parquet files that have no marker yet (leftovers of an interrupted
run). Two overlapping runs would let one delete files the other is about to mark as finished.

Local folders: `fcntl.flock` on `<output>/_lock.json`; the kernel releases it when the holder
exits, however it exits, so no expiry is needed.

S3 (and S3-compatible stores with conditional writes: AWS since 2024, MinIO, moto): the lease
is the object `<output>/_lock.json`, created with `If-None-Match: *`. It names its holder and an
expiry; the holder renews it every third of its length with `If-Match: <its ETag>`, so a holder
that lost its lease finds out at the next renewal (and `LeaseKeeper` then interrupts the job).
An expired lease is taken over with `If-Match` on the expired object's ETag, so of two runs that
both see it expired exactly one wins. Expiry compares wall clocks: keep hosts on NTP.
"""

from __future__ import annotations

import _thread
import errno
import fcntl
import json
import logging
import os
import signal
import socket
import threading
import time
import uuid
from typing import Any

from pydantic import BaseModel

from model.storage import StorageSettings, open_fs, protocol_of
from pipeline.storage import is_local, join_uri

__all__ = ["Lease", "LeaseBusyError", "LeaseKeeper", "LeaseLostError", "LeaseRecord", "lock_uri"]

log = logging.getLogger(__name__)

LOCK_NAME = "_lock.json"
RENEWALS_PER_TTL = 3


class LeaseBusyError(Exception):
    """Another run holds the lease."""

    def __init__(self, uri: str, holder: LeaseRecord | None, detail: str = "") -> None:
        who = (
            f"{holder.job} (pid {holder.pid} on {holder.host}, since "
            f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(holder.acquired_at))})"
            if holder
            else "another run"
        )
        super().__init__(f"{uri} is held by {who}{detail}")
        self.holder = holder


class LeaseLostError(Exception):
    """The lease was taken over by another run (it expired before it was renewed)."""


class LeaseRecord(BaseModel):
    """What the lock object says about its holder."""

    owner: str
    job: str
    host: str
    pid: int
    acquired_at: float
    expires_at: float


def lock_uri(output: str) -> str:
    return join_uri(output, LOCK_NAME)


class Lease:
    """An exclusive lease on an output prefix; `acquire()` raises LeaseBusyError when held."""

    def __init__(
        self, output: str, storage: StorageSettings, job: str, ttl_s: float = 60.0
    ) -> None:
        self.uri = lock_uri(output)
        self.storage = storage
        self.ttl_s = ttl_s
        self.fs, self.path = open_fs(self.uri, storage)
        self.local = is_local(self.fs)
        if not self.local and protocol_of(self.uri) not in ("s3", "s3a"):
            raise ValueError(
                f"the output lease supports local folders and S3, not {self.uri}; "
                "run with --no-lock and make sure runs cannot overlap"
            )
        self.record = LeaseRecord(
            owner=uuid.uuid4().hex,
            job=job,
            host=socket.gethostname(),
            pid=os.getpid(),
            acquired_at=0.0,
            expires_at=0.0,
        )
        self._fd: int | None = None
        self._etag: str | None = None

    # --- public ---------------------------------------------------------------------------------

    def acquire(self) -> Lease:
        now = time.time()
        self.record = self.record.model_copy(
            update={"acquired_at": now, "expires_at": now + self.ttl_s}
        )
        if self.local:
            self._acquire_local()
        else:
            self._acquire_s3()
        log.info("holding the lease %s", self.uri)
        return self

    def renew(self) -> None:
        """Push the expiry forward; raises LeaseLostError if another run holds the lease now."""
        if self.local:
            return  # flock holds until the process ends
        record = self.record.model_copy(update={"expires_at": time.time() + self.ttl_s})
        try:
            self._etag = self._put(record, IfMatch=self._etag)
        except (OSError, FileNotFoundError) as error:
            raise LeaseLostError(f"lease {self.uri} was taken over: {error}") from error
        self.record = record

    def release(self) -> None:
        if self.local:
            if self._fd is not None:
                os.ftruncate(self._fd, 0)
                fcntl.flock(self._fd, fcntl.LOCK_UN)
                os.close(self._fd)
                self._fd = None
            return
        if self._etag is None:
            return
        bucket, key = self._bucket_key()
        try:
            self.fs.call_s3("delete_object", Bucket=bucket, Key=key, IfMatch=self._etag)
        except (OSError, FileNotFoundError) as error:  # taken over meanwhile: not ours to delete
            log.warning("lease %s was not ours any more at release: %s", self.uri, error)
        self._etag = None

    def __enter__(self) -> Lease:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    # --- local ----------------------------------------------------------------------------------

    def _acquire_local(self) -> None:
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            holder = _parse(os.pread(fd, 65536, 0))
            os.close(fd)
            if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise LeaseBusyError(self.uri, holder) from error
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, self.record.model_dump_json().encode(), 0)
        self._fd = fd

    # --- S3 -------------------------------------------------------------------------------------

    def _bucket_key(self) -> tuple[str, str]:
        bucket, _, key = self.path.partition("/")
        return bucket, key

    def _put(self, record: LeaseRecord, **condition: str) -> str:
        bucket, key = self._bucket_key()
        response = self.fs.call_s3(
            "put_object",
            Bucket=bucket,
            Key=key,
            Body=record.model_dump_json().encode(),
            ContentType="application/json",
            **condition,
        )
        return str(response["ETag"])

    def _current(self) -> tuple[LeaseRecord | None, str] | None:
        """The lease object's holder and ETag, read in one request (so the two belong together)."""
        from fsspec.asyn import sync

        bucket, key = self._bucket_key()

        async def get() -> tuple[bytes, str]:
            response = await self.fs._call_s3("get_object", Bucket=bucket, Key=key)
            async with response["Body"] as body:
                return await body.read(), str(response["ETag"])

        try:
            data, etag = sync(self.fs.loop, get)
        except FileNotFoundError:
            return None
        return _parse(data), etag

    def _acquire_s3(self) -> None:
        for _ in range(3):  # create; or take over an expired lease; the holder may vanish between
            try:
                self._etag = self._put(self.record, IfNoneMatch="*")
                return
            except FileExistsError:
                pass
            current = self._current()
            if current is None:
                continue  # released meanwhile: try to create again
            holder, etag = current
            if holder is not None and holder.expires_at > time.time():
                raise LeaseBusyError(self.uri, holder)
            log.warning("taking over the expired lease %s (was %s)", self.uri, holder)
            try:
                self._etag = self._put(self.record, IfMatch=etag)
                return
            except (OSError, FileNotFoundError) as error:
                raise LeaseBusyError(self.uri, None, ": another run took it over first") from error
        raise LeaseBusyError(self.uri, None, ": it kept changing hands")


def _parse(data: bytes) -> LeaseRecord | None:
    try:
        return LeaseRecord.model_validate(json.loads(data))
    except Exception:
        return None  # empty (a released local lock) or foreign content


class LeaseKeeper:
    """Renews a lease in the background; if it is lost, interrupts the main thread.

    Use as a context manager around the work; afterwards `lost` says whether the lease was lost.
    """

    def __init__(self, lease: Lease) -> None:
        self.lease = lease
        self.lost: LeaseLostError | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lease-keeper", daemon=True)
        self._saved_sigint: Any = None

    def _run(self) -> None:
        period = self.lease.ttl_s / RENEWALS_PER_TTL
        while not self._stop.wait(period):
            try:
                self.lease.renew()
            except LeaseLostError as error:
                log.error("%s; stopping this run", error)
                self.lost = error
                _thread.interrupt_main()  # the job stops with KeyboardInterrupt in the main thread
                return
            except Exception as error:  # storage trouble: try again at the next period
                log.warning("could not renew the lease %s: %s", self.lease.uri, error)

    def __enter__(self) -> LeaseKeeper:
        if not self.lease.local:
            self._ensure_interruptible()
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        if self._saved_sigint is not None:
            signal.signal(signal.SIGINT, self._saved_sigint)
            self._saved_sigint = None

    def _ensure_interruptible(self) -> None:
        """interrupt_main() does nothing while SIGINT is ignored or default, as in a job started
        with `&` from a script (the shell ignores SIGINT for it): Python's handler is put back
        for the keeper's lifetime so that a lost lease still stops the run."""
        if threading.current_thread() is not threading.main_thread():
            return
        current = signal.getsignal(signal.SIGINT)
        if current in (signal.SIG_IGN, signal.SIG_DFL, None):
            self._saved_sigint = current
            signal.signal(signal.SIGINT, signal.default_int_handler)
