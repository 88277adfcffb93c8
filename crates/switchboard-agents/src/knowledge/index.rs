//! The persistent tantivy index of passages: built at start-up when the folder changed, reused
//! otherwise, and searched with a query built from analyzed terms so user punctuation can never
//! make a query fail to parse.

use super::docs::{self, Passage};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use switchboard_core::{Error, Result};
use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, Occur, Query, TermQuery};
use tantivy::schema::{
    Field, IndexRecordOption, STORED, STRING, Schema, TantivyDocument, TextFieldIndexing, TextOptions, Value,
};
use tantivy::tokenizer::{
    AsciiFoldingFilter, Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, StopWordFilter,
    TextAnalyzer,
};
use tantivy::{DocAddress, Index, IndexReader, IndexWriter, ReloadPolicy, Searcher, Term};

/// Bumped whenever the schema, the analyzer or the passage splitting changes, so indexes built by
/// an older version are rebuilt rather than misread.
const FORMAT: u32 = 1;
const TOKENIZER: &str = "switchboard_en";
/// The file, written last, that records what folder state an index was built from.
pub(super) const MANIFEST_FILE: &str = "switchboard-index.json";
/// Query terms beyond this are dropped: a pasted essay must not turn into a huge query.
const MAX_QUERY_TERMS: usize = 64;
/// Indexing budget; tantivy's minimum per thread is 15 MB.
const WRITER_MEMORY: usize = 32_000_000;

/// Lucene's English list plus the words questions are made of, so "what is the … in the …"
/// leaves only the words that carry meaning.
const STOPWORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it", "no",
    "not", "of", "on", "or", "such", "that", "the", "their", "then", "there", "these", "they", "this", "to",
    "was", "will", "with", "what", "whats", "which", "who", "whom", "how", "when", "where", "why", "do",
    "does", "did", "i", "me", "my", "we", "our", "us", "you", "your", "can", "could", "should", "would",
    "am", "been", "being", "have", "has", "had", "about", "any", "from", "so", "than", "too", "very", "s",
    "t", "just", "tell", "please", "its", "also", "those", "were", "here", "d", "ll", "re", "ve",
];

/// What start-up did with the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexInfo {
    /// Where the index lives.
    pub dir: PathBuf,
    /// Whether it was (re)built at start-up rather than reused.
    pub rebuilt: bool,
    /// Documents indexed.
    pub documents: usize,
    /// Passages indexed.
    pub passages: usize,
}

#[derive(Serialize, Deserialize)]
struct Manifest {
    fingerprint: String,
    documents: usize,
}

#[derive(Clone, Copy)]
struct Fields {
    doc_id: Field,
    title: Field,
    section: Field,
    body: Field,
}

/// A retrieved passage with its BM25 score.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Hit {
    pub score: f32,
    pub passage: Passage,
    /// Where the passage is in the index, to read its text again (see
    /// [`SearchResult::set_texts_aside`]).
    address: DocAddress,
}

/// The result of one search: the hits, best first, and the query's terms with their IDF weight
/// (used to pick the sentences that answer).
#[derive(Clone, Default)]
pub(super) struct SearchResult {
    pub hits: Vec<Hit>,
    pub terms: Vec<(String, f32)>,
    /// The index as the search saw it, so texts read again are the ones it found.
    searcher: Option<Searcher>,
}

impl SearchResult {
    /// Lets go of the passages' texts, which the index keeps: a conversation held open while a
    /// model writes from them (minutes, streamed) then holds only where they are. Read them
    /// again with [`PassageIndex::restore_texts`].
    pub fn set_texts_aside(&mut self) {
        for hit in &mut self.hits {
            hit.passage.text = String::new();
        }
    }
}

/// An opened passage index. The reader is built once and reused for every request.
pub(super) struct PassageIndex {
    reader: IndexReader,
    fields: Fields,
    analyzer: TextAnalyzer,
    info: IndexInfo,
}

fn analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter)
        .filter(StopWordFilter::remove(STOPWORDS.iter().map(|w| (*w).to_string())))
        .filter(Stemmer::new(Language::English))
        .build()
}

fn schema() -> (Schema, Fields) {
    let text = TextOptions::default()
        .set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(TOKENIZER)
                .set_index_option(IndexRecordOption::WithFreqs),
        )
        .set_stored();
    let mut builder = Schema::builder();
    let fields = Fields {
        doc_id: builder.add_text_field("doc_id", STRING | STORED),
        title: builder.add_text_field("title", text.clone()),
        section: builder.add_text_field("section", text.clone()),
        body: builder.add_text_field("body", text),
    };
    (builder.build(), fields)
}

