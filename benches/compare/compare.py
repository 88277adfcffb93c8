"""The driver of scripts/compare-peers: starts the scripted server, runs the scenario in every
runtime against it, and prints one table. Run through scripts/compare-peers, which installs the
peers and builds what this needs."""
import argparse
import datetime
import json
import os
import pathlib
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import common
from common import AGENTS, HERE, QUERIES

CONFIG_PORT = "127.0.0.1:18931"  # what the checked-in configuration names; rewritten per run
USER = "ana@example.com"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url, proc, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"compare-peers: {proc.args[0]} exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"compare-peers: {url} did not answer within {timeout} s")


def sb_config(dir, llm_port, n, agents_dir="agents"):
    """The scenario's Switchboard configuration with `n` agents from `agents_dir` (the first two
    are the scenario's; the others are made like the documents agent, with the shared
    descriptions). `agents-functions` holds them as function tools (`run_sql`, `search_docs`, which
    the embedded bench registers) instead of HTTP tools, as the peers' tools are functions."""
    agents = dir / "agents"
    agents.mkdir(parents=True)
    port = f"127.0.0.1:{llm_port}"
    (dir / "switchboard.toml").write_text((HERE / "switchboard.toml").read_text().replace(CONFIG_PORT, port))
    template = (HERE / agents_dir / "rag_agent.toml").read_text()
    for i, spec in enumerate(AGENTS[:n]):
        if i < 2:
            text = (HERE / agents_dir / f"{spec['name']}.toml").read_text()
        else:
            text = re.sub(r'(?m)^name = .*$', f'name = "{spec["name"]}"', template, count=1)
            text = re.sub(r'(?m)^description = .*$', lambda _: f"description = {json.dumps(spec['description'])}", text)
        (agents / f"{spec['name']}.toml").write_text(text.replace(CONFIG_PORT, port))
    return dir / "switchboard.toml"


def run_json(cmd, timeout, env=None):
    """Runs `cmd` and returns the last JSON line it prints."""
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
    if p.returncode != 0 or not lines:
        sys.stderr.write(p.stdout[-2000:] + p.stderr[-4000:])
        raise SystemExit(f"compare-peers: {' '.join(map(str, cmd[:3]))}… failed ({p.returncode})")
    return json.loads(lines[-1])


