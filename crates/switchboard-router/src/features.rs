//! Turning text into the sparse vectors the classifier reads: word unigrams and bigrams plus
//! character 3–5-grams of each word, TF-IDF weighted with sublinear term frequency, each family
//! L2-normalised on its own so neither drowns the other.
//!
//! N-grams are hashed to 64 bits as they are produced and never stored as strings, so building
//! over thousands of examples and routing a question allocate almost nothing. A 64-bit collision
//! between two distinct n-grams of one vocabulary is vanishingly unlikely, and harmless if it
//! happens (two rare features share a weight).

use crate::text;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Shortest and longest character n-gram, counted in chars of the word with its `<`/`>` edges.
const CHAR_MIN: usize = 3;
const CHAR_MAX: usize = 5;
/// Seeds that keep the families apart: the word "cat" and the char gram "cat" are different features.
const WORD: u64 = 0x9e37_79b9_7f4a_7c15;
const PAIR: u64 = 0xc2b2_ae3d_27d4_eb4f;
const CHARS: u64 = 0x1656_67b1_9e37_79f9;

/// A hasher for keys that already are 64-bit hashes.
#[derive(Default)]
pub(crate) struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used; this keeps the trait honest for any other key.
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

pub(crate) type PrehashedMap<V> = HashMap<u64, V, BuildHasherDefault<Prehashed>>;

fn fnv(seed: u64, bytes: &[u8]) -> u64 {
    let mut h = seed ^ 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    // A final mix so keys spread over a table's low bits.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 33)
}

/// Which family a hashed feature belongs to; each is normalised separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    Words = 0,
    Chars = 1,
}

/// Reusable buffers for extracting features from one text.
#[derive(Default)]
pub(crate) struct Scratch {
    word: String,
    prev: Option<u64>,
    edged: Vec<u8>,
    /// Char offsets into `edged`, one per char plus the end.
    bounds: Vec<usize>,
    /// `(key, family)` for every n-gram occurrence.
    pub keys: Vec<(u64, Family)>,
    /// The content words (stemmed, no stopwords), hashed, for coverage.
    pub content: Vec<u64>,
    ids: Vec<(u32, Family)>,
    families: Vec<Family>,
}

/// Extracts every n-gram occurrence of `text` into `s.keys` and its content words into `s.content`.
pub(crate) fn extract(text: &str, s: &mut Scratch) {
    s.keys.clear();
    s.content.clear();
    s.prev = None;
    let mut word = std::mem::take(&mut s.word);
    text::for_each_token(text, &mut word, |token, stopword| {
        let unigram = fnv(WORD, token.as_bytes());
        s.keys.push((unigram, Family::Words));
        if let Some(prev) = s.prev {
            s.keys.push((prev.rotate_left(17) ^ fnv(PAIR, token.as_bytes()), Family::Words));
        }
        s.prev = Some(unigram);
        if !stopword {
            s.content.push(unigram);
        }
        s.edged.clear();
        s.edged.push(b'<');
        s.edged.extend_from_slice(token.as_bytes());
        s.edged.push(b'>');
        char_grams(&s.edged, &mut s.bounds, &mut s.keys);
    });
    s.word = word;
}

/// Every char n-gram of `edged` (UTF-8 bytes) as a key; `bounds` is scratch space.
fn char_grams(edged: &[u8], bounds: &mut Vec<usize>, keys: &mut Vec<(u64, Family)>) {
    bounds.clear();
    let text = std::str::from_utf8(edged).unwrap_or("");
    bounds.extend(text.char_indices().map(|(i, _)| i));
    bounds.push(edged.len());
    let chars = bounds.len() - 1;
    for n in CHAR_MIN..=CHAR_MAX.min(chars) {
        for start in 0..=chars - n {
            keys.push((fnv(CHARS, &edged[bounds[start]..bounds[start + n]]), Family::Chars));
        }
    }
}

/// The feature vocabulary and its inverse document frequencies.
#[derive(Debug, Clone, Default)]
pub(crate) struct Vocabulary {
    ids: PrehashedMap<u32>,
    idf: Vec<f32>,
}

