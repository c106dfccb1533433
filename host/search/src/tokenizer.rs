//! How message text becomes terms: text people actually write.
//!
//! - Words (runs of letters and digits) are terms, lower-cased, accents folded ("Café" and
//!   "cafe" are one term).
//! - Chinese, Japanese and Korean have no spaces between words, and a search for part of a
//!   sentence must find it. Every Han, kana and Hangul character is a term of its own, at its
//!   own position; a query's run of such characters is a phrase of them, so it matches
//!   exactly where those characters stand together: any substring, with no dictionary for a
//!   build to download. (Unigrams with positions are what CJK bigram indexes approximate;
//!   they cost more postings per character, and nothing else.)
//! - Very long tokens (over [`MAX_TOKEN_BYTES`]) are dropped: nobody searches for them.

use tantivy::tokenizer::{
    AsciiFoldingFilter, LowerCaser, RemoveLongFilter, TextAnalyzer, Token, TokenStream, Tokenizer,
};

/// The name the analyzer is registered under in every cell.
pub const MESSAGE_ANALYZER: &str = "guildhall_message";
/// Tokens longer than this (bytes) are not indexed.
pub const MAX_TOKEN_BYTES: usize = 64;

/// The analyzer of message text (and of queries against it).
pub fn message_analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(MessageTokenizer)
        .filter(RemoveLongFilter::limit(MAX_TOKEN_BYTES))
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter)
        .build()
}

/// Whether a character is written without spaces between words (indexed one by one).
pub fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF      // Hiragana, Katakana
        | 0x31F0..=0x31FF    // Katakana phonetic extensions
        | 0x3400..=0x4DBF    // CJK extension A
        | 0x4E00..=0x9FFF    // CJK unified ideographs
        | 0xF900..=0xFAFF    // CJK compatibility ideographs
        | 0xFF66..=0xFF9D    // half-width Katakana
        | 0x1100..=0x11FF    // Hangul Jamo
        | 0x3130..=0x318F    // Hangul compatibility Jamo
        | 0xAC00..=0xD7AF    // Hangul syllables
        | 0x20000..=0x2FA1F  // CJK extensions B-F, compatibility supplement
    )
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() && !is_cjk(c)
}

/// Splits text into words and single CJK characters.
#[derive(Clone, Copy, Debug, Default)]
pub struct MessageTokenizer;

pub struct MessageTokenStream<'a> {
    text: &'a str,
    at: usize,
    token: Token,
}

impl Tokenizer for MessageTokenizer {
    type TokenStream<'a> = MessageTokenStream<'a>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> MessageTokenStream<'a> {
        MessageTokenStream { text, at: 0, token: Token { position: usize::MAX, ..Token::default() } }
    }
}

impl TokenStream for MessageTokenStream<'_> {
    fn advance(&mut self) -> bool {
        let rest = &self.text[self.at..];
        let Some((skip, first)) = rest.char_indices().find(|(_, c)| is_word_char(*c) || is_cjk(*c)) else {
            self.at = self.text.len();
            return false;
        };
        let start = self.at + skip;
        let end = if is_cjk(first) {
            start + first.len_utf8()
        } else {
            let word = &self.text[start..];
            start + word.char_indices().find(|(_, c)| !is_word_char(*c)).map_or(word.len(), |(i, _)| i)
        };
        self.at = end;
        self.token.text.clear();
        self.token.text.push_str(&self.text[start..end]);
        self.token.offset_from = start;
        self.token.offset_to = end;
        self.token.position = self.token.position.wrapping_add(1);
        self.token.position_length = 1;
        true
    }

    fn token(&self) -> &Token {
        &self.token
    }

    fn token_mut(&mut self) -> &mut Token {
        &mut self.token
    }
}

/// The terms of `text` as the analyzer makes them, in order (for queries).
pub fn terms(text: &str) -> Vec<String> {
    let mut analyzer = message_analyzer();
    let mut stream = analyzer.token_stream(text);
    let mut out = Vec::new();
    while stream.advance() {
        out.push(stream.token().text.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_lower_cased_and_accents_folded() {
        assert_eq!(terms("Café, NAÏVE résumé! x2"), vec!["cafe", "naive", "resume", "x2"]);
    }

    #[test]
    fn cjk_characters_are_terms_of_their_own_between_words() {
        assert_eq!(terms("東京都に行く"), vec!["東", "京", "都", "に", "行", "く"]);
        assert_eq!(terms("go to東京now"), vec!["go", "to", "東", "京", "now"]);
        assert_eq!(terms("한국어 좋아"), vec!["한", "국", "어", "좋", "아"]);
    }

    #[test]
    fn punctuation_and_links_split_into_words() {
        assert_eq!(
            terms("see https://Example.com/a_b?x=1"),
            vec!["see", "https", "example", "com", "a", "b", "x", "1"]
        );
    }

    #[test]
    fn positions_count_every_term_and_long_tokens_are_dropped() {
        let long = "a".repeat(MAX_TOKEN_BYTES + 1);
        let mut analyzer = message_analyzer();
        let text = format!("one {long} 二三");
        let mut stream = analyzer.token_stream(&text);
        let mut seen = Vec::new();
        while stream.advance() {
            seen.push((stream.token().text.clone(), stream.token().position));
        }
        assert_eq!(seen, vec![("one".into(), 0), ("二".into(), 2), ("三".into(), 3)]);
    }
}