def http_json(url, body=None, token=None):
    req = urllib.request.Request(url, data=None if body is None else json.dumps(body).encode(),
                                 method="GET" if body is None else "POST")
    req.add_header("content-type", "application/json")
    if token:
        req.add_header("authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.load(r)


def cpu_s(pid):
    """CPU seconds process `pid` has used so far (user and system, all threads)."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def switches(pid):
    """Context switches of process `pid`'s live threads so far, voluntary or not."""
    n = 0
    for task in pathlib.Path(f"/proc/{pid}/task").iterdir():
        try:
            status = (task / "status").read_text()
        except OSError:
            continue  # the thread exited meanwhile
        n += sum(int(l.split()[1]) for l in status.splitlines()
                 if l.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")))
    return n


def with_cpu(cmd, timeout, processes, env=None):
    """Runs `cmd` like `run_json` and returns its JSON with `cpu_s` and `switches`: the CPU seconds
    and context switches each of `processes` (a name for each pid) used meanwhile."""
    before = {name: (cpu_s(pid), switches(pid)) for name, pid in processes.items()}
    result = run_json(cmd, timeout=timeout, env=env)
    result["cpu_s"] = {name: cpu_s(pid) - before[name][0] for name, pid in processes.items()}
    result["switches"] = {name: switches(pid) - before[name][1] for name, pid in processes.items()}
    return result


def vm_hwm_mb(pid):
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return None


class Served:
    """`switchboard serve` on a free port for `config`, with a token for the scenario's caller."""

    def __init__(self, bin_dir, config, log):
        self.url = f"http://127.0.0.1:{free_port()}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SWITCHBOARD_", "OTEL_", "RUST_LOG"))}
        self.proc = subprocess.Popen([bin_dir / "switchboard", "serve", "--addr", self.url[7:], "--config", config],
                                     stdout=log, stderr=log, env=env)
        wait_http(self.url + "/health", self.proc)
        self.token = subprocess.run([bin_dir / "switchboard", "token", "--as", USER, "--ttl", "2h", "--config", config],
                                    capture_output=True, text=True, check=True, env=env).stdout.strip()

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--short", action="store_true")
    p.add_argument("--profile", default="bench", help="the cargo profile Switchboard was built with")
    p.add_argument("--bin-dir", type=pathlib.Path, required=True)
    p.add_argument("--load", required=True, help="the load harness executable")
    p.add_argument("--embedded", required=True, help="the compare_embedded executable")
    a = p.parse_args()
    runs = 30 if a.short else 400            # per concurrency level, Python peers
    sb_runs = 200 if a.short else 4000       # Switchboard's runs are ~30x shorter: more for stable figures
    work = pathlib.Path(tempfile.mkdtemp(prefix="compare-peers-"))
    log = open(work / "servers.log", "w")

    llm_port = free_port()
    llm = subprocess.Popen([a.bin_dir / "scripted-llm", "--port", str(llm_port), "--script", HERE / "scripted-llm.toml"],
                           stdout=log, stderr=log)
    base = f"http://127.0.0.1:{llm_port}/v1"
    servers = []
    try:
        wait_http(base + "/models", llm)
        configs = {n: sb_config(work / f"agents{n}", llm_port, n) for n in (2, 5, 20)}
        function_configs = {n: sb_config(work / f"functions{n}", llm_port, n, "agents-functions") for n in (2, 5, 20)}
        results = {}
        python = sys.executable
        for name, script in (("langgraph-supervisor", "peer_langgraph.py"), ("openai-agents", "peer_openai_agents.py")):
            print(f"compare-peers: {name} …", file=sys.stderr, flush=True)
            cmd = [python, HERE / script, "--base", base]
            r = run_json(cmd + ["--runs", str(runs), "--concurrency", "1,32"], timeout=1800)
            r["tokens"] = {n: run_json(cmd + ["--agents", str(n)], timeout=300)["routing_prompt_tokens"] for n in (5, 20)}
            results[name] = r

        # What a model call costs its caller beyond the model's own work (the loopback exchange, a
        # client's and the server's HTTP): issue 12 took a direct call's time off each model call
        # to get at orchestration's own cost. Measured once, between the peers' runs and
        # Switchboard's, with the Rust client Switchboard's own calls resemble.
        print("compare-peers: direct calls to the scripted server …", file=sys.stderr, flush=True)
        direct = run_json([a.load, "--url", base.rsplit("/v1", 1)[0], "--question", QUERIES[0], "--json",
                           "--requests", str(sb_runs), "--concurrency", "1", "--llm", base, "--max-secs", "600"],
                          timeout=900, env=dict(os.environ, SWITCHBOARD_LOAD_TOKEN="unused"))

        print("compare-peers: switchboard served …", file=sys.stderr, flush=True)
        served = Served(a.bin_dir, configs[2], log)
        servers.append(served)
        env = dict(os.environ, SWITCHBOARD_LOAD_TOKEN=served.token)
        q = [arg for query in QUERIES for arg in ("--question", query)]
        harness = [a.load, "--url", served.url, *q, "--json", "--max-secs", "600"]
        run_json(harness + ["--requests", "50", "--concurrency", "4"], timeout=600, env=env)  # warm-up
        processes = {"switchboard": served.proc.pid, "model": llm.pid}
        levels = [with_cpu(harness + ["--requests", str(sb_runs), "--concurrency", str(c), "--llm", base],
                           900, processes, env) for c in (1, 32)]
        rss = vm_hwm_mb(served.proc.pid)
        served.stop()
        tokens = {}
        for n in (5, 20):
            s = Served(a.bin_dir, configs[n], log)
            servers.append(s)
            common.reset(base)
            http_json(s.url + "/v1/chat/completions",
                      {"model": "switchboard", "messages": [{"role": "user", "content": QUERIES[0]}]}, s.token)
            tokens[n] = common.routing_tokens(base)
            s.stop()
        results["switchboard served"] = {"levels": levels, "peak_rss_mb": rss, "tokens": tokens}

        for name, cfgs in (("switchboard embedded", configs), ("switchboard embedded, function tools", function_configs)):
            print(f"compare-peers: {name} …", file=sys.stderr, flush=True)
            results[name] = embedded(a.embedded, base, cfgs, sb_runs, llm.pid)
    finally:
        for s in servers:
            if s.proc.poll() is None:
                s.stop()
        llm.terminate()
        llm.wait(timeout=30)
    table(results, direct, runs, sb_runs, a.short, a.profile)
    shutil.rmtree(work, ignore_errors=True)


def embedded(executable, base, configs, sb_runs, llm_pid):
    """The scenario through the library in process, with the configurations `configs`."""
    emb = [executable, "--llm", base]
    # A process per level, so the scripted server's CPU time is each level's own.
    levels, rss = [], 0.0
    for c in (1, 32):
        r = with_cpu(emb + ["--config", configs[2], "--runs", str(sb_runs), "--concurrency", str(c)],
                     900, {"model": llm_pid})
        levels.append(dict(r["levels"][0], cpu_s=r["cpu_s"]))
        rss = max(rss, r["peak_rss_mb"])
    tokens = {n: run_json(emb + ["--config", configs[n], "--routing-only"], timeout=300)["routing_prompt_tokens"]
              for n in (5, 20)}
    return {"levels": levels, "peak_rss_mb": rss, "tokens": tokens}


