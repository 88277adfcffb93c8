//! The `knowledge` kind: a Knowledge-Assistant-style agent over a folder of Markdown, text or
//! JSON documents.
//!
//! At start-up the folder is split into passages and indexed with tantivy under
//! `<base_dir>/.index/<agent>/`; the index is reused while the folder's fingerprint (file names,
//! sizes, modification times) is unchanged. A question is answered by a BM25 search made as a
//! governed `retrieval` hop, and then either extractively (the sentences of the best passage that
//! match) or, with an LLM configured, by a model told to answer only from the numbered passages.
//! Either way the answer carries one [`Citation`] per passage.
//!
//! ```toml
//! [knowledge]
//! path = "policies"   # relative to the data dir
//! top_k = 3
//! ```

mod answer;
mod docs;
mod index;
#[cfg(test)]
mod tests;
mod trim;

pub use index::IndexInfo;

use async_trait::async_trait;
use index::{PassageIndex, SearchResult};
use serde::Deserialize;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use switchboard_core::{
    Agent, AgentInput, AgentOutput, AgentSpec, Citation, Error, ErrorKind, HopKind, Message, OnDelta, Result,
    Role, RunContext, span_inputs, span_outputs,
};
use switchboard_govern::{Egress, HopTarget};
use switchboard_llm::{ChatRequest, LlmClient};

/// Most passages an answer may rest on.
const MAX_TOP_K: usize = 20;
/// Earlier turns of this agent passed to the LLM for follow-ups.
const HISTORY_TURNS: usize = 6;

/// The `[knowledge]` table of an agent file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The documents folder, resolved against the data dir.
    pub path: PathBuf,
    /// How many passages to retrieve and cite (1–20; default 3).
    pub top_k: usize,
    /// Longest passage, in words (50–2000; default 200). Sections longer than this are split at
    /// paragraphs, so a citation points at the part that answers.
    pub passage_words: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    path: PathBuf,
    #[serde(default = "default_top_k")]
    top_k: usize,
    #[serde(default = "default_passage_words")]
    passage_words: usize,
}

fn default_top_k() -> usize {
    3
}

fn default_passage_words() -> usize {
    200
}

impl Settings {
    /// Parses `spec.settings`, resolving a relative `path` against `base_dir` and checking the
    /// folder exists. Errors are `Config` errors naming the field.
    pub fn from_spec(spec: &AgentSpec, base_dir: &Path) -> Result<Settings> {
        let raw: RawSettings = crate::kind_settings(spec)?;
        if !(1..=MAX_TOP_K).contains(&raw.top_k) {
            return Err(Error::config(format!(
                "knowledge.top_k: must be between 1 and {MAX_TOP_K}, got {}",
                raw.top_k
            )));
        }
        if !(50..=2000).contains(&raw.passage_words) {
            return Err(Error::config(format!(
                "knowledge.passage_words: must be between 50 and 2000, got {}",
                raw.passage_words
            )));
        }
        if raw.path.as_os_str().is_empty() {
            return Err(Error::config("knowledge.path: must not be empty"));
        }
        let path = if raw.path.is_absolute() { raw.path.clone() } else { base_dir.join(&raw.path) };
        if !path.is_dir() {
            let what = if path.exists() { "is not a folder" } else { "does not exist" };
            return Err(Error::config(format!(
                "knowledge.path: folder {} {what} (resolved to {})",
                raw.path.display(),
                path.display()
            )));
        }
        Ok(Settings { path, top_k: raw.top_k, passage_words: raw.passage_words })
    }
}

/// The titles and headings of the documents under `settings.path`, each once, in file order:
/// what the folder is about, for a router's profile of the agent, so a question about a document
/// it holds reaches it even when the agent's description never uses the document's words.
/// Blocking file I/O, for start-up.
pub fn topics(settings: &Settings) -> Result<Vec<String>> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for file in docs::list_files(&settings.path)? {
        for doc in docs::load(&file)? {
            for topic in docs::topics(&doc) {
                if seen.insert(topic.to_lowercase()) {
                    out.push(topic);
                }
            }
        }
    }
    Ok(out)
}

/// A knowledge agent: a passage index opened at start-up and searched through governed hops.
pub struct KnowledgeAgent {
    spec: Arc<AgentSpec>,
    egress: Egress,
    settings: Settings,
    index: PassageIndex,
    llm: Option<LlmClient>,
}

impl KnowledgeAgent {
    /// Builds the agent, indexing its folder unless an index of the folder as it is now already
    /// exists under `<base_dir>/.index/<name>/`. Blocking file I/O: call it at start-up (from
    /// `spawn_blocking` inside a runtime), never on the request path. With `llm`, answers are
    /// synthesized by the model from the retrieved passages; without, they are extractive.
    pub fn new(
        spec: Arc<AgentSpec>,
        egress: Egress,
        base_dir: &Path,
        llm: Option<LlmClient>,
    ) -> Result<Self> {
        let settings = Settings::from_spec(&spec, base_dir)?;
        let safe_name = !spec.name.is_empty()
            && !spec.name.starts_with('.')
            && spec.name.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
        if !safe_name {
            return Err(Error::config(format!(
                "name: `{}` cannot name an index folder (use letters, digits, `_`, `-`, `.`)",
                spec.name
            )));
        }
        let index_dir = base_dir.join(".index").join(&spec.name);
        let index = PassageIndex::open_or_build(&settings.path, &index_dir, settings.passage_words)?;
        if index.info().passages == 0 {
            tracing::warn!(agent = %spec.name, folder = %settings.path.display(), "knowledge folder has no documents");
        }
        Ok(Self { spec, egress, settings, index, llm })
    }

    /// What start-up did with the index (rebuilt or reused, documents and passages).
    pub fn index_info(&self) -> &IndexInfo {
        self.index.info()
    }

