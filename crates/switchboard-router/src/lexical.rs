use crate::features::{self, PrehashedMap, Vocabulary};
use crate::linear::{Example, Model, Training};
use crate::text;
use async_trait::async_trait;
use std::sync::Arc;
use switchboard_core::{
    AgentSpec, Caller, Error, Message, Result, Role, RouteDecision, RoutedCall, Router, RunContext,
};
use switchboard_govern::layers::role_allows;

/// At most this many agents are named in a clarification.
const MAX_CANDIDATES: usize = 3;
/// A clause is routed apart from the rest of the question only if the whole question gives its
/// agent at least this share of the best agent's probability.
const SPLIT_SHARE: f32 = 0.05;
/// A clause needs this many content words to be routed on its own, or else a confidence of
/// [`SURE_CLAUSE`]: "go ahead" and "confirm it" ride with their neighbour, "…, and bananas" to the
/// bananas agent does not.
const MIN_CLAUSE_WORDS: usize = 2;
/// See [`MIN_CLAUSE_WORDS`].
const SURE_CLAUSE: f32 = 0.7;
/// Training passes grow for small profiles so a demo with a handful of examples per agent still
/// converges: at least this many gradient steps in all.
const MIN_STEPS: usize = 4_000;
/// An agent with a handful of examples beside one with thousands of document headings gets each
/// example weighted up to balance them, but no more than this: larger SGD steps overshoot.
const MAX_WEIGHT: f32 = 10.0;
/// Most passes over the data, however small.
const MAX_EPOCHS: usize = 60;

/// What [`LexicalRouter::narrow`] found for a question.
#[derive(Debug, Clone, PartialEq)]
pub struct Narrowed {
    /// The agents the question is most likely for: those the router would route to on its own
    /// confidence, or, when it would ask or only guess a follow-up, its single most probable
    /// agent; empty when the question shares nothing with any agent.
    pub likely: Vec<String>,
    /// The agents worth offering a model, as [`LexicalRouter::shortlist`] gives them.
    pub shortlist: Option<Vec<String>>,
}

/// The offline router: a linear classifier over each agent's routing profile, with a confidence
/// (its probability, discounted by how familiar the question looks) below which it asks the
/// caller instead of guessing.
///
/// **Profile.** Each agent contributes its name, its description (whole and clause by clause),
/// its examples, and any extra topics given at build time (a knowledge agent's document titles and
/// headings, say). Agents are weighted equally however many examples each has.
///
/// **Model.** Multinomial logistic regression over word unigrams and bigrams and character
/// 3–5-grams (TF-IDF, sublinear), trained at construction by SGD in a fixed order, so the same
/// agents always give the same router.
///
/// **Confidence.** The best agent is the one with the highest `p × nearest`, and
///
/// ```text
/// confidence = p × √(nearest × coverage)
/// p          = the classifier's probability for the agent
/// nearest    = cosine similarity of the question to the agent's closest profile text
/// coverage   = Σ idf(w) over the question's content words the agent's profile contains
///            / Σ idf(w) over all its content words (a word no agent knows weighs most)
/// ```
///
/// A classifier forced to pick one of its agents is confident about anything far from all of
/// them; `nearest` and `coverage` are what tells "what is the weather on mars" from a real
/// question. A question without content words ("how are you") has coverage 1. All three lie in
/// [0, 1], and the default threshold was chosen on CLINC150's validation split.
///
/// **Routing.** A question with several clauses for different agents becomes several calls;
/// an unconfident question that follows an agent's answer goes back to that agent; anything
/// else below the threshold gets a clarifying question naming the closest agents the caller may
/// use.
#[derive(Debug, Clone)]
pub struct LexicalRouter {
    agents: Vec<Entry>,
    vocab: Vocabulary,
    model: Model,
    /// Per feature: `(profile text, weight)` for every profile text that has it, for finding a
    /// question's nearest text of each agent.
    postings: Vec<Vec<(u32, f32)>>,
    /// The agent of each profile text.
    owners: Vec<u32>,
    /// Content word → its idf over agents and the agents whose profile holds it.
    words: PrehashedMap<Word>,
    /// What a content word no agent knows weighs in the coverage denominator.
    unknown_idf: f32,
    threshold: f32,
}

