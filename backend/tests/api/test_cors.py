"""The lean CORS path: requests without an Origin get exactly Starlette's Vary handling."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from backend.api.cors import LeanCORSMiddleware, with_vary_origin


@pytest.mark.parametrize("headers", [
    [],
    [(b"content-type", b"text/plain")],
    [(b"vary", b"Accept-Encoding")],
    [(b"vary", b"Accept-Encoding"), (b"x-a", b"1"), (b"vary", b"Cookie")],
])
def test_vary_is_joined_as_starlette_joins_it(headers: list[tuple[bytes, bytes]]) -> None:
    message = {"headers": list(headers)}
    starlette = MutableHeaders(scope=message)
    starlette["Vary"] = ", ".join([*starlette.getlist("Vary"), "Origin"])
    assert with_vary_origin(headers) == message["headers"]


def _client() -> TestClient:
    async def hello(request: object) -> PlainTextResponse:
        return PlainTextResponse("hi", headers={"Vary": "Accept-Encoding"})

    app = Starlette(routes=[Route("/", hello)], middleware=[Middleware(
        LeanCORSMiddleware, allow_origins=["https://portal.example"], allow_methods=["GET"],
    )])
    return TestClient(app)


def test_without_origin_only_vary_is_added() -> None:
    response = _client().get("/")
    assert response.headers["vary"] == "Accept-Encoding, Origin"
    assert "access-control-allow-origin" not in response.headers


def test_with_an_allowed_origin_starlette_answers() -> None:
    response = _client().get("/", headers={"Origin": "https://portal.example"})
    assert response.headers["access-control-allow-origin"] == "https://portal.example"
    assert response.headers["vary"] == "Accept-Encoding, Origin"
