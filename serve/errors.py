"""The HTTP layer's errors and the one table mapping every domain error to a status code.

    WFVAEError (model.errors)          base of every error the project raises on purpose
    ├── VideoDecodeError               400 the video cannot be read, decoded or sampled
    ├── InputShapeError                422 a tensor of the wrong rank, size or values
    ├── ConfigError                    503 the replica's model config cannot do what it is set to
    ├── CheckpointError                503 the replica has no usable model
    └── RequestError                   base of the errors below, each with its own status
        ├── Unauthorized               401 missing or wrong bearer token
        ├── PayloadTooLarge            413 body or object over `max_body_bytes`
        ├── UnsupportedMediaType       415 a content type the route does not read
        ├── MalformedInput             400 bytes that do not parse as the format they claim
        ├── URIBodiesOff               403 a URI body where `allowed_uri_prefixes` is empty
        ├── ObjectUnavailable          404 a URI outside the allowed prefixes, or no object the
        │                                  service can read there (one answer for both)
        ├── BodyTimeout                408 no body bytes for `body_idle_timeout_s`
        ├── ClientGone                 400 the client closed the connection mid-body (unread)
        ├── LimitExceeded              422 frames, resolution, clips or latent size over a limit
        ├── Overloaded                 503 every request slot of the replica is taken (Retry-After)
        ├── StorageTimeout             504 object storage did not answer in `storage_timeout_s`
        └── RequestTimeout             504 the work took longer than `request_timeout_s`

A FastAPI or pydantic validation error is 422. Anything else is a bug: 500, logged with its traceback.

Untrusted bytes and text (bodies, latents, the clip settings applied to a client's video) are
parsed inside `refusing(...)`: the one rule that turns what a parser raises on bad input, caught
by category (`CLIENT_INPUT_ERRORS`), into a 4xx naming the input and the parser's complaint.
Every error answer is JSON `{"error": <class name>, "detail": <message>}`, plus `"reason"` (the
pipeline's short tag, e.g. `unreadable`, `too_short`) for a video that cannot be used.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from model.errors import CheckpointError, ConfigError, InputShapeError, VideoDecodeError, WFVAEError
from model.media import error_reason

__all__ = [
    "BodyTimeout",
    "ClientGone",
    "LimitExceeded",
    "MalformedInput",
    "ObjectUnavailable",
    "Overloaded",
    "PayloadTooLarge",
    "RequestError",
    "RequestTimeout",
    "StorageTimeout",
    "URIBodiesOff",
    "Unauthorized",
    "UnsupportedMediaType",
    "CLIENT_INPUT_ERRORS",
    "install_error_handlers",
    "refusing",
    "status_for",
]

logger = logging.getLogger(__name__)


class RequestError(WFVAEError):
    """A request the service refuses; `status` is its HTTP code."""

    status = 400


class Unauthorized(RequestError):
    status = 401

    def __init__(self) -> None:
        super().__init__("missing or invalid bearer token (send 'Authorization: Bearer <token>')")


class PayloadTooLarge(RequestError):
    status = 413

    def __init__(self, what: str, size: int | None, limit: int) -> None:
        seen = f"{size} bytes" if size is not None else "more"
        super().__init__(f"{what} is {seen}; the limit is {limit} bytes")


class UnsupportedMediaType(RequestError):
    status = 415

    def __init__(self, content_type: str, accepted: list[str]) -> None:
        super().__init__(
            f"content type {content_type or '(none)'!r} is not accepted here; send one of: "
            + ", ".join(accepted)
        )


class MalformedInput(RequestError):
    status = 400


class URIBodiesOff(RequestError):
    status = 403

    def __init__(self) -> None:
        super().__init__(
            "this service reads no URIs (its allowed_uri_prefixes is empty); upload the video bytes"
        )


class ObjectUnavailable(RequestError):
    """Outside the allowed prefixes, missing or unreadable: one message, no storage details."""

    status = 404
    SHOWN_URI_CHARS = 200

    def __init__(self, uri: str) -> None:
        shown = uri[: self.SHOWN_URI_CHARS] + ("..." if len(uri) > self.SHOWN_URI_CHARS else "")
        super().__init__(
            f"no object this service may read at {shown!r}; URIs must start with one of the "
            "allowed_uri_prefixes listed by GET /v1/model"
        )


class BodyTimeout(RequestError):
    status = 408

    def __init__(self, seconds: float) -> None:
        super().__init__(f"no request body bytes arrived for {seconds:g} s; send the body at once")


class ClientGone(RequestError):
    status = 400

    def __init__(self) -> None:
        super().__init__("the client closed the connection before sending the whole body")


class LimitExceeded(RequestError):
    status = 422


class Overloaded(RequestError):
    """Every slot taken: refused at once, with `Retry-After`, instead of joining a queue."""

    status = 503

    def __init__(self, slots: int, retry_after_s: int) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(
            f"all {slots} request slots of this replica are taken; retry in {retry_after_s} s"
        )


class StorageTimeout(RequestError):
    status = 504

    def __init__(self, seconds: float) -> None:
        super().__init__(f"object storage did not hand over the object within {seconds:g} s")


class RequestTimeout(RequestError):
    status = 504

    def __init__(self, seconds: float) -> None:
        super().__init__(f"request took longer than {seconds:g} s and was abandoned")


# What a parser raises when the input, not the code, is wrong, by category: a value of the wrong
# form (ValueError, with UnicodeError and json's JSONDecodeError), arithmetic past a type's range
# (ArithmeticError: a 400-digit integer to float, a frame rate of 1e-308), a missing key or index
# (LookupError), a value of the wrong type (TypeError), nesting deeper than the interpreter's
# stack (RecursionError), bytes that end early (EOFError). MemoryError is not among them: the
# limits are checked before anything is allocated, so running out of memory stays a bug.
CLIENT_INPUT_ERRORS: tuple[type[Exception], ...] = (
    ValueError,
    ArithmeticError,
    LookupError,
    TypeError,
    RecursionError,
    EOFError,
)
MAX_REASON_CHARS = 300


@contextmanager
def refusing(what: str, refusal: type[RequestError] = MalformedInput) -> Iterator[None]:
    """Parse untrusted input inside this block: an error of `CLIENT_INPUT_ERRORS` becomes
    `refusal` ("<what>: <ErrorType>: <its first line>"); the project's own errors, which already
    say what is wrong, and pydantic's (422) pass through unchanged."""
    try:
        yield
    except (WFVAEError, ValidationError):
        raise
    except CLIENT_INPUT_ERRORS as error:
        reason = (str(error).strip().splitlines() or [""])[0][:MAX_REASON_CHARS]
        raise refusal(f"{what}: {type(error).__name__}: {reason}") from error