    /// The parsed settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The search, as a governed retrieval hop.
    async fn retrieve(&self, ctx: &RunContext, question: &str) -> Result<SearchResult> {
        let target = HopTarget::new(HopKind::Retrieval, &self.spec.name);
        self.egress
            .hop(ctx, target, |grant| async move {
                let result = self.index.search(question, self.settings.top_k)?;
                grant.record("switchboard.retrieval.hits", result.hits.len() as u64);
                grant.record("switchboard.retrieval.top_k", self.settings.top_k as u64);
                let hits: Vec<_> = result.hits.iter().map(|h| {
                    json!({"doc_uri": h.passage.doc_id, "section": h.passage.section, "score": h.score})
                }).collect();
                let io = span_inputs(json!({"query": question}), None)
                    .into_iter()
                    .chain(span_outputs(json!({"hits": hits}), None));
                for (key, value) in io {
                    grant.record(key, value);
                }
                Ok(result)
            })
            .await
    }

    /// The model's answer from the passages, trimmed. With `trimmed`, the model streams and its
    /// pieces go through it (trimmed too) as it writes them.
    async fn synthesize(
        &self,
        llm: &LlmClient,
        ctx: &RunContext,
        input: &AgentInput,
        result: &mut SearchResult,
        trimmed: Option<&trim::Trimmed<'_>>,
    ) -> Result<String> {
        let mut messages =
            vec![Message::system(answer::system_prompt(&self.spec.name, &self.spec.description))];
        let history: Vec<&Message> =
            input.history.iter().filter(|m| matches!(m.role, Role::User | Role::Assistant)).collect();
        let skip = history.len().saturating_sub(HISTORY_TURNS);
        messages.extend(history.into_iter().skip(skip).cloned());
        messages.push(Message::user(answer::user_prompt(&result.hits, &input.question)));
        // The prompt has them now; the index has them for after the answer.
        result.set_texts_aside();
        let request = ChatRequest { messages, tools: Vec::new(), temperature: Some(0.0) };
        let response = match trimmed {
            Some(t) => llm.chat_stream(ctx, request, &|p: &str| t.push(p)).await?,
            None => llm.chat(ctx, &request).await?,
        };
        Ok(response.content.trim().to_string())
    }

    /// The answer with its citations; see [`Agent::invoke_streaming`] for `on_delta`.
    async fn answer(
        &self,
        ctx: &RunContext,
        input: &AgentInput,
        on_delta: Option<&OnDelta<'_>>,
    ) -> Result<AgentOutput> {
        let question = input.question.trim();
        if question.is_empty() {
            return Err(Error::invalid(format!("agent `{}` needs a question", self.spec.name)));
        }
        let mut result = self.retrieve(ctx, question).await?;
        if result.hits.is_empty() {
            return Ok(AgentOutput {
                text: format!("I found nothing in {}'s documents about \"{question}\".", self.spec.name),
                ..AgentOutput::default()
            });
        }
        let analyze = |s: &str| self.index.analyze(s);
        let extractive = |result: &SearchResult| answer::extractive(&result.hits, &result.terms, &analyze);
        let trimmed = on_delta.map(trim::Trimmed::new);
        let text = match &self.llm {
            None => extractive(&result),
            Some(llm) => {
                let synthesized = self.synthesize(llm, ctx, input, &mut result, trimmed.as_ref()).await;
                if let Err(e) = self.index.restore_texts(&mut result) {
                    // The model's answer stands; only the citations' snippets (or an extractive
                    // answer) go without the passages.
                    tracing::warn!(agent = %self.spec.name, error = %e, "passages unavailable after the answer");
                }
                // What of the model's answer already reached a streaming caller: it cannot be
                // taken back.
                let sent = trimmed.as_ref().map(|t| t.sent()).unwrap_or_default();
                match synthesized {
                    Ok(text) if !text.is_empty() => {
                        format!("{text}\n\n{}", answer::sources_footer(&result.hits))
                    }
                    // The passages are still good: a model that fails or says nothing degrades the
                    // answer to the extractive one rather than sinking it.
                    Ok(_) => {
                        tracing::warn!(agent = %self.spec.name, "LLM gave an empty answer; answering extractively");
                        extractive(&result)
                    }
                    Err(e) if e.kind == ErrorKind::Upstream && sent.is_empty() => {
                        tracing::warn!(agent = %self.spec.name, error = %e, "LLM failed; answering extractively");
                        extractive(&result)
                    }
                    Err(e) if e.kind == ErrorKind::Upstream => {
                        tracing::warn!(agent = %self.spec.name, error = %e, "LLM broke off mid-answer; adding the extractive answer");
                        format!(
                            "{sent}\n\n(The answer broke off: {}. From the documents:)\n\n{}",
                            e.message,
                            extractive(&result)
                        )
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        // Made once the answer is in, so a conversation held open while the model writes does
        // not hold them too.
        let citations: Vec<Citation> = answer::citations(&result.hits, &result.terms, &analyze);
        Ok(AgentOutput { text, citations, data: None })
    }
}

#[async_trait]
impl Agent for KnowledgeAgent {
    fn spec(&self) -> &AgentSpec {
        &self.spec
    }

    async fn invoke(&self, ctx: &RunContext, input: &AgentInput) -> Result<AgentOutput> {
        self.answer(ctx, input, None).await
    }

    /// With an LLM, the model's answer streams as it writes it; the sources footer follows.
    async fn invoke_streaming(
        &self,
        ctx: &RunContext,
        input: &AgentInput,
        on_delta: &OnDelta<'_>,
    ) -> Result<AgentOutput> {
        self.answer(ctx, input, Some(on_delta)).await
    }
}
