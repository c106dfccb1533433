//! Cutting text at a limit, on character boundaries (text from clients and plugins is cut,
//! never split inside a character).

/// `text` cut to its first `max_chars` characters.
pub fn truncate_chars(mut text: String, max_chars: usize) -> String {
    if let Some((end, _)) = text.char_indices().nth(max_chars) {
        text.truncate(end);
    }
    text
}

/// The longest start of `text` of at most `max_bytes` bytes that ends between characters.
pub fn prefix_within_bytes(text: &str, max_bytes: usize) -> &str {
    let mut end = text.len().min(max_bytes);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_cut_between_characters() {
        assert_eq!(truncate_chars("héllo".into(), 2), "hé");
        assert_eq!(truncate_chars("hé".into(), 5), "hé");
        assert_eq!(truncate_chars("👍👍".into(), 0), "");
        assert_eq!(prefix_within_bytes("h👍", 4), "h", "not inside the emoji's four bytes");
        assert_eq!(prefix_within_bytes("h👍", 5), "h👍");
        assert_eq!(prefix_within_bytes("abc", 0), "");
    }
}
