"""Starlette's own errors (an unknown path, a wrong method, a bug) as our JSON errors,
so every error a client sees has the body and headers of :mod:`.responses`."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from ..errors import ImgproxyError, MethodNotAllowed, NotFound
from .logs import note_error
from .responses import error_headers

log = logging.getLogger("imgproxy")

Handler = Callable[[Request, Exception], Awaitable[Response]]


def error_response(request: Request, exc: ImgproxyError) -> Response:
    note_error(request.scope, exc.error)
    body = json.dumps(exc.body()).encode()
    headers = {name.decode(): value.decode() for name, value in error_headers(exc, len(body))}
    return Response(b"" if request.method == "HEAD" else body, status_code=exc.status, headers=headers)


def exception_handlers(not_found_max_age: int) -> Mapping[Any, Handler]:
    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        error: ImgproxyError
        if exc.status_code == 404:
            error = NotFound("no such path")
            error.max_age = not_found_max_age
        elif exc.status_code == 405:
            error = MethodNotAllowed("only GET and HEAD are allowed")
        else:
            error = ImgproxyError(exc.detail)
            error.status = exc.status_code
        return error_response(request, error)

    async def bug(request: Request, exc: Exception) -> Response:
        # Starlette logs it and re-raises after this answer; say which category it is.
        log.error("unhandled error (category: bug) for %s: %r", request.url.path, exc)
        return error_response(request, ImgproxyError("internal error"))

    return {HTTPException: http_error, Exception: bug}