def outside_model(level):
    """Milliseconds a run (or call) of `level` spent outside the scripted server's handlers."""
    return (level["wall_s"] - level["llm_time_s"]) * 1000 / level["runs"]


def versions():
    import importlib.metadata as m
    return {k: m.version(k) for k in ("langgraph", "langgraph-supervisor", "langchain-openai", "openai-agents")}


def table(results, direct, runs, sb_runs, short, profile):
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
    v = versions()
    print()
    print(f"date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; machine: {os.cpu_count()} CPUs "
          f"(nproc {len(os.sched_getaffinity(0))}), {cpu}; Python {platform.python_version()}; "
          f"langgraph {v['langgraph']}, langgraph-supervisor {v['langgraph-supervisor']}, "
          f"langchain-openai {v['langchain-openai']}, openai-agents {v['openai-agents']}")
    print(f"runs per level: {runs} (Python peers), {sb_runs} (Switchboard){' — short mode' if short else ''}")
    if profile != "bench":
        print(f"Switchboard built with the `{profile}` profile, unoptimised: its figures say nothing of its speed")
    print()
    print("| runtime | LLM calls/run | mean ms/run (c=1) | p95 ms (c=1) | runs/s (c=1) | runs/s (c=32) | p95 ms (c=32) "
          "| peak RSS | orchestration overhead ms/run (c=1) | the same, less the model calls' exchanges "
          "| routing prompt tokens, 5 agents | 20 agents |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    exchange = outside_model(direct)
    for name, r in results.items():
        c1, c32 = r["levels"][0], r["levels"][1]
        calls = c1["llm_calls"] / c1["runs"]
        overhead = outside_model(c1)
        print(f"| {name} | {calls:g} | {c1['mean_ms']:.2f} | {c1['p95_ms']:.2f} | {c1['runs_per_s']:,.1f} "
              f"| {c32['runs_per_s']:,.1f} | {c32['p95_ms']:.2f} | {r['peak_rss_mb']:.0f} MB | {overhead:.2f} "
              f"| {overhead - calls * exchange:.2f} | {r['tokens'][5]} | {r['tokens'][20]} |")
    print()
    print(f"A direct call to the scripted server (the load harness's Rust client, c=1, {direct['runs']} calls): "
          f"{direct['mean_ms']:.3f} ms, of which {exchange:.3f} ms outside its handler: the exchange itself.")
    print()
    print("Orchestration overhead = (wall time at c=1 − time spent inside the scripted server's handlers) / runs. "
          "Less the model calls' exchanges: minus LLM calls/run × a direct call's time outside the handler, as "
          "issue 12 took a direct call's time off each model call; Switchboard's tool request to the scripted "
          "server stays in (HTTP tools), except with function tools, Rust functions in process as the peers' "
          "tools are Python functions in theirs. "
          "Routing prompt tokens: cl100k_base tokens of the first model call's messages and tool definitions, "
          "counted by the scripted server. Peak RSS: the Python process, the `switchboard serve` process, "
          "or the embedded bench process.")
    print()
    print("Where the CPU goes at c=32, per run (client, Switchboard and the scripted server share the machine's "
          f"{len(os.sched_getaffinity(0))} cores):")
    print()
    print("| runtime | Switchboard ms | its load client ms | scripted server ms | all ms | cores busy |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        c32 = r["levels"][1]
        if "cpu_s" not in c32:
            continue
        ms = lambda seconds: seconds * 1000 / c32["runs"]
        # Served, the level's own process is the load client; embedded, it is Switchboard and the
        # workers driving it, in one process.
        own = c32["cpu_s"].get("switchboard")
        client = c32["process_cpu_s"]
        total = client + sum(c32["cpu_s"].values())
        print(f"| {name} | {ms(own if own is not None else client):.3f} "
              f"| {'(the same process)' if own is None else f'{ms(client):.3f}'} | {ms(c32['cpu_s']['model']):.3f} "
              f"| {ms(total):.3f} | {total / c32['wall_s']:.2f} |")
    print()
    print("Context switches a run of Switchboard's process, every thread's, voluntary or not: at c=1 each is a thread "
          "that slept being woken (the README's Wake-ups at concurrency 1):")
    print()
    print("| runtime | c=1 | c=32 |")
    print("|---|---|---|")
    for name, r in results.items():
        # Served, the server's own; embedded, the bench's, which is Switchboard and the workers driving it.
        counts = [l.get("switches", {}).get("switchboard", l.get("process_switches")) for l in r["levels"][:2]]
        if None not in counts:
            print(f"| {name} | {counts[0] / r['levels'][0]['runs']:.2f} | {counts[1] / r['levels'][1]['runs']:.2f} |")


if __name__ == "__main__":
    main()
