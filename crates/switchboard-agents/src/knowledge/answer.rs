//! Turning retrieved passages into what the caller reads: the sentences that answer, snippets
//! for citations, the sources list, and the grounded prompt for an LLM.

use super::index::Hit;
use switchboard_core::Citation;

/// About how long a citation snippet is.
pub(super) const SNIPPET_CHARS: usize = 300;
/// About how long the extractive answer may grow when it takes a second sentence or a list.
const ANSWER_CHARS: usize = 480;
/// Words after which a period does not end a sentence.
const ABBREVIATIONS: &[&str] =
    &["e.g", "i.e", "etc", "vs", "mr", "mrs", "ms", "dr", "no", "approx", "incl", "inc", "st", "u.s"];

/// Analyzes text into index terms; the index provides it so sentences are scored with exactly
/// the terms the query was made of.
pub(super) type Analyze<'a> = &'a dyn Fn(&str) -> Vec<String>;

/// Strips the Markdown that reads badly in plain text: list and quote markers, emphasis, code
/// ticks, link targets and table pipes. The flag says whether the line was a list item or a
/// table row.
fn clean_line(line: &str) -> (String, bool) {
    let mut t = line.trim();
    let mut item = false;
    while let Some(rest) = t.strip_prefix('>') {
        t = rest.trim_start();
    }
    for marker in ["- [ ] ", "- [x] ", "- ", "* ", "+ "] {
        if let Some(rest) = t.strip_prefix(marker) {
            t = rest.trim_start();
            item = true;
            break;
        }
    }
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    if digits > 0 && digits < 4 {
        let rest = &t[digits..];
        if let Some(rest) = rest.strip_prefix(". ").or_else(|| rest.strip_prefix(") ")) {
            t = rest.trim_start();
            item = true;
        }
    }
    if t.contains('|') {
        if t.chars().all(|c| matches!(c, '|' | '-' | ':' | ' ')) {
            return (String::new(), true);
        }
        let cells: Vec<&str> = t.split('|').map(str::trim).filter(|c| !c.is_empty()).collect();
        return (strip_inline(&cells.join("; ")), true);
    }
    (strip_inline(t), item)
}

