#!/usr/bin/env python3
"""Builds the tau2 banking knowledge-retrieval benchmark from documents/ and tasks.json.

The knowledge agent (agents/banking_docs.toml, written by hand) reads documents/*.json as they
are: each file is one {id, title, content} object, which the `knowledge` kind indexes directly.

This script writes cases.jsonl: one case per task that has required documents. A task is a
role-play script for a simulated customer, not a question, so each case's question is derived
from the script, deterministically:
1. the instructions are split into sentences;
2. sentences of role-play stage directions are dropped (who the simulated user is playing,
   how to behave on the line, tool use, when to end the call, verification details);
3. the sentences stating what the customer wants (\"You're looking for...\", \"Start by saying you
   want...\", \"...wants to...\", requirements and preferences) are kept, at most four, and turned
   into the first person (\"you\" -> \"I\", \"your\" -> \"my\");
4. a task where no sentence states a want falls back to its first two non-direction sentences.
The task's `required_documents` become `expect.answer.cites` with `cites_match = "any"`: the case
passes its answer check when at least one required document is among the citations, and the
harness reports recall@5 (the share of required documents among the first five cited).

Deterministic: run it again and the output is byte-for-byte the same.
"""
import json
import os
import re

HERE = os.path.dirname(os.path.abspath(__file__))

DIRECTIONS = re.compile(
    r"playing the role|on the line|customer service representative|customer support agent\b(?! to)|"
    r"never respond|end the (conversation|call)|access to a tool|tool that allow|apply .* on your own|"
    r"no need to respond|only mention|do not reveal|don't reveal|deflect|transferr?(ed|ing)? (you|to a human)|"
    r"human agent|behavior guidelines|your email is|your phone number is|verification|verify|"
    r"date of birth|you are absolutely certain|do not bring this up|don't dump|provide additional details|"
    r"this is all information|^here are|^if the agent|^once the agent|^if verification|^then,|i'll hold|"
    r"brag|love talking|in every (single )?message|your character|react naturally|use phrases like",
    re.IGNORECASE,
)
WANTS = re.compile(
    r"looking for|you want|wants? to|would like|you need|your (hard )?requirements?|you prefer|"
    r"start by saying|you('re| are) (interested|trying|hoping|asking)|your goal|you plan",
    re.IGNORECASE,
)
FIRST_PERSON = [
    (r"\byou're\b", "I'm"), (r"\bYou're\b", "I'm"), (r"\byou are\b", "I am"), (r"\bYou are\b", "I am"),
    (r"\byou have\b", "I have"), (r"\bYou have\b", "I have"), (r"\byourself\b", "myself"),
    (r"\byours\b", "mine"), (r"\byour\b", "my"), (r"\bYour\b", "My"), (r"\byou\b", "I"), (r"\bYou\b", "I"),
    (r"\bhis\b", "my"), (r"\bher\b", "my"), (r"\bhe\b", "I"), (r"\bshe\b", "I"),
]


def sentences(text):
    parts = re.split(r"(?<=[.!?])\s+|\n+", text)
    out = []
    for p in parts:
        p = p.strip().lstrip("-* ").strip()
        if len(p.split()) >= 3:
            out.append(p)
    return out


def first_person(s):
    s = s.replace("**", "").replace(":**", ":")
    s = re.sub(r"\b(gives?|to|for|with|against|about|from|tells?|helps?|sends?|offers?|recommends?|lets?|charges?|asks?|calls?|attracted|than) you\b", r"\1 me", s)
    s = re.sub(r"^Start by saying (that )?", "", s, flags=re.IGNORECASE)
    s = re.sub(r"\bneither are you\b", "nor am I", s)
    for pattern, repl in FIRST_PERSON:
        s = re.sub(pattern, repl, s)
    return s[0].upper() + s[1:] if s else s


def question(instructions):
    kept = [s for s in sentences(instructions) if not DIRECTIONS.search(s)]
    wants = [s for s in kept if WANTS.search(s)][:4]
    chosen = wants or kept[:2]
    return " ".join(first_person(s) for s in chosen)


def main():
    with open(os.path.join(HERE, "tasks.json"), encoding="utf-8") as f:
        tasks = json.load(f)
    with open(os.path.join(HERE, "cases.jsonl"), "w", encoding="utf-8") as f:
        for task in tasks:
            required = task.get("required_documents") or []
            if not required:
                continue
            scenario = task.get("user_scenario") or {}
            text = question(scenario.get("instructions") or "")
            if not text:
                continue
            case = {
                "id": task["id"],
                "question": text,
                "expect": {
                    "agents": ["banking_docs"],
                    "answer": {"cites": required, "cites_match": "any"},
                },
                "tags": ["retrieval", "single_doc" if len(required) == 1 else "multi_doc"],
            }
            f.write(json.dumps(case, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
