//! Text normalisation shared by training and routing (tokens, stopwords, a light stemmer), and
//! the clause splitting behind multi-intent routing.

/// Calls `emit` with every token of `text` and whether it is a stopword: lowercased, split on
/// non-alphanumerics, lightly stemmed, `%` as `percent`, so "25%" meets "percent". Nothing is
/// dropped, so word pairs such as "how many" or "my card" survive for the classifier; stopwords
/// and single letters are only flagged. Indexing and routing must both come through here,
/// otherwise a query term and an indexed term that mean the same thing never meet.
pub(crate) fn for_each_token(text: &str, buf: &mut String, mut emit: impl FnMut(&str, bool)) {
    let flush = |buf: &mut String, emit: &mut dyn FnMut(&str, bool)| {
        if buf.is_empty() {
            return;
        }
        let stopword =
            is_stopword(buf) || (buf.chars().nth(1).is_none() && !buf.starts_with(char::is_numeric));
        stem(buf);
        emit(buf, stopword);
        buf.clear();
    };
    buf.clear();
    for c in text.chars() {
        if c.is_alphanumeric() {
            buf.extend(c.to_lowercase());
        } else {
            flush(buf, &mut emit);
            if c == '%' {
                emit("percent", false);
            }
        }
    }
    flush(buf, &mut emit);
}

/// Function words that carry no topic of their own: they still form word pairs for the
/// classifier, but a question made only of them is not judged on word coverage. Question words
/// and modals are included: "who must approve" and "who accessed" should be told apart by
/// "approve" and "accessed", not "who".
fn is_stopword(word: &str) -> bool {
    matches!(
        word,
        "a" | "about"
            | "after"
            | "all"
            | "also"
            | "am"
            | "an"
            | "and"
            | "any"
            | "are"
            | "as"
            | "at"
            | "be"
            | "been"
            | "being"
            | "but"
            | "by"
            | "can"
            | "could"
            | "did"
            | "do"
            | "does"
            | "doing"
            | "don"
            | "each"
            | "for"
            | "from"
            | "give"
            | "had"
            | "has"
            | "have"
            | "he"
            | "her"
            | "here"
            | "his"
            | "how"
            | "i"
            | "if"
            | "in"
            | "into"
            | "is"
            | "it"
            | "its"
            | "just"
            | "know"
            | "let"
            | "like"
            | "ll"
            | "many"
            | "may"
            | "me"
            | "might"
            | "much"
            | "must"
            | "my"
            | "no"
            | "not"
            | "now"
            | "of"
            | "on"
            | "only"
            | "or"
            | "our"
            | "please"
            | "re"
            | "shall"
            | "she"
            | "should"
            | "show"
            | "so"
            | "some"
            | "tell"
            | "than"
            | "that"
            | "the"
            | "their"
            | "them"
            | "then"
            | "there"
            | "these"
            | "they"
            | "this"
            | "those"
            | "to"
            | "ve"
            | "very"
            | "want"
            | "was"
            | "we"
            | "were"
            | "what"
            | "whats"
            | "when"
            | "where"
            | "which"
            | "while"
            | "who"
            | "whom"
            | "why"
            | "will"
            | "with"
            | "would"
            | "you"
            | "your"
    )
}

/// A light suffix stripper, deliberately weaker than Porter: plurals, `-ing`, `-ed`, `-al` and a
/// final `e`, so "deals"/"deal", "approve"/"approval"/"approved" and "price"/"pricing" share a
/// stem. It only has to be consistent between index and query, not linguistically right.
fn stem(w: &mut String) {
    if w.len() <= 3 || !w.is_ascii() {
        return;
    }
    if w.ends_with("ies") || w.ends_with("ied") {
        w.truncate(w.len() - 3);
        w.push('y');
        return;
    }
    if w.ends_with('s') && !w.ends_with("ss") && !w.ends_with("us") && !w.ends_with("is") {
        w.pop();
    }
    if w.ends_with("ing") && w.len() >= 6 {
        w.truncate(w.len() - 3);
        undouble(w);
    } else if w.ends_with("ed") && w.len() >= 5 {
        w.truncate(w.len() - 2);
        undouble(w);
    } else if w.ends_with("al") && w.len() >= 7 {
        w.truncate(w.len() - 2);
    }
    if w.ends_with('e') && w.len() >= 4 {
        w.pop();
    }
}

/// "stopped" → "stopp" → "stop"; l, s, z and d stay doubled ("billing" → "bill", "added" → "add").
fn undouble(w: &mut String) {
    let doubled = match w.as_bytes() {
        [.., x, y] => x == y && !b"aeioulszd".contains(x),
        _ => false,
    };
    if doubled {
        w.pop();
    }
}