/// What the folder looks like, as text: any added, removed, resized or touched file, or a change
/// of the splitting setting, changes it.
fn fingerprint(files: &[docs::DocFile], passage_words: usize) -> String {
    let mut out = format!("format={FORMAT} passage_words={passage_words}\n");
    for f in files {
        out.push_str(&format!("{}\t{}\t{}\n", f.rel, f.size, f.mtime_ns));
    }
    out
}

fn tantivy_err(what: &str, dir: &Path) -> impl Fn(tantivy::TantivyError) -> Error {
    let msg = format!("knowledge index {}: {what}", dir.display());
    move |e| Error::internal(format!("{msg}: {e}"))
}

fn io_err(what: &str, path: &Path) -> impl Fn(std::io::Error) -> Error {
    let msg = format!("knowledge index: cannot {what} {}", path.display());
    move |e| Error::config(format!("{msg}: {e}"))
}

impl PassageIndex {
    /// Opens the index in `index_dir` if it was built from the folder as it is now, otherwise
    /// builds it afresh from `docs_dir`. Blocking: meant for start-up.
    pub fn open_or_build(docs_dir: &Path, index_dir: &Path, passage_words: usize) -> Result<Self> {
        let files = docs::list_files(docs_dir)?;
        let print = fingerprint(&files, passage_words);
        if let Some(index) = Self::open_if_current(index_dir, &print) {
            return Ok(index);
        }
        Self::build(&files, index_dir, &print, passage_words)?;
        let mut index = Self::open(index_dir)?;
        index.info.rebuilt = true;
        Ok(index)
    }

    /// What start-up did.
    pub fn info(&self) -> &IndexInfo {
        &self.info
    }

    fn open_if_current(dir: &Path, print: &str) -> Option<Self> {
        let manifest = fs::read_to_string(dir.join(MANIFEST_FILE)).ok()?;
        let manifest: Manifest = serde_json::from_str(&manifest).ok()?;
        if manifest.fingerprint != print {
            return None;
        }
        match Self::open(dir) {
            Ok(index) => Some(index),
            Err(e) => {
                tracing::warn!(index = %dir.display(), error = %e, "knowledge index unreadable; rebuilding");
                None
            }
        }
    }

    fn open(dir: &Path) -> Result<Self> {
        let manifest: Manifest = fs::read_to_string(dir.join(MANIFEST_FILE))
            .ok()
            .and_then(|m| serde_json::from_str(&m).ok())
            .ok_or_else(|| {
                Error::internal(format!("knowledge index {}: manifest missing after build", dir.display()))
            })?;
        let index = Index::open_in_dir(dir).map_err(tantivy_err("open", dir))?;
        let (expected, fields) = schema();
        if index.schema() != expected {
            return Err(Error::internal(format!(
                "knowledge index {}: schema differs from this version's",
                dir.display()
            )));
        }
        index.tokenizers().register(TOKENIZER, analyzer());
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(tantivy_err("open reader", dir))?;
        let passages = usize::try_from(reader.searcher().num_docs()).unwrap_or(usize::MAX);
        Ok(Self {
            reader,
            fields,
            analyzer: analyzer(),
            info: IndexInfo {
                dir: dir.to_path_buf(),
                rebuilt: false,
                documents: manifest.documents,
                passages,
            },
        })
    }

