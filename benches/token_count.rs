//! Token counting with tiktoken-rs, as the LLM client counts usage when a server reports none and
//! as routing prompts are measured: a question, a routing prompt's worth of agent descriptions
//! (20 agents), and a long document passage; with `cl100k_base` ([`count_tokens`]) and with the
//! encoding of the model in use, here `o200k_base` for gpt-4o ([`count_tokens_for`]).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use switchboard_llm::{count_tokens, count_tokens_for};

const QUESTION: &str = "Who must approve a 25% discount on a 40,000 deal?";
const DESCRIPTION: &str = "Deal desk discount approvals: who must approve a discount of X% on a deal of Y \
(account rep, sales manager, VP of Sales or CFO). Give the discount percentage and the deal amount. ";

fn tokens(c: &mut Criterion) {
    // Loads the encoding once, as the first call in a process does.
    count_tokens("warm up");
    count_tokens_for("gpt-4o", "warm up");
    let routing = DESCRIPTION.repeat(20);
    let passage =
        "Hotels are capped at $250 per night in most cities and $350 in New York, London and Tokyo; \
                   book through the travel portal and keep the folio. "
            .repeat(60);
    let mut group = c.benchmark_group("count_tokens");
    for (name, text) in
        [("question", QUESTION), ("routing_20_agents", routing.as_str()), ("passage_8kb", passage.as_str())]
    {
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_function(format!("cl100k/{name}"), |b| b.iter(|| count_tokens(black_box(text))));
        group.bench_function(format!("o200k/{name}"), |b| {
            b.iter(|| count_tokens_for(black_box("gpt-4o"), black_box(text)))
        });
    }
    group.finish();
}

criterion_group!(benches, tokens);
criterion_main!(benches);
