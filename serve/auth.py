"""Optional bearer-token auth, as a FastAPI dependency (constant-time comparison)."""

from __future__ import annotations

import hmac
from collections.abc import Callable

from fastapi import Request
from pydantic import SecretStr

from .errors import Unauthorized

__all__ = ["bearer_auth"]

BEARER_PREFIX = "bearer "


def bearer_auth(token: SecretStr | None) -> Callable[[Request], None]:
    """A dependency that raises `Unauthorized` unless the request carries `token`; a no-op if None."""
    expected = token.get_secret_value().encode() if token is not None else None

    def require_token(request: Request) -> None:
        if expected is None:
            return
        header = request.headers.get("authorization", "")
        if not header.lower().startswith(BEARER_PREFIX):
            raise Unauthorized()
        given = header[len(BEARER_PREFIX) :].strip().encode()
        if not hmac.compare_digest(given, expected):
            raise Unauthorized()

    return require_token
