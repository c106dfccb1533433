//! Discord's message search query (`GET /guilds/{id}/messages/search` and the DM routes), as
//! clients send it: a form whose list parameters repeat (`author_id=1&author_id=2`). Every
//! parameter Discord's description lists is accepted with its limits; unknown ones are
//! ignored, as Discord does. Pure: the server maps it to a search of its cells.

use guildhall_core::Snowflake;

/// Discord's `author_type` values (a `-` negates).
pub const AUTHOR_TYPES: &[&str] = &["user", "bot", "webhook", "-user", "-bot", "-webhook"];
/// Discord's `has` values (a `-` negates).
pub const HAS: &[&str] = &[
    "link",
    "embed",
    "file",
    "image",
    "video",
    "sound",
    "sticker",
    "poll",
    "snapshot",
    "-link",
    "-embed",
    "-file",
    "-image",
    "-video",
    "-sound",
    "-sticker",
    "-poll",
    "-snapshot",
];
/// Discord's `embed_type` values.
pub const EMBED_TYPES: &[&str] = &["image", "video", "gif", "sound", "article"];
pub const SORT_BY: &[&str] = &["relevance", "timestamp"];
pub const SORT_ORDER: &[&str] = &["asc", "desc"];

pub const MAX_CONTENT_CHARS: usize = 1024;
/// Most ids in one list parameter (Discord's; `channel_id`, Discord's 500, is kept to
/// [`MAX_CHANNEL_IDS`]).
pub const MAX_IDS: usize = 100;
pub const MAX_CHANNEL_IDS: usize = 100;
/// Most values of a text list (`link_hostname`, `attachment_filename`, ...) and their
/// characters: smaller than Discord's (100 of 256 or 1024), so that every search the API
/// description allows fits in the host's request target (an 8 KiB bound answered with 414,
/// and never past the 64 KiB where the HTTP layer answers 414 without a body).
pub const MAX_TEXTS: usize = 10;
pub const MAX_TEXT_CHARS: usize = 50;
pub const MAX_LIMIT: u32 = 25;
pub const MAX_OFFSET: u32 = 9975;
pub const MAX_SLOP: u32 = 100;
pub const DEFAULT_SLOP: u32 = 2;

/// A search as asked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageSearch {
    pub content: Option<String>,
    pub slop: u32,
    pub author_id: Vec<Snowflake>,
    pub author_type: Vec<String>,
    pub mentions: Vec<Snowflake>,
    pub mentions_role_id: Vec<Snowflake>,
    pub replied_to_user_id: Vec<Snowflake>,
    pub replied_to_message_id: Vec<Snowflake>,
    pub mention_everyone: Option<bool>,
    pub min_id: Option<Snowflake>,
    pub max_id: Option<Snowflake>,
    pub limit: u32,
    pub offset: u32,
    pub has: Vec<String>,
    pub link_hostname: Vec<String>,
    pub embed_provider: Vec<String>,
    pub embed_type: Vec<String>,
    pub attachment_extension: Vec<String>,
    pub attachment_filename: Vec<String>,
    pub pinned: Option<bool>,
    pub include_nsfw: Option<bool>,
    pub channel_id: Vec<Snowflake>,
    /// `true`: by relevance; `false`: by time.
    pub by_relevance: bool,
    /// Oldest first (`sort_order=asc`).
    pub ascending: bool,
}

/// Why a search was refused: the parameter and what is wrong (Discord's form errors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchError {
    pub field: &'static str,
    pub message: String,
}

impl std::fmt::Display for SearchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

fn refuse(field: &'static str, message: impl Into<String>) -> SearchError {
    SearchError { field, message: message.into() }
}

