"""Structured output and real usage through the official `openai` client's `.parse()` helpers,
against `switchboard serve` configured with an `[llm]`: the scripted model (the `scripted-llm`
binary, script in scripted_llm.toml). Started by tests/python_llm.rs; the offline server's 400
for the same requests is checked in test_openai_client.py.

Every wire response is also validated strictly (`model_validate(..., strict=True)`) against the
client's own types."""

import openai
import pytest
from openai.types.chat import ChatCompletion
from openai.types.responses import Response
from pydantic import BaseModel

from conftest import MODEL

QUESTION = "what is the hotel limit for travel"


class HotelLimit(BaseModel):
    hotel_limit_usd: float
    summary: str


EXPECTED = HotelLimit(hotel_limit_usd=250, summary="Hotels are capped at $250 per night.")


def test_chat_parse_returns_the_pydantic_object_with_real_usage(client):
    raw = client.chat.completions.with_raw_response.parse(
        model=MODEL,
        messages=[
            {"role": "system", "content": "Answer tersely."},
            {"role": "user", "content": QUESTION},
        ],
        response_format=HotelLimit,
    )
    ChatCompletion.model_validate(raw.http_response.json(), strict=True)
    completion = raw.parse()
    message = completion.choices[0].message
    assert message.parsed == EXPECTED
    assert message.refusal is None
    usage = completion.usage
    # Two model calls: the knowledge agent's answer, then formatting it for the schema.
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.prompt_tokens_details.cached_tokens == 0


def test_chat_stream_helper_parses_the_final_completion(client):
    with client.chat.completions.stream(
        model=MODEL,
        messages=[{"role": "user", "content": QUESTION}],
        response_format=HotelLimit,
        stream_options={"include_usage": True},
    ) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.parsed == EXPECTED
    assert final.usage.completion_tokens > 0


def test_responses_parse_returns_the_pydantic_object_and_echoes_instructions(client):
    raw = client.responses.with_raw_response.parse(
        model=MODEL,
        input=QUESTION,
        instructions="Answer tersely.",
        text_format=HotelLimit,
    )
    Response.model_validate(raw.http_response.json(), strict=True)
    response = raw.parse()
    assert response.output_parsed == EXPECTED
    assert response.instructions == "Answer tersely."
    assert response.text.format.type == "json_schema"
    assert response.text.format.name == "HotelLimit"
    usage = response.usage
    assert usage.input_tokens > 0 and usage.output_tokens > 0
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert usage.output_tokens_details.reasoning_tokens == 0


def test_responses_stream_helper_parses_the_final_response(client):
    with client.responses.stream(model=MODEL, input=QUESTION, text_format=HotelLimit) as stream:
        final = stream.get_final_response()
    assert final.output_parsed == EXPECTED
    assert final.usage.input_tokens > 0


def test_parameters_are_honoured_echoed_or_refused_by_name(client):
    # Sampling-like parameters are accepted, ignored by the sub-agents, and echoed.
    response = client.responses.create(
        model=MODEL,
        input=QUESTION,
        reasoning={"effort": "low"},
        truncation="auto",
        user="tester-1",
        service_tier="default",
        include=["message.output_text.logprobs"],
    )
    assert (response.reasoning.effort, response.truncation, response.user) == ("low", "auto", "tester-1")
    assert response.service_tier == "default"
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model=MODEL, input=QUESTION, background=True)
    assert (e.value.body["code"], e.value.body["param"]) == ("unsupported_parameter", "background")
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model=MODEL, input=QUESTION, extra_body={"temprature": 0.1})
    assert (e.value.body["code"], e.value.body["param"]) == ("unknown_parameter", "temprature")


def test_a_clarifying_question_is_a_refusal_the_parse_helpers_report(client):
    completion = client.chat.completions.parse(
        model=MODEL, messages=[{"role": "user", "content": "hello there"}], response_format=HotelLimit
    )
    message = completion.choices[0].message
    assert message.parsed is None
    assert "Did you mean" in message.refusal
    with client.responses.stream(model=MODEL, input="hello there", text_format=HotelLimit) as stream:
        events = list(stream)
        final = stream.get_final_response()
    assert any(e.type == "response.refusal.delta" for e in events)
    assert final.output_parsed is None
    assert final.output[0].content[0].type == "refusal"
    assert "Did you mean" in final.output[0].content[0].refusal
