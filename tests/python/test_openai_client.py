"""The served supervisor through the official `openai` Python client: chat completions (plain and
streamed), multi-turn conversations (a thread, history sent by the client, stored responses), and
the Responses API (plain, streamed, and the stream helper). And through MLflow: a returned trace
loaded with `Trace.from_dict`, and the server queried as a Databricks serving endpoint with
`mlflow.deployments`."""

import os
import uuid

import openai
import pytest
import requests
from mlflow.deployments import get_deploy_client
from mlflow.entities import Trace

from conftest import MODEL, make_client, token_for


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


def test_multi_turn_history_in_messages_keeps_the_follow_up_with_sales(client):
    """How the client does multi-turn by itself: the whole history in `messages`, no thread id."""
    messages = [{"role": "user", "content": "revenue by rep"}]
    first = client.chat.completions.create(model=MODEL, messages=messages)
    messages.append({"role": "assistant", "content": first.choices[0].message.content})
    messages.append({"role": "user", "content": "now only the top 3"})
    follow_up = client.chat.completions.create(model=MODEL, messages=messages)
    text = follow_up.choices[0].message.content
    assert "Interpreted as: revenue by rep, top 3" in text
    assert follow_up.model_extra["custom_outputs"]["agents"] == ["sales"]
    rows = [line for line in text.splitlines() if line.startswith("|")]
    assert len(rows) == 2 + 3, text


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


def test_responses_history_in_input_items(client):
    """openai-agents' `to_input_list()` style: the earlier turns as input items, no thread id."""
    first = client.responses.create(model=MODEL, input="revenue by rep", store=False)
    items = [{"role": "user", "content": "revenue by rep"}]
    items += [item.model_dump(exclude_none=True) for item in first.output]
    items.append({"role": "user", "content": "now only the top 3"})
    follow_up = client.responses.create(model=MODEL, input=items, store=False)
    assert "Interpreted as: revenue by rep, top 3" in follow_up.output_text


def test_stored_responses_chain_retrieve_and_delete(client):
    first = client.responses.create(model=MODEL, input="revenue by rep", instructions="Be brief.")
    assert first.instructions == "Be brief."
    follow_up = client.responses.create(
        model=MODEL, input="now only the top 3", previous_response_id=first.id
    )
    assert follow_up.previous_response_id == first.id
    assert "Interpreted as: revenue by rep, top 3" in follow_up.output_text
    assert client.responses.retrieve(first.id).output_text == first.output_text
    client.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(first.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model=MODEL, input="again", previous_response_id=first.id)


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


def test_a_streamed_denial_raises_permission_denied_before_any_event():
    alice = make_client("alice@example.com")
    with pytest.raises(openai.PermissionDeniedError) as e:
        alice.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "show the audit log"}], stream=True
        )
    assert "audit" in e.value.message
    with pytest.raises(openai.PermissionDeniedError):
        alice.responses.create(model=MODEL, input="show the audit log", stream=True)


def test_unsupported_parameters_raise_bad_request_naming_them(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "revenue by region"}], n=2
        )
    assert (e.value.body["code"], e.value.body["param"]) == ("unsupported_parameter", "n")
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "revenue by region"}],
            response_format={"type": "json_object"},
        )
    assert (e.value.body["code"], e.value.body["param"]) == ("unsupported_parameter", "response_format")
    # Sampling parameters are accepted (sub-agents ignore them) and echoed by Responses.
    response = client.responses.create(
        model=MODEL, input="revenue by region", temperature=0.2, top_p=0.5, max_output_tokens=64
    )
    assert (response.temperature, response.top_p, response.max_output_tokens) == (0.2, 0.5, 64)
    assert response.usage.input_tokens_details.cache_write_tokens == 0


def test_a_returned_trace_loads_with_mlflow_trace_from_dict(client):
    raw = client.responses.with_raw_response.create(
        model=MODEL,
        input="revenue by region",
        extra_body={"databricks_options": {"return_trace": True}},
    )
    body = raw.http_response.json()
    custom = body["custom_outputs"]
    as_sent = body["databricks_output"]["trace"]
    trace = Trace.from_dict(as_sent)

    # MLflow's V3 trace info: `tr-` and the OTel trace id; our request id as the client's.
    assert trace.info.trace_id == f"tr-{custom['trace_id']}"
    assert trace.info.client_request_id == custom["request_id"] == raw.headers["x-request-id"]
    assert trace.info.state.value == "OK"
    assert trace.info.trace_metadata["mlflow.trace.user"] == "carol@example.com"
    assert trace.info.request_time > 0 and trace.info.execution_duration >= 0

    spans = trace.data.spans
    assert len(spans) == len(as_sent["data"]["spans"]) >= 3
    # MLflow reads ids as base64 first; hex ids would load too, misread as 12-byte span ids.
    assert all(len(s.span_id) == 16 for s in spans)
    by_id = {s.span_id: s for s in spans}
    # One root, the supervisor, and every other span's parent is in the trace.
    roots = [s for s in spans if s.parent_id is None]
    assert [r.name for r in roots] == ["invoke_agent switchboard"]
    root = roots[0]
    assert all(s.parent_id in by_id for s in spans if s is not root)
    sales = next(s for s in spans if s.name == "invoke_agent sales")
    assert sales.parent_id == root.span_id
    assert sales.span_type == root.span_type == "AGENT"
    assert any(by_id[s.parent_id] is sales for s in spans if s.parent_id)
    # Attributes decode to their values: every span is of this trace and this request.
    assert all(s.trace_id == trace.info.trace_id for s in spans)
    assert all(s.get_attribute("switchboard.request_id") == custom["request_id"] for s in spans)
    assert root.inputs == {"question": "revenue by region"}


@pytest.fixture
def databricks_env(monkeypatch):
    """The Databricks SDK's environment pointed at the server, and nothing else it could read."""
    monkeypatch.setenv("DATABRICKS_HOST", os.environ["SWITCHBOARD_BASE_URL"].removesuffix("/v1"))
    monkeypatch.setenv("DATABRICKS_TOKEN", token_for("carol@example.com"))
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", os.devnull)
    for name in ("DATABRICKS_CONFIG_PROFILE", "DATABRICKS_CLIENT_ID", "DATABRICKS_CLIENT_SECRET"):
        monkeypatch.delenv(name, raising=False)


def test_mlflow_deployments_queries_the_server_as_a_serving_endpoint(databricks_env):
    deploy = get_deploy_client("databricks")
    question = {"input": [{"role": "user", "content": "revenue by region"}]}
    response = deploy.predict(endpoint=MODEL, inputs=question)
    assert response["object"] == "response"
    answer = response["output"][0]["content"][0]["text"]
    assert "West" in answer
    assert response["custom_outputs"]["agents"] == ["sales"]

    chunks = list(deploy.predict_stream(endpoint=MODEL, inputs=question))
    assert chunks[0]["type"] == "response.created" and chunks[-1]["type"] == "response.completed"
    deltas = "".join(c["delta"] for c in chunks if c["type"] == "response.output_text.delta")
    assert deltas == chunks[-1]["response"]["output"][0]["content"][0]["text"]
    assert "West" in deltas

    with pytest.raises(requests.HTTPError) as e:
        deploy.predict(endpoint="no-such-endpoint", inputs=question)
    assert e.value.response.status_code == 404

