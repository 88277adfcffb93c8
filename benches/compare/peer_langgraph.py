"""LangGraph peer: `langgraph-supervisor` with ReAct sub-agents, one tool each, handoff tools
carrying the agents' descriptions. One run: route (transfer_to_x), the sub-agent calls its tool,
the sub-agent answers, the supervisor answers: 4 model calls. Prints one JSON line."""
import asyncio
import time
import warnings

warnings.filterwarnings("ignore")
from langchain_core.tools import tool  # noqa: E402
from langchain_openai import ChatOpenAI  # noqa: E402
from langgraph.prebuilt import create_react_agent  # noqa: E402
from langgraph_supervisor import create_supervisor  # noqa: E402
from langgraph_supervisor.handoff import create_handoff_tool  # noqa: E402

import common  # noqa: E402

a = common.args()
model = ChatOpenAI(model="scripted", base_url=a.base, api_key="sk-scripted", max_retries=0, temperature=0)


@tool
def run_sql(query: str) -> str:
    """Run a read-only SQL query against the analytics warehouse."""
    return common.SQL_RESULT


@tool
def search_docs(query: str) -> str:
    """Search the knowledge base and return relevant passages."""
    return common.DOCS_RESULT


def build(n):
    agents, handoffs = [], []
    for i, spec in enumerate(common.AGENTS[:n]):
        tools = [search_docs] if i == 1 else [run_sql]
        agents.append(create_react_agent(model, tools=tools, name=spec["name"],
                                         prompt=f"You are {spec['name']}. {spec['description']}"))
        handoffs.append(create_handoff_tool(agent_name=spec["name"], description=spec["description"]))
    return create_supervisor(agents, model=model, tools=handoffs,
                             prompt="Route the user's request to the one agent that can answer it.").compile()


def ask(app, q):
    out = app.invoke({"messages": [{"role": "user", "content": q}]})
    assert out["messages"][-1].type == "ai" and out["messages"][-1].content, out["messages"][-1]


async def aask(app, q):
    out = await app.ainvoke({"messages": [{"role": "user", "content": q}]})
    assert out["messages"][-1].type == "ai" and out["messages"][-1].content, out["messages"][-1]


app = build(a.agents)
if a.agents > 2:
    common.reset(a.base)
    ask(app, common.QUERIES[0])
    common.report("langgraph-supervisor", routing_prompt_tokens=common.routing_tokens(a.base))
    raise SystemExit(0)

for i in range(4):  # warm-up
    ask(app, common.QUERIES[i % 2])
levels = []
for conc in (int(c) for c in a.concurrency.split(",")):
    common.reset(a.base)
    lat = []
    if conc == 1:
        t0 = time.perf_counter()
        for i in range(a.runs):
            lat.append(common.timed(lambda: ask(app, common.QUERIES[i % 2])))
        wall = time.perf_counter() - t0
    else:
        async def worker(ids):
            for i in ids:
                s = time.perf_counter()
                await aask(app, common.QUERIES[i % 2])
                lat.append(time.perf_counter() - s)

        async def main():
            await asyncio.gather(*(worker(range(k, a.runs, conc)) for k in range(conc)))
        t0 = time.perf_counter()
        asyncio.run(main())
        wall = time.perf_counter() - t0
    levels.append(common.level(conc, lat, wall, a.base))
common.report("langgraph-supervisor", levels)