    /// Builds into a sibling folder and swaps it in, so a crash mid-build leaves no index that
    /// looks current (the manifest is written last, inside the new folder).
    fn build(files: &[docs::DocFile], dir: &Path, print: &str, passage_words: usize) -> Result<()> {
        let name =
            dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "index".into());
        let parent = dir.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(parent).map_err(io_err("create folder", parent))?;
        let tmp = parent.join(format!(".{name}.building-{}", std::process::id()));
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(io_err("remove", &tmp))?;
        }
        fs::create_dir_all(&tmp).map_err(io_err("create folder", &tmp))?;

        let (schema, fields) = schema();
        let index = Index::create_in_dir(&tmp, schema).map_err(tantivy_err("create", &tmp))?;
        index.tokenizers().register(TOKENIZER, analyzer());
        let mut writer: IndexWriter<TantivyDocument> =
            index.writer_with_num_threads(1, WRITER_MEMORY).map_err(tantivy_err("open writer", &tmp))?;
        let mut documents = 0;
        let mut passages = 0;
        for file in files {
            for doc in docs::load(file)? {
                documents += 1;
                for p in docs::passages(&doc, passage_words) {
                    let mut d = TantivyDocument::default();
                    d.add_text(fields.doc_id, &p.doc_id);
                    d.add_text(fields.title, &p.title);
                    d.add_text(fields.section, &p.section);
                    d.add_text(fields.body, &p.text);
                    writer.add_document(d).map_err(tantivy_err("add document", &tmp))?;
                    passages += 1;
                }
            }
        }
        writer.commit().map_err(tantivy_err("commit", &tmp))?;
        writer.wait_merging_threads().map_err(tantivy_err("finish merging", &tmp))?;
        drop(index);

        let manifest = serde_json::to_string(&Manifest { fingerprint: print.to_string(), documents })
            .map_err(|e| Error::internal(format!("knowledge index manifest: {e}")))?;
        let manifest_path = tmp.join(MANIFEST_FILE);
        fs::write(&manifest_path, manifest).map_err(io_err("write", &manifest_path))?;
        if dir.exists() {
            fs::remove_dir_all(dir).map_err(io_err("remove old index", dir))?;
        }
        fs::rename(&tmp, dir).map_err(io_err("move new index into", dir))?;
        tracing::info!(index = %dir.display(), documents, passages, "knowledge index built");
        Ok(())
    }

    /// The analyzed terms of `text`, as the index sees them (lower-cased, stemmed, no stopwords).
    pub fn analyze(&self, text: &str) -> Vec<String> {
        let mut analyzer = self.analyzer.clone();
        let mut stream = analyzer.token_stream(text);
        let mut out = Vec::new();
        while stream.advance() {
            out.push(stream.token().text.clone());
        }
        out
    }

    /// The `top_k` best passages for `question`. Every query term may match the title, the
    /// section heading or the body, each scored by BM25 on its own. Unboosted on purpose: short
    /// fields already score a match highly, and boosting headings let one heading word outrank
    /// a passage that answers (measured on the demo questions).
    pub fn search(&self, question: &str, top_k: usize) -> Result<SearchResult> {
        let mut seen = HashSet::new();
        let terms: Vec<String> = self
            .analyze(question)
            .into_iter()
            .filter(|t| seen.insert(t.clone()))
            .take(MAX_QUERY_TERMS)
            .collect();
        if terms.is_empty() || top_k == 0 {
            return Ok(SearchResult::default());
        }
        let searcher = self.reader.searcher();
        let err = |e: tantivy::TantivyError| {
            Error::internal(format!("knowledge index {}: search failed: {e}", self.info.dir.display()))
        };
        let weights = self.idf(&searcher, &terms).map_err(err)?;
        let f = self.fields;
        let clauses: Vec<(Occur, Box<dyn Query>)> = terms
            .iter()
            .flat_map(|t| {
                [f.title, f.section, f.body].into_iter().map(move |field| {
                    let q = TermQuery::new(Term::from_field_text(field, t), IndexRecordOption::WithFreqs);
                    (Occur::Should, Box::new(q) as Box<dyn Query>)
                })
            })
            .collect();
        let query = BooleanQuery::new(clauses);
        let top = searcher.search(&query, &TopDocs::with_limit(top_k).order_by_score()).map_err(err)?;
        let mut hits = Vec::with_capacity(top.len());
        for (score, address) in top {
            let doc: TantivyDocument = searcher.doc(address).map_err(err)?;
            let text = |field: Field| field_text(&doc, field);
            hits.push(Hit {
                score,
                passage: Passage {
                    doc_id: text(f.doc_id),
                    title: text(f.title),
                    section: text(f.section),
                    text: text(f.body),
                },
                address,
            });
        }
        Ok(SearchResult { hits, terms: terms.into_iter().zip(weights).collect(), searcher: Some(searcher) })
    }

    /// Reads the texts [`SearchResult::set_texts_aside`] let go of again, from the index as the
    /// search saw it.
    pub fn restore_texts(&self, result: &mut SearchResult) -> Result<()> {
        let Some(searcher) = &result.searcher else { return Ok(()) };
        for hit in result.hits.iter_mut().filter(|h| h.passage.text.is_empty()) {
            let doc: TantivyDocument = searcher.doc(hit.address).map_err(|e| {
                Error::internal(format!(
                    "knowledge index {}: a passage could not be read: {e}",
                    self.info.dir.display()
                ))
            })?;
            hit.passage.text = field_text(&doc, self.fields.body);
        }
        Ok(())
    }

    /// BM25's IDF of each term over passage bodies; rare words decide which sentence answers.
    fn idf(&self, searcher: &Searcher, terms: &[String]) -> tantivy::Result<Vec<f32>> {
        let n = searcher.num_docs() as f32;
        terms
            .iter()
            .map(|t| {
                let df = searcher.doc_freq(&Term::from_field_text(self.fields.body, t))? as f32;
                Ok((1.0 + (n - df + 0.5) / (df + 0.5)).ln())
            })
            .collect()
    }
}

/// A stored field's text, empty when the document has none.
fn field_text(doc: &TantivyDocument, field: Field) -> String {
    doc.get_first(field).and_then(|v| v.as_str()).unwrap_or_default().to_string()
}
