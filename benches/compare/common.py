"""Shared by the driver and the peer scripts of scripts/compare-peers: the questions, the
sub-agents' descriptions, the scripted server's counters, percentiles and peak RSS. Standard
library only."""
import argparse
import json
import pathlib
import resource
import time
import urllib.request

HERE = pathlib.Path(__file__).resolve().parent

# Alternating: one routed to the SQL agent, one to the documents agent.
QUERIES = [
    "What was total revenue by region last quarter? Use SQL.",
    "What does our travel policy say about hotel upgrades?",
]

# The same sub-agent names and descriptions for every runtime (the first two are the scenario's).
AGENTS = json.loads((HERE / "agents.json").read_text())

SQL_RESULT = 'rows: [("EMEA", 42)]'
DOCS_RESULT = "passage: hotel upgrades need manager approval"


def args():
    p = argparse.ArgumentParser()
    p.add_argument("--base", required=True, help="the scripted server's API root, with /v1")
    p.add_argument("--runs", type=int, default=200, help="runs per concurrency level")
    p.add_argument("--concurrency", default="1,32", help="comma-separated levels")
    p.add_argument("--agents", type=int, default=2,
                   help="sub-agents; above 2, make one run and report the routing prompt's tokens")
    return p.parse_args()


def _root(base):
    return base.rsplit("/v1", 1)[0]


def stats(base):
    with urllib.request.urlopen(_root(base) + "/stats") as r:
        return json.load(r)


def reset(base):
    req = urllib.request.Request(_root(base) + "/reset", data=b"{}", method="POST")
    urllib.request.urlopen(req).read()


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def level(concurrency, latencies_s, wall_s, base):
    """One concurrency level's figures, with the scripted server's counters since the reset."""
    st = stats(base)
    lat = sorted(x * 1000 for x in latencies_s)
    n = len(lat)
    return {
        "concurrency": concurrency, "runs": n, "wall_s": wall_s,
        "runs_per_s": n / wall_s, "mean_ms": sum(lat) / n,
        "p95_ms": lat[max(0, -(-n * 95 // 100) - 1)],
        "llm_calls": st["calls"], "llm_time_s": st["server_time_s"],
    }


def report(runtime, levels=None, routing_prompt_tokens=None):
    print(json.dumps({"runtime": runtime, "levels": levels or [],
                      "routing_prompt_tokens": routing_prompt_tokens,
                      "peak_rss_mb": peak_rss_mb()}), flush=True)


def routing_tokens(base):
    """Prompt tokens of the first call since the reset: the routing call."""
    prompts = stats(base)["prompts"]
    return prompts[0] if prompts else None


def timed(fn):
    s = time.perf_counter()
    fn()
    return time.perf_counter() - s
