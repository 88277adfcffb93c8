//! Token counting with tiktoken, for the model in use: what a completion cost when its server
//! reports no `usage` (many OpenAI-compatible servers omit it, streamed answers often do), so
//! spans, the usage table and the tokens-per-minute limits still see real figures.

#[cfg(test)]
use crate::ChatRequest;
use crate::{ChatResponse, Usage};
use serde_json::Value;
use tiktoken_rs::CoreBPE;
use tiktoken_rs::tokenizer::{Tokenizer, get_tokenizer};

/// Tokens every chat message adds around its content (`<|start|>role…<|end|>`), and those that
/// prime the reply: OpenAI's published accounting for its chat models.
const PER_MESSAGE: u64 = 3;
const REPLY_PRIMING: u64 = 3;

/// The encoding of `model` and its name: tiktoken's for the OpenAI models it knows (`o200k_base`
/// for gpt-4o, gpt-4.1, o1…, `cl100k_base` for gpt-4 and gpt-3.5), looked up without a
/// `provider/` prefix; `cl100k_base` for any other model (an open model behind an
/// OpenAI-compatible server), whose own tokenizer is not at hand but counts within a few percent.
pub fn encoding_for(model: &str) -> (&'static CoreBPE, &'static str) {
    let bare = model.rsplit('/').next().unwrap_or(model);
    match get_tokenizer(bare).or_else(|| get_tokenizer(model)) {
        Some(Tokenizer::O200kBase) => (tiktoken_rs::o200k_base_singleton(), "o200k_base"),
        Some(Tokenizer::O200kHarmony) => (tiktoken_rs::o200k_harmony_singleton(), "o200k_harmony"),
        Some(Tokenizer::P50kBase) => (tiktoken_rs::p50k_base_singleton(), "p50k_base"),
        Some(Tokenizer::P50kEdit) => (tiktoken_rs::p50k_edit_singleton(), "p50k_edit"),
        Some(Tokenizer::R50kBase | Tokenizer::Gpt2) => (tiktoken_rs::r50k_base_singleton(), "r50k_base"),
        Some(Tokenizer::Cl100kBase) | None => (tiktoken_rs::cl100k_base_singleton(), "cl100k_base"),
    }
}

/// Tokens of `text` in `model`'s encoding.
pub fn count_tokens_for(model: &str, text: &str) -> u64 {
    encoding_for(model).0.encode_ordinary(text).len() as u64
}

/// Tokens of a chat prompt of `(role, content)` messages in `model`'s encoding, with the
/// per-message and reply-priming overhead the model is billed for.
pub fn count_prompt_tokens<'a>(model: &str, messages: impl IntoIterator<Item = (&'a str, &'a str)>) -> u64 {
    let bpe = encoding_for(model).0;
    let count = |text: &str| bpe.encode_ordinary(text).len() as u64;
    messages.into_iter().map(|(role, content)| PER_MESSAGE + count(role) + count(content)).sum::<u64>()
        + REPLY_PRIMING
}

/// A completion's usage: the server's figures, with each one it left out (zero) counted here
/// in `model`'s encoding — the prompt from the request `body` as sent (its messages and the
/// tools it offers), the completion from the reply's text and tool calls. The encoding's name
/// comes back when anything was counted here.
pub(crate) fn complete_usage(model: &str, body: &str, reply: &ChatResponse) -> (Usage, Option<&'static str>) {
    let mut usage = reply.usage;
    let mut counted = false;
    if usage.prompt_tokens == 0 {
        let sent: Value = serde_json::from_str(body).unwrap_or_default();
        let tools = match sent.get("tools") {
            Some(tools) => count_tokens_for(model, &tools.to_string()),
            None => 0,
        };
        usage.prompt_tokens = count_prompt_tokens(model, crate::wire_messages(&sent["messages"])) + tools;
        counted = true;
    }
    let answered = !reply.content.is_empty() || !reply.tool_calls.is_empty();
    if usage.completion_tokens == 0 && answered {
        let calls: String = reply.tool_calls.iter().map(|c| format!("{}{}", c.name, c.arguments)).collect();
        usage.completion_tokens = count_tokens_for(model, &format!("{}{calls}", reply.content));
        counted = true;
    }
    (usage, counted.then(|| encoding_for(model).1))
}