/// Where one request may hold several intents. Word separators carry their spaces so they only
/// match whole words; `", and "` comes before `" and "` so the comma does not end up in a clause.
const SEPARATORS: &[&[u8]] =
    &[b" as well as ", b", and ", b" and ", b" also ", b" plus ", b". ", b"! ", b"?", b";"];

/// The first bytes of the [`SEPARATORS`].
const SEPARATOR_STARTS: &[u8] = b" ,.!?;";

/// Splits `text` into clauses, as byte ranges of `text`, trimmed of whitespace and edge
/// punctuation; empty clauses are dropped. Matching is ASCII case-insensitive, and separators are
/// ASCII, so every range boundary is a char boundary.
pub(crate) fn clauses(text: &str, out: &mut Vec<(usize, usize)>) {
    out.clear();
    let bytes = text.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        // Most bytes start no separator, and are passed over without trying each one there.
        if !SEPARATOR_STARTS.contains(&bytes[i]) {
            i += 1;
            continue;
        }
        let hit = SEPARATORS
            .iter()
            .find(|sep| bytes.get(i..i + sep.len()).is_some_and(|s| s.eq_ignore_ascii_case(sep)));
        match hit {
            Some(sep) => {
                push_trimmed(text, start, i, out);
                i += sep.len();
                start = i;
            }
            None => i += 1,
        }
    }
    push_trimmed(text, start, bytes.len(), out);
}

fn push_trimmed(text: &str, start: usize, end: usize, out: &mut Vec<(usize, usize)>) {
    let Some(slice) = text.get(start..end) else {
        return;
    };
    let edge = |c: char| c.is_whitespace() || matches!(c, ',' | '.' | ';' | ':' | '!' | '?');
    let lead = slice.len() - slice.trim_start_matches(edge).len();
    let trimmed = slice.trim_matches(edge);
    if !trimmed.is_empty() {
        out.push((start + lead, start + lead + trimmed.len()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The content words: tokens that are not stopwords.
    fn terms(text: &str) -> Vec<String> {
        let mut out = Vec::new();
        for_each_token(text, &mut String::new(), |t, stopword| {
            if !stopword {
                out.push(t.to_string())
            }
        });
        out
    }

    fn split(text: &str) -> Vec<&str> {
        let mut ranges = Vec::new();
        clauses(text, &mut ranges);
        ranges.iter().map(|&(s, e)| &text[s..e]).collect()
    }

    #[test]
    fn every_separator_starts_with_a_byte_the_scan_stops_at() {
        for sep in SEPARATORS {
            assert!(SEPARATOR_STARTS.contains(&sep[0]), "{:?}", String::from_utf8_lossy(sep));
        }
    }

    #[test]
    fn related_forms_share_a_stem() {
        let same = |a: &str, b: &str| assert_eq!(terms(a), terms(b), "{a} vs {b}");
        same("deals", "deal");
        same("approve", "approval");
        same("approved", "approves");
        same("policies", "policy");
        same("pricing", "price");
        same("denied", "deny");
        same("stopped", "stop");
        same("billing", "bills");
        same("taxes", "tax");
        assert_ne!(terms("status"), terms("stat"));
    }

    #[test]
    fn drops_stopwords_and_letters_keeps_numbers_and_percent() {
        assert_eq!(
            terms("Who must approve a 25% discount on a 40000 deal?"),
            ["approv", "25", "percent", "discount", "40000", "deal"]
        );
        assert_eq!(terms("what's the weather on Mars"), ["weather", "mar"]);
        assert_eq!(terms("ÉTÉ Straße"), ["été", "straße"]);
    }

    #[test]
    fn splits_clauses_on_conjunctions_and_punctuation() {
        assert_eq!(
            split("Total revenue by region, and who must approve a 25% discount on a 40000 deal?"),
            ["Total revenue by region", "who must approve a 25% discount on a 40000 deal"]
        );
        assert_eq!(split("revenue by region AND stage"), ["revenue by region", "stage"]);
        assert_eq!(
            split("hotel limit; per diem as well as gifts plus PTO. Thanks"),
            ["hotel limit", "per diem", "gifts", "PTO", "Thanks"]
        );
        assert_eq!(split("band candy"), ["band candy"]);
        assert_eq!(split(" ?; "), Vec::<&str>::new());
        assert_eq!(split("margin of 2.5% ok"), ["margin of 2.5% ok"]);
    }
}
