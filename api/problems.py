"""Every error the API answers is an RFC 9457 problem document (`application/problem+json`).

Routes raise `ApiProblem`; request validation, unknown routes and wrong methods are turned into
problems by the handlers here; anything unexpected is logged with its traceback and answered
with a 500 problem that tells the client nothing about the internals.

Validation problems name each field (`items[0].sku`) and say what is wrong with it, but never
echo the value: a card number pasted into the token field must not come back in a response
(or go into a log).
"""

import logging
from collections.abc import Iterable, Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from models.http import BASE64, FieldError, ProblemDocument
from models.text import MULTI_LINE, ONE_LINE

log = logging.getLogger("ordermill.api")

PROBLEM_JSON = "application/problem+json"
PROBLEM_TYPES = "https://ordermill.example/problems/"
_FASTAPI_BODY_PARSE_ERROR = "There was an error parsing the body"
_REQUEST_PARTS = frozenset({"body", "query", "path", "header", "cookie"})
IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"


class ApiProblem(Exception):
    """Raise from a route to answer with a problem document."""

    def __init__(
        self,
        status: int,
        kind: str,
        detail: str,
        *,
        title: str | None = None,
        errors: Sequence[FieldError] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.kind = kind
        self.title = title or HTTPStatus(status).phrase
        self.detail = detail
        self.errors = list(errors) if errors is not None else None
        self.headers = dict(headers or {})


def not_found(what: str, detail: str) -> ApiProblem:
    return ApiProblem(404, f"{what}-not-found", detail, title=f"{what.capitalize()} not found")


def invalid(errors: Sequence[FieldError], detail: str | None = None) -> ApiProblem:
    return ApiProblem(
        422,
        "validation-error",
        detail or "; ".join(f"{e.field}: {e.reason}" for e in errors),
        title="Your request is not valid",
        errors=errors,
    )


def problem_response(
    request: Request | None,
    status: int,
    kind: str,
    title: str,
    detail: str,
    *,
    errors: Sequence[FieldError] | None = None,
    headers: Mapping[str, str] | None = None,
    extensions: Mapping[str, Any] | None = None,
) -> JSONResponse:
    """A problem document; `extensions` are extra members (RFC 9457 section 3.2)."""
    document = ProblemDocument(
        type="about:blank" if kind == "about:blank" else PROBLEM_TYPES + kind,
        title=title,
        status=status,
        detail=detail,
        instance=request.url.path if request is not None else None,
        errors=list(errors) if errors is not None else None,
    )
    return JSONResponse(
        {**document.model_dump(mode="json", exclude_none=True), **(extensions or {})},
        status_code=status,
        media_type=PROBLEM_JSON,
        headers=dict(headers or {}),
    )


def field_path(loc: Iterable[int | str]) -> str:
    """`("body", "items", 0, "sku")` -> `items[0].sku`; the request part is left out."""
    parts = list(loc)
    if parts and parts[0] in _REQUEST_PARTS:
        source = parts.pop(0)
        if not parts:
            return str(source)
    path = ""
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "body"


def field_errors(errors: Iterable[Mapping[str, Any]]) -> list[FieldError]:
    """Pydantic's errors as `{field, reason}`, without the offending input."""
    found: list[FieldError] = []
    for error in errors:
        loc = tuple(error.get("loc", ()))
        kind = error.get("type", "")
        reason = str(error.get("msg", "is not valid"))
        field = field_path(loc)
        if kind == "json_invalid":
            field, reason = "body", "is not valid JSON"
        elif loc == ("header", IDEMPOTENCY_KEY_HEADER) and kind != "missing":
            reason = "must be 1 to 255 printable ASCII characters"
        elif loc[-2:] == ("payment", "token") and kind == "string_pattern_mismatch":
            reason = "must be a card token from the payment provider (tok_...), never a card number"
        elif kind == "string_pattern_mismatch" and error.get("ctx", {}).get("pattern") in (
            ONE_LINE,
            MULTI_LINE,
        ):
            reason = (
                "must not contain control characters"
                if error["ctx"]["pattern"] == MULTI_LINE
                else "must be one line without control characters"
            )
        elif kind == "string_pattern_mismatch" and error.get("ctx", {}).get("pattern") == BASE64:
            reason = "must be base64"
        elif kind == "string_unicode":
            reason = "must be valid Unicode text"
        elif kind == "missing":
            reason = "is required"
        found.append(FieldError(field=field, reason=reason))
    return found


async def _api_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiProblem)
    return problem_response(
        request,
        exc.status,
        exc.kind,
        exc.title,
        exc.detail,
        errors=exc.errors,
        headers=exc.headers,
    )


