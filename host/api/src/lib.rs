//! The REST API's requests as clients send them, in Discord v10 shapes: how a request's
//! path, query and JSON body are decoded ([`path_segments`], [`query_pairs`],
//! [`parse_json`]), and the bodies themselves ([`requests`]), typed, with the constraints
//! the API description states (their JSON Schemas, `schemars`). Pure: no IO. The server
//! turns a refusal into Discord's error JSON; what a body means is the handlers' business.
//! The `rest_requests` fuzz target (tests/fuzz) runs everything here on any input.

pub mod requests;
pub mod search;

use serde::de::DeserializeOwned;
use serde::Deserialize;

/// A path's segments (empty ones dropped), each percent-decoded once: `%40me` is `@me`,
/// `%F0%9F%91%8D` an emoji. Bytes that are not UTF-8 decode to U+FFFD.
pub fn path_segments(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect()
}

/// A query string's pairs in order, decoded as a form (`+` is a space, `%xx` a byte).
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes()).into_owned().collect()
}

/// Why a JSON body was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// Not JSON at all (Discord's 50109), or empty.
    NotJson,
    /// JSON, but not of the body's shape (Discord's 50035): what is wrong.
    Shape(String),
}

/// A JSON object body as `T`.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, BodyError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_none() {
        return Err(BodyError::NotJson);
    }
    match serde_json::from_slice::<T>(bytes) {
        Ok(v) if first == Some(&b'{') => Ok(v),
        Ok(_) => Err(BodyError::Shape("expected a JSON object".into())),
        Err(e) if e.is_data() => Err(BodyError::Shape(e.to_string())),
        Err(_) => Err(BodyError::NotJson),
    }
}

/// A JSON integer for an integer field, also written as a number with no fraction
/// (`12.0` is the integer 12 in JSON Schema, so the API's description allows it).
pub fn integral<'de, D: serde::Deserializer<'de>, T: TryFrom<i64>>(d: D) -> Result<T, D::Error> {
    let number = serde_json::Number::deserialize(d)?;
    // Exactly representable and whole: no rounding turns 1.5 or 1e300 into a number.
    let whole = number.as_i64().or_else(|| number.as_f64().and_then(guildhall_core::snowflake::whole_number));
    let out_of_range = || serde::de::Error::custom(format!("{number} is not an integer in range"));
    whole.and_then(|n| T::try_from(n).ok()).ok_or_else(out_of_range)
}

/// [`integral`] for an optional field (null or absent: `None`).
pub fn integral_opt<'de, D: serde::Deserializer<'de>, T: TryFrom<i64>>(d: D) -> Result<Option<T>, D::Error> {
    #[derive(Deserialize)]
    struct Whole<T: TryFrom<i64>>(#[serde(deserialize_with = "integral")] T);
    Ok(Option::<Whole<T>>::deserialize(d)?.map(|Whole(n)| n))
}

/// `Some(value)` for a field that is present, even as null (`Some(None)`): absent, null and
/// a value are three different requests (keep, clear, set).
pub fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_refused_for_what_is_wrong_with_them() {
        #[derive(Deserialize, Debug)]
        struct Body {
            #[allow(dead_code)]
            #[serde(deserialize_with = "integral")]
            n: u8,
        }
        assert_eq!(parse_json::<Body>(b"  ").unwrap_err(), BodyError::NotJson);
        assert_eq!(parse_json::<Body>(b"{").unwrap_err(), BodyError::NotJson);
        assert!(matches!(parse_json::<Body>(b"[1]"), Err(BodyError::Shape(_))));
        assert!(matches!(parse_json::<Body>(br#"{"n": 1.5}"#), Err(BodyError::Shape(_))));
        assert!(matches!(parse_json::<Body>(br#"{"n": 256}"#), Err(BodyError::Shape(_))));
        assert!(parse_json::<Body>(br#"{"n": 12.0}"#).is_ok(), "a whole number written with a fraction");
    }

    #[test]
    fn paths_and_queries_are_decoded_once() {
        assert_eq!(path_segments("/users/%40me//guilds/"), ["users", "@me", "guilds"]);
        assert_eq!(path_segments("/%2540"), ["%40"], "decoded once, not twice");
        assert_eq!(
            query_pairs("scope=bot+applications.commands&limit=%35"),
            [("scope".to_owned(), "bot applications.commands".to_owned()), ("limit".to_owned(), "5".to_owned())]
        );
    }
}
