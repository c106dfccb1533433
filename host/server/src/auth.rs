//! Opaque bearer tokens and the `Authorization` header (passwords: [`crate::passwords`]).

use guildhall_core::model::{User, UserRecord};
use guildhall_core::Snowflake;
use guildhall_store::StoreError;
use hyper::HeaderMap;
use rand::RngCore;

use crate::app::App;

/// `len` characters of a-z, A-Z and 0-9, uniformly (invite codes).
pub fn random_code(len: usize) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut rng = rand::thread_rng();
    (0..len).map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())])).collect()
}

pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new token shaped like Discord's (some libraries read the user id out of it): the
/// user id in base64, then 6 and 27 random bytes in URL-safe base64, dot-separated (264
/// random bits). Storage keeps only its SHA-256.
pub fn new_token(user: Snowflake) -> String {
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    use base64::Engine;
    let mut random = [0u8; 33];
    rand::thread_rng().fill_bytes(&mut random);
    let id = STANDARD_NO_PAD.encode(user.to_string());
    format!("{id}.{}.{}", URL_SAFE_NO_PAD.encode(&random[..6]), URL_SAFE_NO_PAD.encode(&random[6..]))
}

/// The token in `Authorization`: bare, `Bot <token>` or `Bearer <token>`.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(hyper::header::AUTHORIZATION)?.to_str().ok()?.trim();
    let token = value.strip_prefix("Bot ").or_else(|| value.strip_prefix("Bearer ")).unwrap_or(value).trim();
    (!token.is_empty() && token.len() <= 512).then_some(token)
}

pub async fn user_for_token(app: &App, token: &str) -> Result<Option<User>, StoreError> {
    Ok(record_for_token(app, token).await?.map(|r| r.user))
}

/// The whole record of the token's user (a bot's application too).
pub async fn record_for_token(app: &App, token: &str) -> Result<Option<UserRecord>, StoreError> {
    let Some(id) = app.store.token_user(token).await? else { return Ok(None) };
    app.store.user(id).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_use_the_62_characters_and_differ() {
        let code = random_code(10);
        assert_eq!(code.len(), 10);
        assert!(code.chars().all(|c| c.is_ascii_alphanumeric()), "{code}");
        assert_ne!(code, random_code(10));
    }

    #[test]
    fn authorization_forms() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        for (value, want) in [("abc", Some("abc")), ("Bot abc", Some("abc")), ("Bearer abc", Some("abc")), ("  ", None)]
        {
            h.insert(hyper::header::AUTHORIZATION, value.parse().unwrap());
            assert_eq!(bearer(&h), want, "{value}");
        }
    }

    #[test]
    fn tokens_are_shaped_like_discords_and_carry_the_user_id() {
        use base64::Engine;
        let token = new_token(Snowflake(1_234_567_890_123_456_789));
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3, "{token}");
        let id = base64::engine::general_purpose::STANDARD_NO_PAD.decode(parts[0]).unwrap();
        assert_eq!(id, b"1234567890123456789");
        assert_eq!((parts[1].len(), parts[2].len()), (8, 36), "6 and 27 bytes");
        assert_ne!(token, new_token(Snowflake(1_234_567_890_123_456_789)), "random");
        let mut h = HeaderMap::new();
        h.insert(hyper::header::AUTHORIZATION, format!("Bot {token}").parse().unwrap());
        assert_eq!(bearer(&h), Some(token.as_str()));
    }
}