/// `[text](url)` → `text`; drops `**`, `__` and backticks.
fn strip_inline(s: &str) -> String {
    let s = s.replace("**", "").replace("__", "").replace('`', "");
    let mut out = String::with_capacity(s.len());
    let mut rest = s.as_str();
    while let Some(open) = rest.find('[') {
        let after = &rest[open + 1..];
        let link = after.find("](").and_then(|close| {
            let target = &after[close + 2..];
            target.find(')').map(|end| (close, close + 2 + end + 1))
        });
        match link {
            Some((close, consumed)) => {
                out.push_str(&rest[..open]);
                out.push_str(&after[..close]);
                rest = &after[consumed..];
            }
            None => {
                out.push_str(&rest[..=open]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Splits one cleaned line into sentences.
fn split_sentences(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut start = 0;
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    for (i, &(pos, c)) in chars.iter().enumerate() {
        if !matches!(c, '.' | '?' | '!') {
            continue;
        }
        let (Some(&(_, space)), Some(&(_, next))) = (chars.get(i + 1), chars.get(i + 2)) else {
            continue;
        };
        if !space.is_whitespace()
            || !(next.is_uppercase() || next.is_ascii_digit() || "$(\"'“".contains(next))
        {
            continue;
        }
        if c == '.' {
            let word = line[start..pos]
                .rsplit(char::is_whitespace)
                .next()
                .unwrap_or("")
                .trim_start_matches(['(', '"'])
                .to_lowercase();
            if ABBREVIATIONS.contains(&word.as_str()) || word.len() == 1 {
                continue;
            }
        }
        let end = pos + c.len_utf8();
        let s = line[start..end].trim();
        if !s.is_empty() {
            out.push(s.to_string());
        }
        start = end;
    }
    let s = line[start..].trim();
    if !s.is_empty() {
        out.push(s.to_string());
    }
    out
}

/// A passage as plain-text sentences (list items and table rows count as sentences), each
/// flagged when it came from a list item or table row.
fn units(text: &str) -> Vec<(String, bool)> {
    let mut in_fence = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        let (cleaned, item) = if in_fence { (line.trim().to_string(), false) } else { clean_line(line) };
        out.extend(split_sentences(&cleaned).into_iter().map(|s| (s, item)));
    }
    out
}

/// A passage as plain-text sentences (list items and table rows count as sentences).
pub(super) fn sentences(text: &str) -> Vec<String> {
    units(text).into_iter().map(|(s, _)| s).collect()
}

/// How well each sentence matches: the summed IDF of the distinct query terms it contains.
fn score(sentences: &[String], terms: &[(String, f32)], analyze: Analyze<'_>) -> Vec<f32> {
    sentences
        .iter()
        .map(|s| {
            let words = analyze(s);
            terms.iter().filter(|(t, _)| words.contains(t)).map(|(_, w)| w.max(0.01)).sum()
        })
        .collect()
}

/// The first sentence with the highest score (index 0 when nothing matches).
fn best(scores: &[f32]) -> usize {
    let mut best = (0, f32::MIN);
    for (i, &s) in scores.iter().enumerate() {
        if s > best.1 {
            best = (i, s);
        }
    }
    best.0
}

/// The list `i` belongs to: the lead-in sentence ending in `:` and the end (exclusive) of the
/// run of list items after it. `i` may be the lead-in itself or one of its items.
fn list_around(flagged: &[(String, bool)], i: usize) -> Option<(usize, usize)> {
    let lead = if flagged[i].1 {
        let first = (0..=i).rev().take_while(|&j| flagged[j].1).last()?;
        first.checked_sub(1)?
    } else {
        i
    };
    if !flagged[lead].0.ends_with(':') || !flagged.get(lead + 1).is_some_and(|u| u.1) {
        return None;
    }
    let end = (lead + 1..flagged.len()).find(|&j| !flagged[j].1).unwrap_or(flagged.len());
    Some((lead, end))
}

/// The sentence(s) of `text` that answer best, kept in document order: the best one and a close
/// runner-up; or, when the best is part of a list, the list's lead-in with the whole list if it
/// is short, else with its best items.
pub(super) fn answer_sentences(text: &str, terms: &[(String, f32)], analyze: Analyze<'_>) -> String {
    let flagged = units(text);
    if flagged.is_empty() {
        return String::new();
    }
    let units: Vec<String> = flagged.iter().map(|(s, _)| s.clone()).collect();
    let scores = score(&units, terms, analyze);
    let top = best(&scores);
    let size = |range: &[usize]| range.iter().map(|&i| units[i].len() + 1).sum::<usize>();
    // Candidates for a second sentence, best first: close runners-up only.
    let runners_up = |among: std::ops::Range<usize>| {
        let mut c: Vec<usize> =
            among.filter(|&i| i != top && scores[i] > 0.0 && scores[i] >= scores[top] * 0.5).collect();
        c.sort_by(|a, b| scores[*b].total_cmp(&scores[*a]).then(a.cmp(b)));
        c
    };
    let mut picked = vec![top];
    match list_around(&flagged, top) {
        Some((lead, end)) => {
            let whole: Vec<usize> = (lead..end).collect();
            if size(&whole) <= ANSWER_CHARS {
                picked = whole;
            } else {
                // The items that match, best first; failing any, the list's first items.
                let mut items: Vec<usize> = (lead + 1..end).filter(|&i| scores[i] > 0.0).collect();
                items.sort_by(|a, b| scores[*b].total_cmp(&scores[*a]).then(a.cmp(b)));
                if items.is_empty() {
                    items = (lead + 1..end).collect();
                }
                let bar = items.first().map_or(0.0, |&i| scores[i] * 0.5);
                picked = vec![lead];
                for i in items {
                    if scores[i] < bar || size(&picked) + units[i].len() > ANSWER_CHARS {
                        break;
                    }
                    picked.push(i);
                }
            }
        }
        None => {
            if let Some(&i) = runners_up(0..units.len()).first()
                && size(&picked) + units[i].len() <= ANSWER_CHARS
            {
                picked.push(i);
            }
        }
    }
    picked.sort_unstable();
    let parts: Vec<String> = picked
        .iter()
        .enumerate()
        .map(|(n, &i)| {
            let s = units[i].as_str();
            let last = n + 1 == picked.len();
            if s.ends_with(['.', '!', '?', ':', ';']) {
                s.to_string()
            } else if last {
                format!("{s}.")
            } else {
                format!("{s};")
            }
        })
        .collect();
    parts.join(" ")
}

/// Cuts `s` to at most `max` bytes at a word boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    match s[..end].rfind(char::is_whitespace) {
        Some(space) if space > max / 2 => s[..space].trim_end(),
        _ => &s[..end],
    }
}

/// About `max` characters of the passage around its best-matching sentence.
pub(super) fn snippet(text: &str, terms: &[(String, f32)], analyze: Analyze<'_>, max: usize) -> String {
    let units = sentences(text);
    if units.is_empty() {
        return String::new();
    }
    let whole = units.join(" ");
    if whole.len() <= max {
        return whole;
    }
    let scores = score(&units, terms, analyze);
    let top = best(&scores);
    let sentence = &units[top];
    if sentence.len() > max {
        // One long sentence: centre the window on its first matching word.
        let hit = sentence
            .split_whitespace()
            .find(|w| {
                let a = analyze(w);
                terms.iter().any(|(t, _)| a.contains(t))
            })
            .and_then(|w| sentence.find(w))
            .unwrap_or(0);
        let mut start = hit.saturating_sub(max / 3);
        while !sentence.is_char_boundary(start) {
            start -= 1;
        }
        if start > 0 {
            start = sentence[start..]
                .char_indices()
                .find(|(_, c)| c.is_whitespace())
                .map_or(start, |(w, c)| start + w + c.len_utf8());
        }
        let body = cut(&sentence[start..], max);
        let lead = if start > 0 { "…" } else { "" };
        let tail = if start + body.len() < sentence.len() { "…" } else { "" };
        return format!("{lead}{body}{tail}");
    }
    let mut out = sentence.clone();
    for unit in &units[top + 1..] {
        if out.len() + 1 + unit.len() > max {
            break;
        }
        out.push(' ');
        out.push_str(unit);
    }
    if out.len() < max / 2
        && let Some(prev) = top.checked_sub(1).map(|i| &units[i])
        && prev.len() + 1 + out.len() <= max
    {
        out = format!("{prev} {out}");
    }
    let ends_passage = units.last().is_some_and(|l| out.ends_with(l.as_str()));
    if ends_passage { out } else { format!("{out} …") }
}

/// `Title › Section (id)`, how a source is named in answers and prompts.
pub(super) fn source_label(hit: &Hit) -> String {
    let p = &hit.passage;
    if p.section.is_empty() || p.section == p.title {
        format!("{} ({})", p.title, p.doc_id)
    } else {
        format!("{} › {} ({})", p.title, p.section, p.doc_id)
    }
}

/// The `Sources:` footer, numbered like the citations.
pub(super) fn sources_footer(hits: &[Hit]) -> String {
    let mut out = String::from("Sources:");
    for (i, hit) in hits.iter().enumerate() {
        out.push_str(&format!("\n[{}] {}", i + 1, source_label(hit)));
    }
    out
}

/// One citation per passage, numbered in order.
pub(super) fn citations(hits: &[Hit], terms: &[(String, f32)], analyze: Analyze<'_>) -> Vec<Citation> {
    hits.iter()
        .map(|h| Citation {
            id: h.passage.doc_id.clone(),
            title: h.passage.title.clone(),
            snippet: snippet(&h.passage.text, terms, analyze, SNIPPET_CHARS),
        })
        .collect()
}

/// The answer without an LLM: the best sentences of the top passage, then the sources.
pub(super) fn extractive(hits: &[Hit], terms: &[(String, f32)], analyze: Analyze<'_>) -> String {
    let Some(top) = hits.first() else {
        return String::new();
    };
    let mut answer = answer_sentences(&top.passage.text, terms, analyze);
    if answer.is_empty() {
        answer = format!("See {}.", source_label(top));
    }
    format!("{answer} [1]\n\n{}", sources_footer(hits))
}

/// The system prompt of a grounded answer.
pub(super) fn system_prompt(agent: &str, description: &str) -> String {
    format!(
        "You are `{agent}`, a knowledge assistant. Your documents: {description}\n\
         Answer the question using only the numbered passages in the user's message. After each \
         statement, cite the passage(s) it rests on by number in square brackets, e.g. [1] or \
         [2][3]. Quote amounts, limits, thresholds and dates exactly as the passages give them. \
         If the passages do not answer the question, say that the documents do not cover it; \
         never add outside knowledge. Be concise: a few sentences."
    )
}

/// The user message: the numbered passages, then the question.
pub(super) fn user_prompt(hits: &[Hit], question: &str) -> String {
    let mut out = String::from("Passages:\n");
    for (i, hit) in hits.iter().enumerate() {
        out.push_str(&format!("\n[{}] {}\n{}\n", i + 1, source_label(hit), hit.passage.text.trim()));
    }
    out.push_str(&format!("\nQuestion: {}", question.trim()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect()
    }

    fn terms(ts: &[&str]) -> Vec<(String, f32)> {
        ts.iter().map(|t| ((*t).to_string(), 1.0)).collect()
    }

    #[test]
    fn markdown_is_cleaned_into_sentences() {
        let text = "- **Hotels** are capped. See [the table](http://x/y) e.g. below.\n\
                    | City | Limit |\n|---|---|\n| Paris | $300 |\n2. Book early! Then relax.";
        assert_eq!(
            sentences(text),
            vec![
                "Hotels are capped.",
                "See the table e.g. below.",
                "City; Limit",
                "Paris; $300",
                "Book early!",
                "Then relax.",
            ]
        );
    }

    #[test]
    fn the_answer_is_the_best_sentence_or_the_list_it_introduces() {
        let analyze = |s: &str| words(s);
        let text = "Travel is booked in Concur. Hotel stays cost at most $250 per night. \
                    Meals are separate.";
        assert_eq!(
            answer_sentences(text, &terms(&["hotel", "night"]), &analyze),
            "Hotel stays cost at most $250 per night."
        );
        let list = "Intro text here.\nHotel limits per night:\n- $250 in most cities\n- $350 in high-cost cities\nOther text.";
        assert_eq!(
            answer_sentences(list, &terms(&["hotel", "limits"]), &analyze),
            "Hotel limits per night: $250 in most cities; $350 in high-cost cities."
        );
        let long_list = format!(
            "Records are kept for these periods:\n- Email: 3 years.\n- Chat: 1 year.\n{}- Financial records: 7 years.\nAfter the list.",
            "- Padding item that makes the list too long to quote whole, on purpose.\n".repeat(8)
        );
        assert_eq!(
            answer_sentences(&long_list, &terms(&["financial", "records"]), &analyze),
            "Records are kept for these periods: Financial records: 7 years."
        );
    }

    #[test]
    fn snippets_stay_near_the_match_and_within_bounds() {
        let analyze = |s: &str| words(s);
        let filler = "Unrelated words fill this sentence completely. ".repeat(10);
        let text = format!("{filler}The hotel limit is $250 per night. {filler}");
        let s = snippet(&text, &terms(&["hotel"]), &analyze, 120);
        assert!(s.starts_with("The hotel limit is $250"), "{s}");
        assert!(s.len() <= 125, "{}", s.len());
        let long = format!("{} hotel {}", "a ".repeat(200), "b ".repeat(200));
        let s = snippet(&long, &terms(&["hotel"]), &analyze, 100);
        assert!(s.contains("hotel") && s.starts_with('…') && s.ends_with('…'), "{s}");
        assert!(s.len() <= 110);
        let wide = format!("{} hotel {}", "é\u{a0}ü ".repeat(150), "ß\u{2003}".repeat(150));
        let s = snippet(&wide, &terms(&["hotel"]), &analyze, 100);
        assert!(s.contains("hotel") && s.len() <= 110, "{s}");
    }
}
