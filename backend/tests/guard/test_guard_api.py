"""The guard end to end, through the real server and the fake OpenAI upstream, which
records every byte it is sent: no original value reaches it on any way in, the answer
comes back with the user's values, `block` sends nothing, and a failing guard refuses."""

from __future__ import annotations

import logging
import re
from typing import Any

import orjson
import pytest
from openai import AsyncOpenAI, BadRequestError
from websockets.asyncio.client import connect

from backend.guard.detect import Detector
from backend.tests.fakes.script import Script
from backend.tests.guard.conftest import IDS, Portal
from backend.tests.transports.conftest import answer, usage_rows, ws_url

IBAN = "DE89 3704 0044 0532 0130 00"
CARD = "4111-1111-1111-1111"
EMAIL = "Jane.Doe@example.com"
PHONE = "+44 20 7946 0958"
SSN = "123-45-6789"
SECRET = "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789"
VALUES = (IBAN, CARD, EMAIL, PHONE, SSN, SECRET)
MESSAGE = (
    f"Pay EUR 1,200.00 to {IBAN} or charge {CARD}; questions to {EMAIL} or {PHONE}. "
    f"SSN {SSN}, key {SECRET}. Invoice INV-2024-0042 of 2024-05-31."
)
# The history has the IBAN in another spacing: it must get the same placeholder.
HISTORY = [
    {"role": "user", "content": "Earlier I mentioned DE89370400440532013000."},
    {"role": "assistant", "content": "Noted."},
]
# The model refers to placeholders, split across chunks at awkward places.
CHUNKS = ["Paying [IB", "AN_1] now; ", "I will write to [EMAIL_", "1] and call [PH", "ONE_1]."]
# A value comes back as it was first written in the conversation (here: in the history).
RESTORED = f"Paying DE89370400440532013000 now; I will write to {EMAIL} and call {PHONE}."


def _squash(text: str) -> str:
    return re.sub(r"[^0-9a-z]", "", text.lower())


def assert_no_original_reached(portal: Portal) -> list[Any]:
    """Every request the fake got, checked for every value in any spacing or case."""
    sent = portal.fakes["openai"].requests
    for request in sent:
        wire = orjson.dumps(request.json).decode()
        for value in VALUES:
            assert _squash(value) not in _squash(wire), value
    return sent


def _body(name: str, **extra: Any) -> dict[str, Any]:
    return {"specialist_id": IDS[name], "message": MESSAGE,
            "conversation_history": HISTORY, **extra}


def _script(portal: Portal) -> None:
    portal.fakes["openai"].script = Script(chunks=list(CHUNKS))


async def test_send_masks_everything_on_the_way_out_and_restores_the_answer(
    guarded: Portal,
) -> None:
    _script(guarded)
    response = await guarded.client.post("/chat/send", json=_body("default"))
    assert response.status_code == 200, response.text
    assert response.json()["content"] == RESTORED
    (sent,) = assert_no_original_reached(guarded)
    messages = sent.json["messages"]
    assert messages[1]["content"] == "Earlier I mentioned [IBAN_1]."
    assert messages[-1]["content"] == (
        "Pay EUR 1,200.00 to [IBAN_1] or charge [CARD_1]; questions to [EMAIL_1] or "
        "[PHONE_1]. SSN [NATIONAL_ID_1], key [SECRET_1]. Invoice INV-2024-0042 of 2024-05-31."
    )
    system = messages[0]["content"]
    assert system.startswith("You are the guarded test specialist.") and "placeholder" in system
    (row,) = await usage_rows(guarded, 1)
    assert row["pii_action"] == "masked"
    assert orjson.loads(row["pii_counts"]) == {
        "card": 1, "email": 1, "iban": 1, "national_id": 1, "phone": 1, "secret": 1,
    }
    assert not any(_squash(v) in _squash(str(row)) for v in VALUES)


async def test_sse_stream_restores_placeholders_split_across_chunks(guarded: Portal) -> None:
    _script(guarded)
    contents = []
    async with guarded.client.stream("POST", "/chat/stream", json=_body("mask")) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("data:"):
                contents.append(orjson.loads(line[5:])["content"])
    assert "".join(contents) == RESTORED
    assert not any("[" in piece for piece in contents)  # no placeholder, not even a part
    assert len([c for c in contents if c]) >= 4  # streamed piece by piece, not buffered
    assert_no_original_reached(guarded)


async def test_websocket_masks_and_restores(guarded: Portal) -> None:
    _script(guarded)
    async with connect(ws_url(guarded)) as ws:
        await ws.send(orjson.dumps(_body("mask")).decode())
        chunks, final = await answer(ws)
    assert final["is_final"] is True
    assert "".join(c["content"] for c in chunks) == RESTORED
    assert_no_original_reached(guarded)


@pytest.mark.parametrize("stream", [False, True])
async def test_openai_compatible_api_masks_and_restores(guarded: Portal, stream: bool) -> None:
    _script(guarded)
    client = AsyncOpenAI(base_url=f"{guarded.url}/v1", api_key="any", max_retries=0)
    messages: list[Any] = [*HISTORY, {"role": "user", "content": MESSAGE}]
    if stream:
        pieces = []
        async for chunk in await client.chat.completions.create(
            model=IDS["mask"], messages=messages, stream=True
        ):
            if chunk.choices and chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)
        text = "".join(pieces)
    else:
        completion = await client.chat.completions.create(model=IDS["mask"], messages=messages)
        text = completion.choices[0].message.content or ""
    await client.close()
    assert text == RESTORED
    assert_no_original_reached(guarded)


