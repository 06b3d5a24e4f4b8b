"""ExactPaths: the chat routes by one lookup, with the router's outcome for everything else."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI, Request
from fastapi.testclient import TestClient
from starlette.types import Message

from backend.api.routing import ExactPaths
from backend.main import create_app
from backend.tests.support import make_settings

seen: list[str] = []


def _app(*, exact: bool) -> FastAPI:
    """Docs routes first, then a nested router: the walk the table skips."""
    app = FastAPI()
    outer, inner = APIRouter(prefix="/a"), APIRouter(prefix="/a")

    @inner.post("/b", name="b")
    async def b(request: Request) -> dict[str, Any]:
        seen.append("b")
        return {"route": request.scope["route"].path, "url": str(request.url_for("b")),
                "params": request.path_params}

    @outer.get("/{item}")
    async def item(item: str) -> dict[str, str]:
        return {"item": item}

    app.include_router(outer)
    app.include_router(inner)
    if exact:
        app.router.middleware_stack = ExactPaths(app.router.middleware_stack, app.router,
                                                 inner.routes)
    return app


def test_a_listed_path_reaches_its_route_without_the_walk() -> None:
    seen.clear()
    exact = _app(exact=True)
    walked = _app(exact=False)
    assert isinstance(exact.router.middleware_stack, ExactPaths)
    answers = [TestClient(app).post("/a/b") for app in (exact, walked)]
    assert [a.json() for a in answers] == [
        {"route": "/a/b", "url": "http://testserver/a/b", "params": {}}
    ] * 2
    assert seen == ["b", "b"]


@pytest.mark.parametrize(("method", "path", "root_path"), [
    ("GET", "/a/b", ""),  # a listed path, another method: the router's 405
    ("POST", "/a/b/", ""),  # a slash more: the router's redirect
    ("GET", "/a/x", ""),  # a path not listed
    ("POST", "/nowhere", ""),  # the router's 404
    ("POST", "/a/b", "/portal"),  # mounted under a root path: the router decides
])
def test_anything_else_gets_the_routers_own_answer(method: str, path: str, root_path: str) -> None:
    answers = [
        TestClient(_app(exact=flag), root_path=root_path, follow_redirects=False)
        .request(method, path)
        for flag in (True, False)
    ]
    assert answers[0].status_code == answers[1].status_code
    assert answers[0].content == answers[1].content
    assert answers[0].headers.get("allow") == answers[1].headers.get("allow")
    assert answers[0].headers.get("location") == answers[1].headers.get("location")


def test_a_path_with_parameters_is_refused() -> None:
    router = APIRouter()

    @router.get("/x/{y}")
    async def x(y: str) -> str:
        return y

    with pytest.raises(ValueError, match="not a fixed path"):
        ExactPaths(FastAPI(), object(), router.routes)


def test_the_portal_lists_its_chat_routes_and_they_are_the_routers_choice(
    tmp_path: Path,
) -> None:
    """The table holds the three chat paths, and for each the router's own walk selects the
    very route the table sends to (checked by running the walk on the same scope)."""
    app = create_app(make_settings(tmp_path))
    table = app.router.middleware_stack
    assert isinstance(table, ExactPaths)
    assert set(table.table) == {"/chat/send", "/chat/stream", "/v1/chat/completions"}

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        pass

    for path, (route, _) in table.table.items():
        scope: dict[str, Any] = {
            "type": "http", "method": "POST", "path": path, "root_path": "", "headers": [],
            "query_string": b"", "app": app, "state": {},
        }
        # No lifespan ran: the handler fails on the missing services, after the walk chose.
        with pytest.raises(AttributeError, match="services"):
            asyncio.run(app.router.app(scope, receive, send))
        assert scope["route"] is route


@pytest.mark.parametrize(("path", "body"), [
    ("/chat/send", b'{"specialist_id": "no-such-one", "message": "hi"}'),  # PortalError: 404
    ("/chat/send", b'{"message": ""}'),  # validation: 422
    ("/chat/stream", b"{not json"),  # unparseable: 422 json_invalid
    ("/v1/chat/completions", b'{"model": "no-such-one", "messages": []}'),  # OpenAI's shape
])
def test_a_lean_route_without_fastapis_wrapper_answers_as_it_did_with_it(
    tmp_path: Path, path: str, body: bytes,
) -> None:
    """The chat routes skip FastAPI's per-request wrapper (its exit stacks and its own
    exception layer); their errors must still come out exactly as through it: the same
    status, body and headers, from the same handlers, one middleware layer up."""
    answers = []
    for direct in (True, False):
        (tmp_path / str(direct)).mkdir()
        app = create_app(make_settings(tmp_path / str(direct)))
        table = app.router.middleware_stack
        assert isinstance(table, ExactPaths)
        route, wrapped = table.table[path]
        assert wrapped is not route.app  # the portal's chat routes are lean
        if not direct:
            table.table = {p: (r, r.app) for p, (r, _) in table.table.items()}
        with TestClient(app) as client:
            answers.append(client.post(path, content=body,
                                       headers={"content-type": "application/json"}))
    ours, fastapis = answers
    assert ours.status_code == fastapis.status_code >= 400
    assert sorted(ours.headers) == sorted(fastapis.headers)
    assert ours.headers["x-ratelimit-limit"] == fastapis.headers["x-ratelimit-limit"]
    first, second = ours.json(), fastapis.json()
    for answer in (first, second):  # each request's own id
        answer.pop("request_id", None)
        if isinstance(answer.get("error"), dict):
            answer["error"].pop("request_id", None)
    assert first == second