impl Vocabulary {
    /// Builds the vocabulary over `docs` (each a list of n-gram keys, repeats allowed).
    pub fn build<'a>(docs: impl Iterator<Item = &'a [(u64, Family)]>) -> Self {
        let mut ids: PrehashedMap<u32> = PrehashedMap::default();
        let mut df: Vec<u32> = Vec::new();
        let mut n = 0u32;
        let mut seen: Vec<u32> = Vec::new();
        for doc in docs {
            n += 1;
            seen.clear();
            for &(key, _) in doc {
                let next = ids.len() as u32;
                let id = *ids.entry(key).or_insert(next);
                if id == next {
                    df.push(0);
                }
                seen.push(id);
            }
            seen.sort_unstable();
            seen.dedup();
            for &id in &seen {
                df[id as usize] += 1;
            }
        }
        let n = n as f32;
        let idf = df.iter().map(|&d| ((1.0 + n) / (1.0 + d as f32)).ln() + 1.0).collect();
        Self { ids, idf }
    }

    /// Number of features.
    pub fn len(&self) -> usize {
        self.idf.len()
    }

    /// The TF-IDF vector of the keys in `s.keys` into `out`, sorted by feature id; n-grams the
    /// vocabulary does not know are dropped.
    pub fn vector(&self, s: &mut Scratch, out: &mut Vec<(u32, f32)>) {
        out.clear();
        s.ids.clear();
        s.ids.extend(s.keys.iter().filter_map(|&(k, f)| self.ids.get(&k).map(|&id| (id, f))));
        s.ids.sort_unstable_by_key(|&(id, _)| id);
        let mut norms = [0.0f32; 2];
        s.families.clear();
        let mut i = 0;
        while i < s.ids.len() {
            let (id, family) = s.ids[i];
            let mut tf = 0u32;
            while i < s.ids.len() && s.ids[i].0 == id {
                tf += 1;
                i += 1;
            }
            let w = (1.0 + (tf as f32).ln()) * self.idf[id as usize];
            norms[family as usize] += w * w;
            out.push((id, w));
            s.families.push(family);
        }
        let inv = norms.map(|n| if n > 0.0 { std::f32::consts::FRAC_1_SQRT_2 / n.sqrt() } else { 0.0 });
        for ((_, w), family) in out.iter_mut().zip(&s.families) {
            *w *= inv[*family as usize];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(text: &str) -> Vec<(u64, Family)> {
        let mut s = Scratch::default();
        extract(text, &mut s);
        s.keys
    }

    fn vector(vocab: &Vocabulary, text: &str) -> Vec<(u32, f32)> {
        let mut s = Scratch::default();
        extract(text, &mut s);
        let mut out = Vec::new();
        vocab.vector(&mut s, &mut out);
        out
    }

    #[test]
    fn words_pairs_and_char_grams_are_extracted() {
        let mut s = Scratch::default();
        extract("the deals", &mut s);
        let words = s.keys.iter().filter(|(_, f)| *f == Family::Words).count();
        // "the", "deal" and the pair "the deal".
        assert_eq!(words, 3);
        // "<the>" has 3+2+1 grams of 3–5 chars; "<deal>" 4+3+2.
        assert_eq!(s.keys.len() - words, 6 + 9);
        // Only "deal" is a content word.
        assert_eq!(s.content.len(), 1);
        assert_eq!(keys("Deals!"), keys("deal"));
    }

    #[test]
    fn vectors_are_unit_length_and_skip_unknown_grams() {
        let docs = [keys("total revenue by region"), keys("hotel limit for travel")];
        let vocab = Vocabulary::build(docs.iter().map(Vec::as_slice));
        let v = vector(&vocab, "revenue by region");
        let norm: f32 = v.iter().map(|(_, w)| w * w).sum();
        assert!((norm - 1.0).abs() < 1e-4, "{norm}");
        assert!(v.windows(2).all(|w| w[0].0 < w[1].0), "sorted by feature id");
        assert!(vector(&vocab, "zzqx").is_empty());
        // Nearer texts have larger dot products.
        let dot = |a: &[(u32, f32)], b: &[(u32, f32)]| -> f32 {
            a.iter().filter_map(|(i, x)| b.iter().find(|(j, _)| j == i).map(|(_, y)| x * y)).sum()
        };
        let q = vector(&vocab, "revenue per region");
        assert!(
            dot(&q, &vector(&vocab, "total revenue by region")) > dot(&q, &vector(&vocab, "hotel limit"))
        );
    }
}