# Order matters: the first class the error is an instance of decides.
_STATUS_BY_ERROR: tuple[tuple[type[BaseException], int], ...] = (
    (VideoDecodeError, 400),
    (InputShapeError, 422),
    (ConfigError, 503),  # only the service's own settings reach the model config
    (CheckpointError, 503),
)


def status_for(error: BaseException) -> int:
    """The HTTP status of a domain error (500 for anything not refused on purpose)."""
    if isinstance(error, RequestError):
        return error.status
    for kind, status in _STATUS_BY_ERROR:
        if isinstance(error, kind):
            return status
    return 422 if isinstance(error, WFVAEError) else 500


def _error_response(error: BaseException) -> JSONResponse:
    """The JSON answer for `error`; 401 also names the auth scheme."""
    status = status_for(error)
    headers: dict[str, str] | None = None
    if status == 401:
        headers = {"WWW-Authenticate": "Bearer"}
    elif isinstance(error, Overloaded):
        headers = {"Retry-After": str(error.retry_after_s)}
    body: dict[str, str] = {"error": type(error).__name__, "detail": str(error)}
    if isinstance(error, VideoDecodeError):  # its message is terse; say which input it is about
        body["detail"] = f"the video cannot be used: {error}"
        body["reason"] = error_reason(error)
    return JSONResponse(body, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Route every domain error through `status_for`; validation errors keep FastAPI's 422 body."""

    async def on_domain_error(request: Request, error: Exception) -> JSONResponse:
        status = status_for(error)
        log = logger.error if status >= 500 else logger.info
        log(
            "%s %s -> %d %s: %s",
            request.method,
            request.url.path,
            status,
            type(error).__name__,
            error,
        )
        return _error_response(error)

    async def on_validation_error(request: Request, error: Exception) -> JSONResponse:
        errors = (
            error.errors() if isinstance(error, RequestValidationError | ValidationError) else []
        )
        detail = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in errors
        ]
        logger.info("%s %s -> 422 validation: %s", request.method, request.url.path, detail)
        return JSONResponse({"error": "ValidationError", "detail": detail}, status_code=422)

    async def on_bug(request: Request, error: Exception) -> JSONResponse:
        logger.exception("%s %s -> 500", request.method, request.url.path, exc_info=error)
        return JSONResponse(
            {"error": "InternalError", "detail": "internal error; see the replica's log"},
            status_code=500,
        )

    app.add_exception_handler(WFVAEError, on_domain_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    # Settings built inside a handler (e.g. model.media's ClipSettings) validate with pydantic too.
    app.add_exception_handler(ValidationError, on_validation_error)
    app.add_exception_handler(Exception, on_bug)
