"""Agent frameworks, unmodified, against the served supervisor: openai-agents (which speaks the
Responses API) and LangChain's `ChatOpenAI` (chat completions). Each does multi-turn its own way —
history in the request, a client-side session, a stored response chain — and each follow-up
("now only the top 3") must answer with exactly 3 of the reps the first answer listed.
"""

import asyncio
import os
import uuid

import openai
import pytest
from agents import (
    Agent,
    OpenAIResponsesModel,
    Runner,
    SQLiteSession,
    set_tracing_disabled,
)
from langchain_core.messages import AIMessage, HumanMessage
from langchain_openai import ChatOpenAI

from conftest import MODEL, token_for

# Agents tracing exports to OpenAI's servers by default; these tests never leave the machine.
set_tracing_disabled(True)

USER = "carol@example.com"


def rep_rows(text):
    """The rep names in the answer's Markdown table (its first column, header and rule skipped)."""
    rows = [line for line in text.splitlines() if line.startswith("|")]
    assert len(rows) >= 3, f"no table in the answer:\n{text}"
    return [row.strip("|").split("|")[0].strip() for row in rows[2:]]


def check_top_3(first_text, follow_up_text):
    """The follow-up kept the first question's context: the first answer's three leading reps (it
    is ordered by revenue), not a fresh question or "I could not match…"."""
    first = rep_rows(first_text)
    assert len(first) > 3, first_text
    assert "Interpreted as: revenue by rep, top 3" in follow_up_text, follow_up_text
    assert rep_rows(follow_up_text) == first[:3], follow_up_text


# --- openai-agents -------------------------------------------------------------------------------


def agent():
    """An `Agent` on the server's model through the Responses API, with the caller's token as key."""
    client = openai.AsyncOpenAI(
        base_url=os.environ["SWITCHBOARD_BASE_URL"], api_key=token_for(USER), max_retries=0, timeout=30
    )
    return Agent(
        name="analyst",
        instructions="Answer questions about the sales data.",
        model=OpenAIResponsesModel(model=MODEL, openai_client=client),
    )


def test_agents_runner_multi_turn_with_to_input_list():
    async def run():
        a = agent()
        first = await Runner.run(a, "revenue by rep")
        follow_up = await Runner.run(
            a, first.to_input_list() + [{"role": "user", "content": "now only the top 3"}]
        )
        return first, follow_up

    first, follow_up = asyncio.run(run())
    check_top_3(first.final_output, follow_up.final_output)


@pytest.mark.parametrize("db", ["memory", "file"])
def test_agents_runner_multi_turn_with_sqlite_session(db, tmp_path):
    async def run():
        a = agent()
        path = ":memory:" if db == "memory" else tmp_path / "agents.sqlite"
        session = SQLiteSession(f"py-{uuid.uuid4().hex}", path)
        first = await Runner.run(a, "revenue by rep", session=session)
        follow_up = await Runner.run(a, "now only the top 3", session=session)
        items = await session.get_items()
        return first, follow_up, items

    first, follow_up, items = asyncio.run(run())
    check_top_3(first.final_output, follow_up.final_output)
    # Two questions and two answers, kept by the client, not the server.
    assert [i.get("role") for i in items] == ["user", "assistant", "user", "assistant"], items


def test_agents_runner_multi_turn_with_previous_response_id():
    async def run():
        a = agent()
        first = await Runner.run(a, "revenue by rep")
        assert first.last_response_id and first.last_response_id.startswith("resp_"), first.last_response_id
        follow_up = await Runner.run(
            a, "now only the top 3", previous_response_id=first.last_response_id
        )
        return first, follow_up

    first, follow_up = asyncio.run(run())
    check_top_3(first.final_output, follow_up.final_output)


def test_agents_run_streamed_multi_turn():
    async def streamed(a, input):
        result = Runner.run_streamed(a, input)
        deltas = []
        async for event in result.stream_events():
            if event.type == "raw_response_event" and event.data.type == "response.output_text.delta":
                deltas.append(event.data.delta)
        return result, "".join(deltas)

    async def run():
        a = agent()
        first, first_text = await streamed(a, "revenue by rep")
        follow_up, follow_up_text = await streamed(
            a, first.to_input_list() + [{"role": "user", "content": "now only the top 3"}]
        )
        return first, first_text, follow_up, follow_up_text

    first, first_text, follow_up, follow_up_text = asyncio.run(run())
    assert first_text == first.final_output
    assert follow_up_text == follow_up.final_output
    check_top_3(first_text, follow_up_text)


# --- LangChain -----------------------------------------------------------------------------------


def chat_model():
    return ChatOpenAI(
        base_url=os.environ["SWITCHBOARD_BASE_URL"],
        api_key=token_for(USER),
        model=MODEL,
        max_retries=0,
        timeout=30,
    )


def test_langchain_chat_openai_with_message_history():
    llm = chat_model()
    first = llm.invoke([HumanMessage("revenue by rep")])
    follow_up = llm.invoke(
        [HumanMessage("revenue by rep"), AIMessage(first.content), HumanMessage("now only the top 3")]
    )
    check_top_3(first.content, follow_up.content)


def test_langchain_chat_openai_stream_with_message_history():
    llm = chat_model()
    first = "".join(chunk.content for chunk in llm.stream([HumanMessage("revenue by rep")]))
    chunks = list(
        llm.stream([HumanMessage("revenue by rep"), AIMessage(first), HumanMessage("now only the top 3")])
    )
    assert len(chunks) > 1
    check_top_3(first, "".join(chunk.content for chunk in chunks))
