"""ASGI middleware that guards every route before any route code runs.

- `LimitRequestBody`: bodies over the limit get a 413 problem. A declared Content-Length over
  the limit is refused before a byte is read; a body streamed without one (chunked) is counted
  as it arrives and refused the moment it passes the limit, so nobody can make us buffer more.
  A larger `Allowance` applies to some paths, and only to requests whose headers qualify (the
  codec's 4 MiB, for an operator's credential): everyone else gets the 64 KiB before parsing.
- `PathCors`: CORS for one path prefix only (the codec server, which the Temporal UI calls from
  its own origin); the rest of the API answers no cross-origin browser requests.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import problem_response

MAX_BODY_BYTES = 64 * 1024


class BodyTooLarge(Exception):
    """Raised from `receive` once a streamed body passes the limit."""


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix.rstrip("/") + "/")


@dataclass(frozen=True)
class Allowance:
    """A larger body limit for requests to `paths` for which `qualifies(scope)` holds."""

    paths: Sequence[str]
    max_bytes: int
    qualifies: Callable[[Scope], bool]


class LimitRequestBody:
    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int = MAX_BODY_BYTES,
        allowances: Sequence[Allowance] = (),
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.allowances = list(allowances)

    def limit_for(self, scope: Scope) -> int:
        for allowance in self.allowances:
            if any(_under(scope["path"], p) for p in allowance.paths) and allowance.qualifies(
                scope
            ):
                return allowance.max_bytes
        return self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope)
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await self._refuse(scope, receive, send, limit)
            return

        received = 0
        exceeded = False
        started = False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded:
                return  # whatever the app makes of a cut-off body, our 413 answers instead
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except BodyTooLarge:
            pass
        except Exception:
            if not exceeded:
                raise
        if exceeded and not started:
            await self._refuse(scope, receive, send, limit)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        response = problem_response(
            None,
            413,
            "payload-too-large",
            "Content Too Large",
            f"request bodies are limited to {limit} bytes",
        )
        response.headers["Connection"] = "close"  # the rest of the body is never read
        await response(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isascii() and text.isdigit() else None
    return None


class PathCors:
    """Starlette's CORSMiddleware, for requests under `prefix` only.

    Preflight requests (OPTIONS with Access-Control-Request-Method) are answered here, before
    any authentication: browsers send them without credentials.
    """

    def __init__(
        self,
        app: ASGIApp,
        prefix: str,
        origins: Sequence[str],
        methods: Sequence[str] = ("POST",),
        headers: Sequence[str] = ("Authorization", "Content-Type", "X-Namespace"),
        credentials: bool = True,
    ) -> None:
        self.app = app
        self.prefix = prefix
        self.cors = CORSMiddleware(
            app,
            allow_origins=list(origins),
            allow_methods=list(methods),
            allow_headers=list(headers),
            allow_credentials=credentials,
            max_age=600,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _under(scope["path"], self.prefix):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)