#[derive(Debug, Clone)]
struct Entry {
    spec: Arc<AgentSpec>,
    /// The first clause of the description, shown in clarifications.
    hint: String,
}

#[derive(Debug, Clone)]
struct Word {
    idf: f32,
    /// Sorted agent indexes.
    agents: Vec<u32>,
}

/// How well a piece of text matches its best agent.
#[derive(Debug, Clone, Copy)]
struct Assessment {
    best: usize,
    confidence: f32,
}

thread_local! {
    /// Each thread's routing buffers, so routing a question allocates little beyond its answer.
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// Reusable buffers for one routing call.
#[derive(Default)]
struct Scratch {
    features: features::Scratch,
    x: Vec<(u32, f32)>,
    probs: Vec<f32>,
    /// Similarity of the question to each profile text.
    similarity: Vec<f32>,
    /// Per agent: the similarity of its nearest profile text.
    nearest: Vec<f32>,
}

impl LexicalRouter {
    /// The default confidence threshold, under which the router asks. Chosen on CLINC150's
    /// validation split, where it asks on 78% of the out-of-scope questions and routes 93.8% of
    /// the in-scope ones right; the test split is only measured (see `tests/clinc.rs`).
    pub const DEFAULT_THRESHOLD: f32 = 0.18;

    /// Trains on `agents`' names, descriptions and examples. `threshold` is the confidence in
    /// [0, 1] below which the router asks the caller to clarify.
    pub fn new(agents: &[Arc<AgentSpec>], threshold: f32) -> Self {
        Self::with_topics(agents, &[], threshold)
    }

    /// Like [`new`](Self::new), with extra routing text per agent: `(agent name, topics)`, such as
    /// the titles and headings of a knowledge agent's documents. Topics of unknown agents are
    /// ignored.
    pub fn with_topics(agents: &[Arc<AgentSpec>], topics: &[(String, Vec<String>)], threshold: f32) -> Self {
        let texts = profile_texts(agents, topics);

        let mut scratch = features::Scratch::default();
        let mut keys: Vec<Vec<(u64, features::Family)>> = Vec::with_capacity(texts.len());
        let mut profile: Vec<Vec<u64>> = vec![Vec::new(); agents.len()];
        for (agent, t) in &texts {
            features::extract(t, &mut scratch);
            keys.push(scratch.keys.clone());
            profile[*agent].extend_from_slice(&scratch.content);
        }
        let vocab = Vocabulary::build(keys.iter().map(Vec::as_slice));
        let mut vectors: Vec<Vec<(u32, f32)>> = Vec::with_capacity(texts.len());
        for k in keys {
            scratch.keys = k;
            let mut x = Vec::new();
            vocab.vector(&mut scratch, &mut x);
            vectors.push(x);
        }

        let mut per_agent = vec![0usize; agents.len()];
        for (agent, _) in &texts {
            per_agent[*agent] += 1;
        }
        let mean = texts.len() as f32 / agents.len().max(1) as f32;
        let examples: Vec<Example<'_>> = texts
            .iter()
            .zip(&vectors)
            .map(|((agent, _), x)| Example {
                x,
                class: *agent,
                weight: (mean / per_agent[*agent] as f32).min(MAX_WEIGHT),
            })
            .collect();
        let epochs = MIN_STEPS.div_ceil(examples.len().max(1)).clamp(Training::default().epochs, MAX_EPOCHS);
        let model = if agents.is_empty() {
            Model::default()
        } else {
            Model::train(vocab.len(), agents.len(), &examples, Training { epochs, ..Training::default() })
        };

        let mut postings: Vec<Vec<(u32, f32)>> = vec![Vec::new(); vocab.len()];
        for (i, x) in vectors.iter().enumerate() {
            for &(f, w) in x {
                postings[f as usize].push((i as u32, w));
            }
        }
        let owners = texts.iter().map(|(agent, _)| *agent as u32).collect();

        let mut words: PrehashedMap<Word> = PrehashedMap::default();
        for (agent, list) in profile.iter_mut().enumerate() {
            list.sort_unstable();
            list.dedup();
            for &w in list.iter() {
                words
                    .entry(w)
                    .or_insert_with(|| Word { idf: 0.0, agents: Vec::new() })
                    .agents
                    .push(agent as u32);
            }
        }
        let n = agents.len() as f32;
        let idf_of = |df: f32| (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
        for word in words.values_mut() {
            word.idf = idf_of(word.agents.len() as f32);
        }

        Self {
            agents: agents
                .iter()
                .map(|spec| Entry { spec: spec.clone(), hint: first_clause(&spec.description) })
                .collect(),
            vocab,
            model,
            postings,
            owners,
            words,
            unknown_idf: idf_of(1.0),
            threshold,
        }
    }

    /// The confidence threshold in use.
    pub fn threshold(&self) -> f32 {
        self.threshold
    }

    /// Every agent's probability for `question`, best first (ties in declaration order); all
    /// zero when no feature of the question is known.
    pub fn scores(&self, question: &str) -> Vec<(String, f32)> {
        let mut scratch = Scratch::default();
        if self.assess(question, &mut scratch).is_none() {
            scratch.probs.iter_mut().for_each(|p| *p = 0.0);
        }
        self.ranked(&scratch.probs).into_iter().map(|(name, p)| (name.to_string(), p)).collect()
    }

    /// The best agent for `question` as a whole and the router's confidence in it, or `None`
    /// when the question shares nothing with any agent's profile.
    pub fn best(&self, question: &str) -> Option<(&str, f32)> {
        let a = self.assess(question, &mut Scratch::default())?;
        Some((self.agents[a.best].spec.name.as_str(), a.confidence))
    }

    /// The clarifying question and candidate agents (best first) the router would answer with
    /// for `question`, naming only agents `caller` may use (every agent when `None`); used by
    /// other routers that need candidates.
    pub fn clarification(&self, question: &str, caller: Option<&Caller>) -> (String, Vec<String>) {
        let mut scratch = Scratch::default();
        self.assess(question, &mut scratch);
        self.clarify(&scratch.probs, caller)
    }

    /// Routes synchronously with no caller known, so clarifications may name any agent. Errors
    /// only when there are no agents.
    pub fn decide(&self, question: &str, history: &[Message]) -> Result<RouteDecision> {
        self.decide_for(None, question, history)
    }

    /// Routes synchronously; [`Router::route`] is this with the request's caller. The route
    /// itself never depends on the caller (policy decides access after routing, so a question
    /// for an agent the caller may not use is routed there and denied); only the agents a
    /// clarification offers do.
    pub fn decide_for(
        &self,
        caller: Option<&Caller>,
        question: &str,
        history: &[Message],
    ) -> Result<RouteDecision> {
        if self.agents.is_empty() {
            return Err(Error::config("the lexical router has no agents to route to"));
        }
        Ok(self.decide_scored(caller, question, history).0)
    }

    /// [`decide_for`](Self::decide_for), with every agent's probability for the whole question
    /// (all zero when no feature of it is known), which ranking the agents needs as well.
    fn decide_scored(
        &self,
        caller: Option<&Caller>,
        question: &str,
        history: &[Message],
    ) -> (RouteDecision, Vec<f32>) {
        SCRATCH.with(|cell| match cell.try_borrow_mut() {
            Ok(mut scratch) => self.decide_with(&mut scratch, caller, question.trim(), history),
            // Only if routing re-entered itself on this thread; fresh buffers do as well.
            Err(_) => self.decide_with(&mut Scratch::default(), caller, question.trim(), history),
        })
    }

    fn decide_with(
        &self,
        scratch: &mut Scratch,
        caller: Option<&Caller>,
        question: &str,
        history: &[Message],
    ) -> (RouteDecision, Vec<f32>) {
        let whole = self.assess(question, scratch);
        let whole_probs = if whole.is_some() { scratch.probs.clone() } else { vec![0.0; self.agents.len()] };
        let mut ranges = Vec::new();
        text::clauses(question, &mut ranges);
        let mut single_clause_route = None;
        if ranges.len() >= 2 {
            // A clause speaks for another agent only if the whole question leans that way too:
            // "i lost my card and need a new one mailed to me" is one intent whose second clause
            // alone looks like something else; a real second intent pulls the whole question's
            // probability towards its agent.
            let plausible = |agent: usize| {
                whole.is_none_or(|w| w.best == agent)
                    || whole_probs[agent] >= SPLIT_SHARE * whole_probs[whole.map_or(0, |w| w.best)]
            };
            let verdicts: Vec<Option<Assessment>> = ranges
                .iter()
                .map(|&(s, e)| {
                    let clause = &question[s..e];
                    self.assess(clause, scratch)
                        .filter(|a| a.confidence >= self.threshold && plausible(a.best))
                        .filter(|a| {
                            scratch.features.content.len() >= MIN_CLAUSE_WORDS || a.confidence >= SURE_CLAUSE
                        })
                })
                .collect();
            let mut confident = verdicts.iter().flatten();
            if let Some(first) = confident.next() {
                if confident.any(|a| a.best != first.best) {
                    return (self.split(question, &ranges, &verdicts), whole_probs);
                }
                let best = verdicts.iter().flatten().map(|a| a.confidence);
                single_clause_route = Some((first.best, best.fold(0.0, f32::max)));
            }
        }

        // A confident clause next to noise ("revenue by region, and the weather") still routes.
        let routed = whole
            .filter(|a| a.confidence >= self.threshold)
            .map(|a| (a.best, a.confidence))
            .or(single_clause_route)
            .or_else(|| self.follow_up(history).map(|agent| (agent, whole.map_or(0.0, |a| a.confidence))));
        let decision = match routed {
            Some((agent, confidence)) => self.one(agent, question, confidence),
            None => {
                let (question, candidates) = self.clarify(&whole_probs, caller);
                RouteDecision::Clarify { question, candidates }
            }
        };
        (decision, whole_probs)
    }

    /// The agents by `probs`, best first, ties in declaration order.
    fn ranked<'a>(&'a self, probs: &[f32]) -> Vec<(&'a str, f32)> {
        let mut ranked: Vec<(&str, f32)> =
            self.agents.iter().zip(probs).map(|(a, &p)| (a.spec.name.as_str(), p)).collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
        ranked
    }

    /// Classifies `text` into `scratch.probs`; `None` when no feature of it is known.
    ///
    /// The best agent maximises `p × nearest`: the classifier's probability times the similarity
    /// of the agent's closest profile text, which breaks the classifier's near-ties in favour of
    /// an agent that has seen something very like the question.
    fn assess(&self, text: &str, scratch: &mut Scratch) -> Option<Assessment> {
        features::extract(text, &mut scratch.features);
        self.vocab.vector(&mut scratch.features, &mut scratch.x);
        self.model.probabilities(&scratch.x, &mut scratch.probs);
        if scratch.x.is_empty() || self.agents.is_empty() {
            return None;
        }
        scratch.similarity.clear();
        scratch.similarity.resize(self.owners.len(), 0.0);
        for &(f, v) in &scratch.x {
            for &(doc, w) in &self.postings[f as usize] {
                scratch.similarity[doc as usize] += v * w;
            }
        }
        scratch.nearest.clear();
        scratch.nearest.resize(self.agents.len(), 0.0);
        for (&agent, &sim) in self.owners.iter().zip(&scratch.similarity) {
            let slot = &mut scratch.nearest[agent as usize];
            *slot = slot.max(sim);
        }
        let (mut best, mut top) = (0, f32::NEG_INFINITY);
        for (i, (&p, &near)) in scratch.probs.iter().zip(&scratch.nearest).enumerate() {
            let joint = p * near;
            if joint > top {
                (best, top) = (i, joint);
            }
        }
        let coverage = self.coverage(&scratch.features.content, best);
        let confidence = scratch.probs[best] * (scratch.nearest[best] * coverage).sqrt();
        Some(Assessment { best, confidence: confidence.clamp(0.0, 1.0) })
    }

    fn coverage(&self, content: &[u64], agent: usize) -> f32 {
        let (mut matched, mut total) = (0.0f32, 0.0f32);
        for (i, w) in content.iter().enumerate() {
            if content[..i].contains(w) {
                continue;
            }
            match self.words.get(w) {
                Some(word) => {
                    total += word.idf;
                    if word.agents.binary_search(&(agent as u32)).is_ok() {
                        matched += word.idf;
                    }
                }
                None => total += self.unknown_idf,
            }
        }
        if total > 0.0 { matched / total } else { 1.0 }
    }

    fn one(&self, agent: usize, input: &str, score: f32) -> RouteDecision {
        RouteDecision::Agents {
            calls: vec![RoutedCall::new(self.agents[agent].spec.name.clone(), input, score)],
        }
    }

    /// One call per agent, in order of first mention. Unconfident clauses join the confident
    /// clause before them (or, at the start, the one after), so "…by region and stage" keeps
    /// "stage" with the sales clause instead of asking. Adjacent clauses of one agent are passed
    /// as the original text between them; separate runs are joined with "; ".
    fn split(
        &self,
        question: &str,
        ranges: &[(usize, usize)],
        verdicts: &[Option<Assessment>],
    ) -> RouteDecision {
        let mut owner = verdicts.iter().flatten().map(|a| a.best).next().unwrap_or(0);
        let owners: Vec<usize> = verdicts
            .iter()
            .map(|v| {
                if let Some(a) = v {
                    owner = a.best;
                }
                owner
            })
            .collect();
        let mut calls: Vec<(usize, RoutedCall)> = Vec::new();
        for (i, &agent) in owners.iter().enumerate() {
            let score = verdicts[i].map_or(0.0, |a| a.confidence);
            if let Some((_, call)) = calls.iter_mut().find(|(a, _)| *a == agent) {
                call.score = call.score.max(score);
                continue;
            }
            let mut input = String::new();
            let mut j = i;
            while j < owners.len() {
                if owners[j] != agent {
                    j += 1;
                    continue;
                }
                let run_start = j;
                while j + 1 < owners.len() && owners[j + 1] == agent {
                    j += 1;
                }
                if !input.is_empty() {
                    input.push_str("; ");
                }
                input.push_str(&question[ranges[run_start].0..ranges[j].1]);
                j += 1;
            }
            calls.push((agent, RoutedCall::new(self.agents[agent].spec.name.clone(), input, score)));
        }
        RouteDecision::Agents { calls: calls.into_iter().map(|(_, call)| call).collect() }
    }

    /// The agents worth showing a model that routes `question`, in declaration order, when this
    /// router is confident enough to narrow them down: the agents it would route to itself
    /// (every intent of a split question), the most probable others up to `size` in all, and the
    /// agent that answered the last turn, so a follow-up can stay with it. `None`, meaning offer
    /// every agent, when there are no more than `size` agents, `size` is 0, or the router would
    /// not route the question on its own confidence (it would ask, or only guess a follow-up):
    /// the model is then the better judge of the whole list.
    pub fn shortlist(&self, question: &str, history: &[Message], size: usize) -> Option<Vec<String>> {
        self.narrow(question, history, size).shortlist
    }

    /// [`shortlist`](Self::shortlist), and the agents `question` is most likely for, from one
    /// decision.
    pub fn narrow(&self, question: &str, history: &[Message], size: usize) -> Narrowed {
        if self.agents.is_empty() {
            return Narrowed { likely: Vec::new(), shortlist: None };
        }
        // One assessment of the question serves both the decision and the ranking.
        let (decision, probs) = self.decide_scored(None, question, history);
        let confident: Vec<String> = match decision {
            RouteDecision::Agents { calls } if calls.iter().all(|c| c.score >= self.threshold) => {
                calls.into_iter().map(|c| c.agent).collect()
            }
            _ => Vec::new(),
        };
        if confident.is_empty() {
            let top = self.ranked(&probs).into_iter().take(1).filter(|(_, p)| *p > 0.0);
            return Narrowed { likely: top.map(|(name, _)| name.to_string()).collect(), shortlist: None };
        }
        if size == 0 || self.agents.len() <= size {
            return Narrowed { likely: confident, shortlist: None };
        }
        let mut keep: Vec<&str> = confident.iter().map(String::as_str).collect();
        for (name, p) in self.ranked(&probs) {
            if keep.len() >= size || p <= 0.0 {
                break;
            }
            if !keep.contains(&name) {
                keep.push(name);
            }
        }
        if let Some(last) = self.follow_up(history) {
            keep.push(&self.agents[last].spec.name);
        }
        let offered = self.agents.iter().map(|a| &a.spec.name).filter(|name| keep.contains(&name.as_str()));
        let shortlist = Some(offered.cloned().collect());
        Narrowed { likely: confident, shortlist }
    }

    fn follow_up(&self, history: &[Message]) -> Option<usize> {
        let last = history.iter().rev().find(|m| m.role == Role::Assistant)?;
        let name = last.agent.as_deref()?;
        self.agents.iter().position(|a| a.spec.name == name)
    }

    /// Names the closest agents `caller` may use. Offering an agent the caller would then be
    /// refused is no help, and tells them what exists behind the policy.
    fn clarify(&self, scores: &[f32], caller: Option<&Caller>) -> (String, Vec<String>) {
        let mut order: Vec<usize> = (0..self.agents.len())
            .filter(|&i| caller.is_none_or(|c| role_allows(&self.agents[i].spec, c)))
            .collect();
        order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
        let top = order.first().map_or(0.0, |&i| scores[i]);
        // A third name is only worth the caller's attention if it is a real contender.
        let picked: Vec<usize> = order
            .iter()
            .copied()
            .take(MAX_CANDIDATES)
            .enumerate()
            .filter(|&(rank, i)| rank < 2 || scores[i] >= 0.5 * top)
            .map(|(_, i)| i)
            .collect();
        let named: Vec<String> = picked
            .iter()
            .map(|&i| {
                let a = &self.agents[i];
                if a.hint.is_empty() { a.spec.name.clone() } else { format!("{} ({})", a.spec.name, a.hint) }
            })
            .collect();
        let question = match named.as_slice() {
            [] => "I'm not sure which assistant can help, and none is available to you for this.".to_string(),
            [only] => format!("I'm not sure which assistant can help. Did you mean {only}?"),
            [init @ .., last] => {
                format!("I'm not sure which assistant can help. Did you mean {} or {last}?", init.join(", "))
            }
        };
        let candidates = picked.iter().map(|&i| self.agents[i].spec.name.clone()).collect();
        (question, candidates)
    }
}

#[async_trait]
impl Router for LexicalRouter {
    async fn route(&self, ctx: &RunContext, question: &str, history: &[Message]) -> Result<RouteDecision> {
        self.decide_for(Some(&ctx.caller), question, history)
    }
}

/// Every agent's routing texts as `(agent index, text)`: its name, its description whole and
/// clause by clause (each clause a short, strong signal), its examples and its topics.
fn profile_texts(agents: &[Arc<AgentSpec>], topics: &[(String, Vec<String>)]) -> Vec<(usize, String)> {
    let mut texts: Vec<(usize, String)> = Vec::new();
    for (i, spec) in agents.iter().enumerate() {
        texts.push((i, spec.name.replace(['_', '-'], " ")));
        texts.push((i, spec.description.clone()));
        for clause in spec.description.split([',', ';', ':', '.', '(', ')', '\n', '—']) {
            if clause.trim() != spec.description.trim() {
                texts.push((i, clause.trim().to_string()));
            }
        }
        texts.extend(spec.examples.iter().map(|e| (i, e.clone())));
        for (_, list) in topics.iter().filter(|(name, _)| *name == spec.name) {
            texts.extend(list.iter().map(|t| (i, t.clone())));
        }
    }
    texts.retain(|(_, t)| !t.trim().is_empty());
    texts
}

/// The description up to its first clause break, lowercased at the start and cut at a word
/// boundary, e.g. "sales analytics over the deals pipeline".
fn first_clause(description: &str) -> String {
    const MAX: usize = 60;
    let clause = description.split([':', ';', ',', '.', '(', '\n']).next().unwrap_or("").trim();
    let mut out = String::with_capacity(clause.len().min(MAX + 3));
    let mut chars = clause.chars();
    if let Some(first) = chars.next() {
        // Keep acronyms ("SQL analyst") intact; only sentence case is lowered.
        let acronym = chars.clone().next().is_some_and(char::is_uppercase);
        if acronym {
            out.push(first);
        } else {
            out.extend(first.to_lowercase());
        }
    }
    out.push_str(chars.as_str());
    if out.chars().count() > MAX {
        let cut: String = out.chars().take(MAX).collect();
        let cut = cut.rsplit_once(' ').map_or(cut.as_str(), |(head, _)| head);
        out = format!("{}…", cut.trim_end());
    }
    out
}
