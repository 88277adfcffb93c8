//! Reading the knowledge folder: which files count, what each document's id and title are, and
//! how a document is cut into passages small enough for a citation to point at the right place.

use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;
use switchboard_core::{Error, Result};

/// Extensions indexed; anything else in the folder is ignored.
const EXTENSIONS: &[&str] = &["md", "markdown", "txt", "json"];

/// A document file found in the folder, with what the fingerprint needs to notice a change.
#[derive(Debug, Clone)]
pub(super) struct DocFile {
    pub path: PathBuf,
    /// Path relative to the folder, `/`-separated.
    pub rel: String,
    pub size: u64,
    pub mtime_ns: u128,
}

/// One document as loaded, before splitting.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Document {
    pub id: String,
    pub title: String,
    pub body: String,
    /// Whether `#` lines in `body` are headings (Markdown files and JSON content) or plain text.
    pub markdown: bool,
}

/// The unit that is indexed, retrieved and cited.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Passage {
    pub doc_id: String,
    pub title: String,
    /// The heading the passage sits under; empty for text before the first heading.
    pub section: String,
    pub text: String,
}

/// Every document file under `root`, sorted by relative path. Hidden entries are skipped, which
/// also keeps an index stored inside the folder (`.index/`) out of its own fingerprint.
pub(super) fn list_files(root: &Path) -> Result<Vec<DocFile>> {
    let mut out = Vec::new();
    walk(root, root, &mut out)?;
    out.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(out)
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<DocFile>) -> Result<()> {
    let entries = fs::read_dir(dir)
        .map_err(|e| Error::config(format!("knowledge.path: cannot read folder {}: {e}", dir.display())))?;
    for entry in entries {
        let entry = entry.map_err(|e| {
            Error::config(format!("knowledge.path: cannot read folder {}: {e}", dir.display()))
        })?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        // Follows symlinks on purpose: a folder of linked documents is a normal set-up.
        let Ok(meta) = fs::metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            walk(root, &path, out)?;
            continue;
        }
        let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        if !ext.is_some_and(|e| EXTENSIONS.contains(&e.as_str())) {
            continue;
        }
        let rel = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        let mtime_ns =
            meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos());
        out.push(DocFile { path, rel, size: meta.len(), mtime_ns });
    }
    Ok(())
}

/// The id of a file's document: its relative path without the extension (the file stem for a
/// file at the top of the folder).
fn file_id(file: &DocFile) -> String {
    match file.rel.rsplit_once('.') {
        Some((stem, _)) => stem.to_string(),
        None => file.rel.clone(),
    }
}

/// Loads the document(s) in `file`. A JSON file holds one object or an array of objects.
pub(super) fn load(file: &DocFile) -> Result<Vec<Document>> {
    let text = fs::read_to_string(&file.path).map_err(|e| {
        Error::config(format!(
            "knowledge document {}: cannot be read as UTF-8 text: {e}",
            file.path.display()
        ))
    })?;
    let ext = file.path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).unwrap_or_default();
    let id = file_id(file);
    match ext.as_str() {
        "json" => load_json(file, &id, &text),
        "txt" => Ok(vec![Document {
            title: id.rsplit('/').next().unwrap_or(&id).to_string(),
            id,
            body: text,
            markdown: false,
        }]),
        _ => {
            let (title, body) = split_markdown_title(&text);
            Ok(vec![Document {
                title: title.unwrap_or_else(|| id.rsplit('/').next().unwrap_or(&id).to_string()),
                id,
                body,
                markdown: true,
            }])
        }
    }
}

fn load_json(file: &DocFile, file_id: &str, text: &str) -> Result<Vec<Document>> {
    let bad = |why: String| Error::config(format!("knowledge document {}: {why}", file.path.display()));
    let value: Value = serde_json::from_str(text).map_err(|e| bad(format!("is not valid JSON: {e}")))?;
    let objects = match value {
        Value::Array(items) => items,
        other => vec![other],
    };
    let single = objects.len() == 1;
    objects
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let Value::Object(map) = item else {
                return Err(bad("expected an object with `id`, `title` and `content` (or `text`)".into()));
            };
            let id = match map.get("id") {
                Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
                Some(Value::Number(n)) => n.to_string(),
                _ if single => file_id.to_string(),
                _ => format!("{file_id}#{}", i + 1),
            };
            let body = ["content", "text", "body"]
                .iter()
                .find_map(|k| map.get(*k).and_then(Value::as_str))
                .ok_or_else(|| bad(format!("document `{id}` has no `content` or `text` string")))?
                .to_string();
            let title = map
                .get("title")
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map_or_else(|| id.clone(), str::to_string);
            Ok(Document { id, title, body, markdown: true })
        })
        .collect()
}

/// Takes the first `# ` heading out of a Markdown text as its title, skipping YAML front matter.
fn split_markdown_title(text: &str) -> (Option<String>, String) {
    let mut lines: Vec<&str> = text.lines().collect();
    if lines.first().is_some_and(|l| l.trim() == "---")
        && let Some(end) = lines.iter().skip(1).position(|l| l.trim() == "---")
    {
        lines.drain(..end + 2);
    }
    let mut in_fence = false;
    let mut title = None;
    let mut body = Vec::with_capacity(lines.len());
    for line in lines {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
        }
        if title.is_none()
            && !in_fence
            && let Some(t) = line.strip_prefix("# ")
            && !t.trim().is_empty()
        {
            title = Some(t.trim().trim_end_matches('#').trim().to_string());
            continue;
        }
        body.push(line);
    }
    (title, body.join("\n"))
}

