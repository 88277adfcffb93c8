"""Shared fixtures: an official `openai` client pointed at the server under test.

The server is started by tests/python_client.rs (`cargo test -p switchboard --test python_client`),
which sets SWITCHBOARD_BASE_URL to its `/v1` root.
"""

import functools
import os
import subprocess

import openai
import pytest

MODEL = os.environ.get("SWITCHBOARD_MODEL", "switchboard")

# Tests that need the server configured with an `[llm]` (the scripted model) run only in
# tests/python_llm.rs, which starts that server and sets SWITCHBOARD_WITH_LLM=1; the offline
# server (tests/python_client.rs) would refuse what they ask with a 400.
LLM_TESTS = ["test_structured_output.py"]
collect_ignore = [] if os.environ.get("SWITCHBOARD_WITH_LLM") == "1" else LLM_TESTS


@functools.lru_cache(maxsize=None)
def token_for(user):
    """A development token for `user`, from `switchboard token` against the server's data dir."""
    config = os.environ.get("SWITCHBOARD_CONFIG")
    result = subprocess.run(
        [os.environ["SWITCHBOARD_BIN"], "token", "--as", user] + (["--config", config] if config else []),
        capture_output=True,
        text=True,
        check=True,
        env=os.environ,
    )
    return result.stdout.strip()


def make_client(user=None):
    """An official client; its API key is the caller's bearer token (none valid when `user` is None)."""
    return openai.OpenAI(
        base_url=os.environ["SWITCHBOARD_BASE_URL"],
        api_key=token_for(user) if user else "not-a-valid-token",
        max_retries=0,
        timeout=30,
    )


@pytest.fixture
def client():
    return make_client("carol@example.com")
