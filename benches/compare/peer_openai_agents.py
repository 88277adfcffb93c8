"""OpenAI Agents SDK peer: a supervisor agent with its sub-agents as tools (`ask_<name>`, carrying
the agents' descriptions), each sub-agent with one function tool; Chat Completions model, tracing
off. One run: route, the sub-agent calls its tool, the sub-agent answers, the supervisor answers:
4 model calls. Prints one JSON line."""
import asyncio
import time
import warnings

warnings.filterwarnings("ignore")
from agents import Agent, OpenAIChatCompletionsModel, Runner, function_tool, set_tracing_disabled  # noqa: E402
from openai import AsyncOpenAI  # noqa: E402

import common  # noqa: E402

a = common.args()
set_tracing_disabled(True)
model = OpenAIChatCompletionsModel(model="scripted",
                                   openai_client=AsyncOpenAI(base_url=a.base, api_key="sk-scripted", max_retries=0))


@function_tool
def run_sql(query: str) -> str:
    """Run a read-only SQL query against the analytics warehouse."""
    return common.SQL_RESULT


@function_tool
def search_docs(query: str) -> str:
    """Search the knowledge base and return relevant passages."""
    return common.DOCS_RESULT


def build(n):
    tools = []
    for i, spec in enumerate(common.AGENTS[:n]):
        sub = Agent(name=spec["name"], instructions=f"You are {spec['name']}. {spec['description']}",
                    tools=[search_docs] if i == 1 else [run_sql], model=model)
        tools.append(sub.as_tool(f"ask_{spec['name']}", spec["description"]))
    return Agent(name="supervisor", instructions="Route the user's request to the one agent that can answer it.",
                 model=model, tools=tools)


sup = build(a.agents)


async def ask(q):
    r = await Runner.run(sup, q)
    assert r.final_output, r


async def main():
    if a.agents > 2:
        common.reset(a.base)
        await ask(common.QUERIES[0])
        return None
    for i in range(4):  # warm-up
        await ask(common.QUERIES[i % 2])
    levels = []
    for conc in (int(c) for c in a.concurrency.split(",")):
        common.reset(a.base)
        lat = []

        async def worker(ids):
            for i in ids:
                s = time.perf_counter()
                await ask(common.QUERIES[i % 2])
                lat.append(time.perf_counter() - s)
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(range(k, a.runs, conc)) for k in range(conc)))
        levels.append(common.level(conc, lat, time.perf_counter() - t0, a.base))
    return levels


levels = asyncio.run(main())
if levels is None:
    common.report("openai-agents", routing_prompt_tokens=common.routing_tokens(a.base))
else:
    common.report("openai-agents", levels)