/// The document's title and, for Markdown, its headings outside code fences, in order.
pub(super) fn topics(doc: &Document) -> Vec<String> {
    let mut out = vec![doc.title.clone()];
    if doc.markdown {
        let mut in_fence = false;
        for line in doc.body.lines() {
            if line.trim_start().starts_with("```") {
                in_fence = !in_fence;
            } else if let Some(h) = heading(line).filter(|_| !in_fence) {
                out.push(h.to_string());
            }
        }
    }
    out
}

/// The heading text of a Markdown heading line (`## Lodging` → `Lodging`), if it is one.
fn heading(line: &str) -> Option<&str> {
    let hashes = line.bytes().take_while(|b| *b == b'#').count();
    if !(1..=6).contains(&hashes) {
        return None;
    }
    let rest = &line[hashes..];
    rest.starts_with(' ').then(|| rest.trim().trim_end_matches('#').trim()).filter(|t| !t.is_empty())
}

/// Cuts a document into passages: one group per Markdown section, each split into runs of whole
/// paragraphs of at most about `max_words` words, so a citation points at the part that answers.
pub(super) fn passages(doc: &Document, max_words: usize) -> Vec<Passage> {
    let mut sections: Vec<(String, Vec<String>)> = vec![(String::new(), Vec::new())];
    let mut paragraph: Vec<&str> = Vec::new();
    let mut in_fence = false;
    let flush = |paragraph: &mut Vec<&str>, sections: &mut Vec<(String, Vec<String>)>| {
        if !paragraph.is_empty() {
            let text = paragraph.join("\n");
            if let Some(last) = sections.last_mut() {
                last.1.push(text);
            }
            paragraph.clear();
        }
    };
    for line in doc.body.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
        }
        if doc.markdown
            && !in_fence
            && let Some(h) = heading(line)
        {
            flush(&mut paragraph, &mut sections);
            sections.push((h.to_string(), Vec::new()));
            continue;
        }
        if line.trim().is_empty() && !in_fence {
            flush(&mut paragraph, &mut sections);
        } else {
            paragraph.push(line.trim_end());
        }
    }
    flush(&mut paragraph, &mut sections);

    let mut out = Vec::new();
    for (section, paragraphs) in sections {
        for text in group_paragraphs(&paragraphs, max_words.max(1)) {
            out.push(Passage {
                doc_id: doc.id.clone(),
                title: doc.title.clone(),
                section: section.clone(),
                text,
            });
        }
    }
    out
}

fn word_count(s: &str) -> usize {
    s.split_whitespace().count()
}

/// Packs paragraphs into chunks of at most `max_words` words, splitting an oversized paragraph
/// at word boundaries.
fn group_paragraphs(paragraphs: &[String], max_words: usize) -> Vec<String> {
    let mut chunks = Vec::new();
    let mut current: Vec<String> = Vec::new();
    let mut words = 0;
    for p in paragraphs {
        let n = word_count(p);
        if n > max_words {
            if !current.is_empty() {
                chunks.push(current.join("\n\n"));
                current.clear();
                words = 0;
            }
            let all: Vec<&str> = p.split_whitespace().collect();
            chunks.extend(all.chunks(max_words).map(|c| c.join(" ")));
            continue;
        }
        if words + n > max_words && !current.is_empty() {
            chunks.push(current.join("\n\n"));
            current.clear();
            words = 0;
        }
        current.push(p.clone());
        words += n;
    }
    if !current.is_empty() {
        chunks.push(current.join("\n\n"));
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md(body: &str) -> Document {
        let (title, body) = split_markdown_title(body);
        Document { id: "d".into(), title: title.unwrap_or_else(|| "d".into()), body, markdown: true }
    }

    #[test]
    fn markdown_title_is_the_first_h1_and_sections_become_passages() {
        let doc = md(
            "---\nx: 1\n---\nIntro line.\n\n# Travel Policy\n\n## Lodging\nHotels cost.\n\n## Meals\nFood.\n```\n# not a heading\n```\n",
        );
        assert_eq!(doc.title, "Travel Policy");
        let ps = passages(&doc, 200);
        let shape: Vec<(&str, &str)> = ps.iter().map(|p| (p.section.as_str(), p.text.as_str())).collect();
        assert_eq!(
            shape,
            vec![
                ("", "Intro line."),
                ("Lodging", "Hotels cost."),
                ("Meals", "Food.\n```\n# not a heading\n```"),
            ]
        );
    }

    #[test]
    fn long_sections_split_at_paragraphs_and_words() {
        let para = |n: usize| vec!["w"; n].join(" ");
        let doc = Document {
            id: "d".into(),
            title: "d".into(),
            body: format!("{}\n\n{}\n\n{}", para(30), para(30), para(130)),
            markdown: false,
        };
        let counts: Vec<usize> = passages(&doc, 50).iter().map(|p| word_count(&p.text)).collect();
        assert_eq!(counts, vec![30, 30, 50, 50, 30]);
    }

    #[test]
    fn heading_lines_need_a_space_and_text() {
        assert_eq!(heading("## Lodging ##"), Some("Lodging"));
        assert_eq!(heading("#hashtag"), None);
        assert_eq!(heading("####### seven"), None);
        assert_eq!(heading("# "), None);
    }
}