fn values<'a>(pairs: &'a [(String, String)], name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    pairs.iter().filter(move |(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn one<'a>(pairs: &'a [(String, String)], field: &'static str) -> Result<Option<&'a str>, SearchError> {
    let mut all = values(pairs, field);
    let first = all.next();
    if all.next().is_some() {
        return Err(refuse(field, "Only one value is allowed."));
    }
    Ok(first)
}

fn ids(pairs: &[(String, String)], field: &'static str, max: usize) -> Result<Vec<Snowflake>, SearchError> {
    let mut out: Vec<Snowflake> = Vec::new();
    for v in values(pairs, field) {
        let id: Snowflake = v.parse().map_err(|_| refuse(field, format!("Value \"{v}\" is not snowflake.")))?;
        if out.contains(&id) {
            return Err(refuse(field, "Values must be unique."));
        }
        out.push(id);
    }
    if out.len() > max {
        return Err(refuse(field, format!("Must be {max} or fewer in length.")));
    }
    Ok(out)
}

fn texts(
    pairs: &[(String, String)],
    field: &'static str,
    max_items: usize,
    max_chars: usize,
) -> Result<Vec<String>, SearchError> {
    let mut out: Vec<String> = Vec::new();
    for v in values(pairs, field) {
        if v.chars().count() > max_chars {
            return Err(refuse(field, format!("Must be {max_chars} or fewer in length.")));
        }
        let v = v.to_lowercase();
        if out.contains(&v) {
            return Err(refuse(field, "Values must be unique."));
        }
        out.push(v);
    }
    if out.len() > max_items {
        return Err(refuse(field, format!("Must be {max_items} or fewer in length.")));
    }
    Ok(out)
}

fn choices(pairs: &[(String, String)], field: &'static str, allowed: &[&str]) -> Result<Vec<String>, SearchError> {
    let mut out: Vec<String> = Vec::new();
    for v in values(pairs, field) {
        if !allowed.contains(&v) {
            return Err(refuse(field, format!("Value \"{v}\" is not a valid enum value.")));
        }
        if out.iter().any(|o| o == v) {
            return Err(refuse(field, "Values must be unique."));
        }
        out.push(v.to_owned());
    }
    Ok(out)
}

fn boolean(pairs: &[(String, String)], field: &'static str) -> Result<Option<bool>, SearchError> {
    match one(pairs, field)? {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(v) => Err(refuse(field, format!("Value \"{v}\" is not a valid boolean."))),
    }
}

fn int(pairs: &[(String, String)], field: &'static str, min: u32, max: u32) -> Result<Option<u32>, SearchError> {
    match one(pairs, field)? {
        None => Ok(None),
        Some(v) => match v.parse::<u32>() {
            Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
            _ => Err(refuse(field, format!("Must be an integer between {min} and {max}."))),
        },
    }
}

fn id(pairs: &[(String, String)], field: &'static str) -> Result<Option<Snowflake>, SearchError> {
    match one(pairs, field)? {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| refuse(field, format!("Value \"{v}\" is not snowflake."))),
    }
}

/// Decodes a search's query pairs.
pub fn parse_message_search(pairs: &[(String, String)]) -> Result<MessageSearch, SearchError> {
    let content = match one(pairs, "content")? {
        Some(c) if c.chars().count() > MAX_CONTENT_CHARS => {
            return Err(refuse("content", format!("Must be {MAX_CONTENT_CHARS} or fewer in length.")))
        }
        Some(c) if !c.trim().is_empty() => Some(c.to_owned()),
        _ => None,
    };
    let sort_by = choices(pairs, "sort_by", SORT_BY)?;
    let sort_order = choices(pairs, "sort_order", SORT_ORDER)?;
    if sort_by.len() > 1 || sort_order.len() > 1 {
        return Err(refuse(if sort_by.len() > 1 { "sort_by" } else { "sort_order" }, "Only one value is allowed."));
    }
    Ok(MessageSearch {
        content,
        slop: int(pairs, "slop", 0, MAX_SLOP)?.unwrap_or(DEFAULT_SLOP),
        author_id: ids(pairs, "author_id", MAX_IDS)?,
        author_type: choices(pairs, "author_type", AUTHOR_TYPES)?,
        mentions: ids(pairs, "mentions", MAX_IDS)?,
        mentions_role_id: ids(pairs, "mentions_role_id", MAX_IDS)?,
        replied_to_user_id: ids(pairs, "replied_to_user_id", MAX_IDS)?,
        replied_to_message_id: ids(pairs, "replied_to_message_id", MAX_IDS)?,
        mention_everyone: boolean(pairs, "mention_everyone")?,
        min_id: id(pairs, "min_id")?,
        max_id: id(pairs, "max_id")?,
        limit: int(pairs, "limit", 1, MAX_LIMIT)?.unwrap_or(MAX_LIMIT),
        offset: int(pairs, "offset", 0, MAX_OFFSET)?.unwrap_or(0),
        has: choices(pairs, "has", HAS)?,
        link_hostname: texts(pairs, "link_hostname", MAX_TEXTS, MAX_TEXT_CHARS)?,
        embed_provider: texts(pairs, "embed_provider", MAX_TEXTS, MAX_TEXT_CHARS)?,
        embed_type: choices(pairs, "embed_type", EMBED_TYPES)?,
        attachment_extension: texts(pairs, "attachment_extension", MAX_TEXTS, MAX_TEXT_CHARS)?,
        attachment_filename: texts(pairs, "attachment_filename", MAX_TEXTS, MAX_TEXT_CHARS)?,
        pinned: boolean(pairs, "pinned")?,
        include_nsfw: boolean(pairs, "include_nsfw")?,
        channel_id: ids(pairs, "channel_id", MAX_CHANNEL_IDS)?,
        by_relevance: sort_by.first().is_some_and(|s| s == "relevance"),
        ascending: sort_order.first().is_some_and(|s| s == "asc"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(q: &str) -> Result<MessageSearch, SearchError> {
        parse_message_search(&crate::query_pairs(q))
    }

    #[test]
    fn lists_repeat_defaults_apply_and_unknown_parameters_are_ignored() {
        let s = parse("content=hi+there&author_id=1&author_id=2&has=link&has=-file&sort_by=relevance&x=y").unwrap();
        assert_eq!(s.content.as_deref(), Some("hi there"));
        assert_eq!(s.author_id, vec![Snowflake(1), Snowflake(2)]);
        assert_eq!(s.has, vec!["link", "-file"]);
        assert!(s.by_relevance && !s.ascending);
        assert_eq!((s.limit, s.offset, s.slop), (25, 0, 2));
        assert_eq!(parse("content=++").unwrap().content, None, "only spaces: no content");
    }

    #[test]
    fn every_limit_is_checked_with_the_parameter_named() {
        for (q, field) in [
            ("limit=26", "limit"),
            ("limit=0", "limit"),
            ("offset=9976", "offset"),
            ("slop=101", "slop"),
            ("has=links", "has"),
            ("author_type=robot", "author_type"),
            ("author_id=x", "author_id"),
            ("min_id=-1", "min_id"),
            ("pinned=yes", "pinned"),
            ("sort_by=time", "sort_by"),
            ("sort_order=asc&sort_order=desc", "sort_order"),
            ("limit=1&limit=2", "limit"),
            ("author_id=1&author_id=1", "author_id"),
            ("has=link&has=link", "has"),
            ("link_hostname=a.b&link_hostname=A.B", "link_hostname"),
        ] {
            assert_eq!(parse(q).map_err(|e| e.field), Err(field), "{q}");
        }
        let long = "a".repeat(MAX_CONTENT_CHARS + 1);
        assert_eq!(parse(&format!("content={long}")).map_err(|e| e.field), Err("content"));
        let many: String = (1..=101).map(|i| format!("mentions={i}&")).collect();
        assert_eq!(parse(&many).map_err(|e| e.field), Err("mentions"));
    }
}
