"""One error type for everything a request can fail on.

Third-party exceptions (pyvips, botocore, httpx, OSError) are mapped to these
where they enter our code, so handlers only ever see ``ImgproxyError``::

    ImgproxyError                 status, public message, category
    ├── BadRequest           400  malformed URL, extra query parameters
    ├── Forbidden            403  missing or bad signature
    ├── NotFound             404  unknown preset, missing original
    ├── MethodNotAllowed     405  not GET or HEAD
    ├── Conflict             409  an upload to an id that holds other bytes
    ├── TooLarge             413  source over a byte/pixel/frame limit
    ├── Unsupported          415  source format we cannot read
    ├── Undecodable          422  original cannot be decoded
    ├── BadGateway           502  HTTP origin answered 5xx / garbage
    ├── Unavailable          503  store unreachable, queue full, worker died, folder unwritable
    ├── InsufficientStorage  507  an upload meets a full folder (spool or originals)
    └── GatewayTimeout       504  origin or render too slow
        └── RenderTimeout    504  a render that had its worker ran past its deadline
"""

from __future__ import annotations

from collections.abc import Mapping


class ImgproxyError(Exception):
    status = 500
    error = "internal"
    #: seconds for Cache-Control max-age on this error; None means no-store.
    max_age: int | None = None
    retry_after: int | None = None

    def __init__(self, detail: str, *, retry_after: int | None = None, internal: str = "",
                 **extra: str | int | float) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra
        #: what the decoder said, for the log only: it may name server paths
        #: (libvips names its temporary files), so it never reaches a client.
        self.internal = internal
        if retry_after is not None:
            self.retry_after = retry_after

    @classmethod
    def rebuilt(cls, detail: str, extra: Mapping[str, str | int | float]) -> ImgproxyError:
        """A fresh error from its parts (raising one instance twice chains tracebacks)."""
        error = cls(detail)
        error.extra = dict(extra)
        return error

    def body(self) -> dict[str, object]:
        return {"error": self.error, "detail": self.detail, **self.extra}


class BadRequest(ImgproxyError):
    status, error, max_age = 400, "bad_request", 60


class Forbidden(ImgproxyError):
    status, error, max_age = 403, "forbidden", None


class NotFound(ImgproxyError):
    status, error, max_age = 404, "not_found", 60


class MethodNotAllowed(ImgproxyError):
    status, error, max_age = 405, "method_not_allowed", None


class Conflict(ImgproxyError):
    status, error, max_age = 409, "conflict", None


class TooLarge(ImgproxyError):
    status, error, max_age = 413, "too_large", 3600


class Unsupported(ImgproxyError):
    status, error, max_age = 415, "unsupported_format", 3600


class Undecodable(ImgproxyError):
    status, error, max_age = 422, "undecodable", 3600


class BadGateway(ImgproxyError):
    status, error, max_age = 502, "bad_gateway", None


class Unavailable(ImgproxyError):
    status, error, max_age, retry_after = 503, "unavailable", None, 5


class InsufficientStorage(ImgproxyError):
    status, error, max_age = 507, "insufficient_storage", None


class GatewayTimeout(ImgproxyError):
    status, error, max_age = 504, "timeout", None


class RenderTimeout(GatewayTimeout):
    """The render itself ran out of time (not the wait for a worker): the input's cost."""