async def test_block_refuses_with_the_types_and_sends_nothing(guarded: Portal) -> None:
    response = await guarded.client.post("/chat/send", json=_body("block"))
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "pii_detected"
    assert set(body["types"]) == {"card", "email", "iban", "national_id", "phone", "secret"}
    assert not any(_squash(v) in _squash(response.text) for v in VALUES)
    stream = await guarded.client.post("/chat/stream", json=_body("block"))
    assert stream.status_code == 422 and stream.json()["error"] == "pii_detected"
    async with connect(ws_url(guarded)) as ws:
        await ws.send(orjson.dumps(_body("block")).decode())
        _, error = await answer(ws)
    assert error["type"] == "error" and error["error"] == "pii_detected"
    assert error["status"] == 422
    client = AsyncOpenAI(base_url=f"{guarded.url}/v1", api_key="any", max_retries=0)
    with pytest.raises(BadRequestError) as raised:  # /v1 answers 400, as OpenAI would
        await client.chat.completions.create(
            model=IDS["block"], messages=[{"role": "user", "content": MESSAGE}]
        )
    await client.close()
    assert raised.value.code == "pii_detected"
    assert guarded.fakes["openai"].requests == []  # nothing went upstream, on any way in
    rows = await usage_rows(guarded, 4)
    assert len(rows) == 4
    for row in rows:
        assert row["pii_action"] == "blocked" and row["error_kind"] == "pii_detected"
        assert row["success"] is False and row["input_tokens"] == 0
        assert orjson.loads(row["pii_counts"])["iban"] == 1


async def test_a_clean_message_is_sent_as_written_and_the_prompt_untouched(
    guarded: Portal,
) -> None:
    message = "Invoice INV-2024-0042: EUR 4,462.50 due 2024-04-15, order PO 4500012345."
    response = await guarded.client.post(
        "/chat/send", json={"specialist_id": IDS["block"], "message": message}
    )
    assert response.status_code == 200
    (sent,) = guarded.fakes["openai"].requests
    assert sent.json["messages"] == [
        {"role": "system", "content": "You are the guarded test specialist."},
        {"role": "user", "content": message},
    ]
    (row,) = await usage_rows(guarded, 1)
    assert row["pii_action"] is None and row["pii_counts"] is None


async def test_restore_false_leaves_placeholders_and_off_sends_values(guarded: Portal) -> None:
    _script(guarded)
    kept = await guarded.client.post("/chat/send", json=_body("keep"))
    assert kept.json()["content"] == "".join(CHUNKS)
    assert_no_original_reached(guarded)
    off = await guarded.client.post("/chat/send", json=_body("off"))
    assert off.status_code == 200
    assert MESSAGE in orjson.dumps(guarded.fakes["openai"].requests[-1].json).decode()


async def test_types_limit_what_is_masked(guarded: Portal) -> None:
    await guarded.client.post("/chat/send", json=_body("email_only"))
    wire = orjson.dumps(guarded.fakes["openai"].requests[-1].json).decode()
    assert EMAIL not in wire and "[EMAIL_1]" in wire and IBAN in wire


async def test_a_failing_guard_refuses_the_request_and_sends_nothing(
    guarded: Portal, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(self: Detector, text: str, types: Any = ()) -> list[Any]:
        raise RuntimeError(f"detector bug on {text}")

    monkeypatch.setattr(Detector, "find", broken)
    with caplog.at_level(logging.INFO):
        send = await guarded.client.post("/chat/send", json=_body("mask"))
        stream = await guarded.client.post("/chat/stream", json=_body("default"))
        async with connect(ws_url(guarded)) as ws:
            await ws.send(orjson.dumps(_body("mask")).decode())
            _, error = await answer(ws)
        v1 = [
            await guarded.client.post("/v1/chat/completions", json={
                "model": IDS["mask"], "stream": streamed,
                "messages": [{"role": "user", "content": MESSAGE}],
            })
            for streamed in (False, True)
        ]
    for response in (send, stream):
        assert response.status_code == 503 and response.json()["error"] == "pii_guard_failed"
    assert error["error"] == "pii_guard_failed" and error["status"] == 503
    for response in v1:  # OpenAI's error shape, the same refusal
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "pii_guard_failed"
    assert guarded.fakes["openai"].requests == []
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "PII guard failed (RuntimeError)" in logged
    assert not any(_squash(v) in _squash(logged) for v in VALUES)


async def test_no_original_value_is_logged(
    guarded: Portal, caplog: pytest.LogCaptureFixture
) -> None:
    _script(guarded)
    with caplog.at_level(logging.DEBUG):
        await guarded.client.post("/chat/send", json=_body("mask"))
        await guarded.client.post("/chat/send", json=_body("block"))
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert not any(_squash(v) in _squash(logged) for v in VALUES)
