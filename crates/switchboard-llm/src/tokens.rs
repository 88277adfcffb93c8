use std::sync::OnceLock;
use tiktoken_rs::CoreBPE;

/// Counts tokens with the `cl100k_base` encoding, loaded once per process. Used when a server
/// omits `usage`, and for budgeting prompts.
pub fn count_tokens(text: &str) -> u64 {
    static BPE: OnceLock<Option<CoreBPE>> = OnceLock::new();
    match BPE.get_or_init(|| tiktoken_rs::cl100k_base().ok()) {
        Some(bpe) => bpe.encode_ordinary(text).len() as u64,
        // The encoding ships inside the crate, so this is unreachable in practice; a rough
        // estimate keeps accounting going rather than failing a request over it.
        None => (text.len() as u64).div_ceil(4),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_known_text() {
        assert_eq!(count_tokens(""), 0);
        assert_eq!(count_tokens("hello world"), 2);
    }
}
