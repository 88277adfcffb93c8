"""The served supervisor through the official `openai` Python client: chat completions (plain and
streamed), a multi-turn thread, and the Responses API (plain, streamed, and the stream helper)."""

import uuid

import openai
import pytest

from conftest import MODEL, make_client


def test_models_lists_the_supervisor(client):
    ids = [m.id for m in client.models.list()]
    assert ids == [MODEL]


def test_chat_completion(client):
    completion = client.chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "total revenue by region"},
        ],
    )
    assert completion.object == "chat.completion"
    assert completion.model == MODEL
    choice = completion.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    for region in ("West", "East", "Central"):
        assert region in choice.message.content


def test_chat_completion_stream(client):
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "what is the hotel limit for travel"}],
        stream=True,
    )
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "$250" in text
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert len({c.id for c in chunks}) == 1


def test_multi_turn_thread_keeps_the_follow_up_with_sales(client):
    thread = {"custom_inputs": {"thread_id": f"py-{uuid.uuid4().hex}"}}
    first = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "revenue by region"}],
        extra_body=thread,
    )
    assert "Interpreted as: revenue by region" in first.choices[0].message.content
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL,
        messages=[{"role": "user", "content": "now only the top 3"}],
        extra_body=thread,
    )
    assert raw.headers["x-request-id"]
    follow_up = raw.parse()
    assert "Interpreted as: revenue by region, top 3" in follow_up.choices[0].message.content
    assert follow_up.model_extra["custom_outputs"]["agents"] == ["sales"]


def test_responses_create(client):
    response = client.responses.create(model=MODEL, input="what is the hotel limit for travel")
    assert response.object == "response"
    assert response.status == "completed"
    assert response.output[0].type == "message"
    assert response.output[0].content[0].type == "output_text"
    assert "$250" in response.output_text


def test_responses_create_streamed(client):
    stream = client.responses.create(model=MODEL, input="deal count by stage", stream=True)
    events = list(stream)
    types = [e.type for e in events]
    assert types[0] == "response.created"
    assert types[-1] == "response.completed"
    assert "response.output_item.done" in types
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = [e for e in events if e.type == "response.output_text.delta"]
    assert deltas and all(d.item_id == deltas[0].item_id for d in deltas)
    text = "".join(d.delta for d in deltas)
    assert "won" in text
    done = next(e for e in events if e.type == "response.output_item.done")
    assert done.item.content[0].text == text
    assert events[-1].response.output_text == text


def test_responses_stream_helper(client):
    with client.responses.stream(model=MODEL, input="what is the hotel limit for travel") as stream:
        for _ in stream:
            pass
        final = stream.get_final_response()
    assert final.status == "completed"
    assert "$250" in final.output_text


def test_responses_thread(client):
    thread = {"custom_inputs": {"thread_id": f"py-{uuid.uuid4().hex}"}}
    client.responses.create(model=MODEL, input="revenue by region", extra_body=thread)
    follow_up = client.responses.create(model=MODEL, input="now only the top 3", extra_body=thread)
    assert "Interpreted as: revenue by region, top 3" in follow_up.output_text


def test_errors_raise_the_matching_openai_exceptions(client):
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert e.value.body["code"] == "model_not_found"
    with pytest.raises(openai.AuthenticationError):
        make_client().chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "revenue by region"}]
        )
    with pytest.raises(openai.PermissionDeniedError) as e:
        make_client("alice@example.com").chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "show the audit log"}]
        )
    assert "audit" in e.value.message
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL, messages=[{"role": "assistant", "content": "hi"}])
    assert e.value.body["param"] == "messages"