/// Counts tokens with the `cl100k_base` encoding: for text no particular model read (budgets,
/// evaluation figures).
pub fn count_tokens(text: &str) -> u64 {
    tiktoken_rs::cl100k_base_singleton().encode_ordinary(text).len() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_known_text() {
        assert_eq!(count_tokens(""), 0);
        assert_eq!(count_tokens("hello world"), 2);
    }

    #[test]
    fn each_model_is_counted_in_its_own_encoding() {
        assert_eq!(encoding_for("gpt-4o-mini").1, "o200k_base");
        assert_eq!(encoding_for("openai/gpt-4.1").1, "o200k_base", "a provider prefix is looked through");
        assert_eq!(encoding_for("gpt-4").1, "cl100k_base");
        assert_eq!(encoding_for("llama-3.1-8b-instruct").1, "cl100k_base", "unknown models: cl100k");
        // The two encodings split this text differently, so the model decides the count.
        let text = "Die Übernachtungskosten dürfen 200 € pro Nacht nicht überschreiten.";
        assert_ne!(count_tokens_for("gpt-4o", text), count_tokens_for("gpt-4", text));
        // "hello world" is 2 tokens; the message adds 3 and the role 1, priming adds 3.
        assert_eq!(count_prompt_tokens("gpt-4o", [("user", "hello world")]), 9);
    }

    #[test]
    fn only_what_the_server_left_out_is_counted() {
        let request = ChatRequest {
            messages: vec![switchboard_core::Message::user("hello world")],
            ..Default::default()
        };
        let body = crate::request_body(&request, None, false);
        let reply = |usage| ChatResponse { content: "hello world".into(), tool_calls: vec![], usage };
        let (usage, counted) = complete_usage("gpt-4o", &body, &reply(Usage::default()));
        assert_eq!((usage.prompt_tokens, usage.completion_tokens, counted), (9, 2, Some("o200k_base")));
        let reported = Usage { prompt_tokens: 50, completion_tokens: 7, ..Usage::default() };
        assert_eq!(complete_usage("gpt-4o", &body, &reply(reported)), (reported, None));
        let half = Usage { prompt_tokens: 50, ..Usage::default() };
        let (usage, counted) = complete_usage("gpt-4o", &body, &reply(half));
        assert_eq!((usage.prompt_tokens, usage.completion_tokens, counted.is_some()), (50, 2, true));
    }

    #[test]
    fn the_tools_offered_are_counted_as_sent() {
        let tool = crate::ToolDef {
            name: "ask_policies".into(),
            description: "Answers questions about travel and expense policies.".into(),
            parameters: std::sync::Arc::new(serde_json::json!({
                "type": "object", "properties": {"question": {"type": "string"}}
            })),
        };
        let request = ChatRequest {
            messages: vec![switchboard_core::Message::user("hello world")],
            tools: vec![tool.clone()],
            ..Default::default()
        };
        let body = crate::request_body(&request, None, false);
        let reply = ChatResponse { content: "hi".into(), tool_calls: vec![], usage: Usage::default() };
        let tools_as_sent = serde_json::to_string(&crate::request_tools(&[tool])).unwrap();
        let expected = count_prompt_tokens("gpt-4o", [("user", "hello world")])
            + count_tokens_for("gpt-4o", &tools_as_sent);
        assert!(count_tokens_for("gpt-4o", &tools_as_sent) > 10, "the tools are a real part of the prompt");
        assert_eq!(complete_usage("gpt-4o", &body, &reply).0.prompt_tokens, expected);
    }
}