def idempotency_key_required() -> ApiProblem:
    return ApiProblem(
        400,
        "idempotency-key-required",
        f"this request moves money: send an {IDEMPOTENCY_KEY_HEADER} header (a UUID is best), "
        "so that a retry can never do it twice",
        title="Idempotency key required",
    )


async def _validation_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    if any(
        tuple(e.get("loc", ())) == ("header", IDEMPOTENCY_KEY_HEADER) and e.get("type") == "missing"
        for e in errors
    ):
        return await _api_problem(request, idempotency_key_required())
    problem = invalid(field_errors(errors))
    return await _api_problem(request, problem)


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def allowed_methods(routes: Iterable[BaseRoute], scope: Scope) -> list[str]:
    """Every method some route serves at this path (Starlette names only the first route's)."""
    routes = list(routes)
    probe = {"type": "http", "path": scope["path"], "root_path": scope.get("root_path", "")}
    return [
        method
        for method in _METHODS
        if any(route.matches({**probe, "method": method})[0] is Match.FULL for route in routes)
    ]


async def _http_problem(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's own errors: unknown route (404), wrong method (405), and the like."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400 and exc.detail == _FASTAPI_BODY_PARSE_ERROR:
        # FastAPI's answer to a JSON body that is not even text (bad UTF-8): still malformed JSON.
        problem = invalid([FieldError(field="body", reason="is not valid JSON")])
        return await _api_problem(request, problem)
    phrase = HTTPStatus(exc.status_code).phrase
    detail = exc.detail if isinstance(exc.detail, str) else phrase
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        allow = allowed_methods(request.app.router.routes, request.scope)
        headers["Allow"] = ", ".join(allow)
        detail = f"{request.method} is not served here; this path serves {headers['Allow']}"
    return problem_response(
        request, exc.status_code, "about:blank", phrase, detail, headers=headers
    )


class CatchAllProblems:
    """ASGI middleware: an unhandled exception becomes a logged 500 problem, not a stack trace.

    Starlette's `Exception` handler would re-raise after answering; this one answers and stops.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise
            response = problem_response(
                None,
                500,
                "internal-error",
                "Internal Server Error",
                "Something went wrong on our side; it has been logged. Please retry later.",
            )
            await response(scope, receive, send)


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiProblem, _api_problem)
    app.add_exception_handler(RequestValidationError, _validation_problem)
    app.add_exception_handler(StarletteHTTPException, _http_problem)
    app.add_middleware(CatchAllProblems)
    document_problems(app)


_SCHEMA_REF = "#/components/schemas/"
_PROBLEM_CONTENT = {PROBLEM_JSON: {"schema": {"$ref": _SCHEMA_REF + "ProblemDocument"}}}
_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "string"}}}
_PROBLEM_HEADERS: dict[int, dict[str, Any]] = {503: _RETRY_AFTER}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries documenting problem answers (see `document_problems`)."""
    return {
        status: {
            "description": HTTPStatus(status).phrase,
            "content": _PROBLEM_CONTENT,
            **({"headers": _PROBLEM_HEADERS[status]} if status in _PROBLEM_HEADERS else {}),
        }
        for status in statuses
    }


def auth_responses(*, operator: bool = False) -> dict[int | str, dict[str, Any]]:
    """The answers of the API-key check: 401 with its challenge, and 403 for operator routes."""
    responses = problem_responses(401, *((403,) if operator else ()))
    responses[401]["headers"] = {
        "WWW-Authenticate": {
            "description": 'The challenge: `Bearer realm="ordermill"`',
            "schema": {"type": "string"},
        }
    }
    return responses


def document_problems(app: FastAPI) -> None:
    """Put the problem document's schema in the OpenAPI components the responses refer to."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        problem = ProblemDocument.model_json_schema(ref_template=_SCHEMA_REF + "{model}")
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.update(problem.pop("$defs", {}))
        components["ProblemDocument"] = problem
        # FastAPI's own 422 (`HTTPValidationError`, application/json) is never what we answer.
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                default = operation.get("responses", {}).get("422", {})
                if "HTTPValidationError" in str(default.get("content", "")):
                    operation["responses"]["422"] = problem_responses(422)[422]
        for unused in ("HTTPValidationError", "ValidationError"):
            components.pop(unused, None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
