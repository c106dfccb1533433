//! The default indexer: a search document per created or edited message, with its content
//! as text and tags for Discord's search filters:
//!
//! - `author_type:user` or `author_type:bot` (`author_type=`),
//! - `mentions:ID` for each user mentioned (`mentions=`),
//! - `has:link` and `link_hostname:HOST` for each link (`has=link`, `link_hostname=`).
//!
//! Each filter is one function of [`TAGGERS`]: what messages will carry later (replies,
//! pins, role mentions, attachments, embeds) is one more function there.

use guildhall_sdk::indexing::{Document, GuildEvent, Indexer, Message};
use guildhall_sdk::Config;

/// Makes tags of a message.
pub type Tagger = fn(&Message, &mut Vec<String>);

/// Every tagger, in order.
pub const TAGGERS: &[Tagger] = &[author_type, mentions, links];

pub fn author_type(m: &Message, tags: &mut Vec<String>) {
    tags.push(if m.author.bot { "author_type:bot" } else { "author_type:user" }.into());
}

pub fn mentions(m: &Message, tags: &mut Vec<String>) {
    for id in &m.mentions {
        tags.push(format!("mentions:{id}"));
    }
}

pub fn links(m: &Message, tags: &mut Vec<String>) {
    let hosts = link_hosts(&m.content);
    if !hosts.is_empty() {
        tags.push("has:link".into());
    }
    for host in hosts {
        let tag = format!("link_hostname:{host}");
        if !tags.contains(&tag) {
            tags.push(tag);
        }
    }
}

/// The hosts of the `http://` and `https://` links in `text`, lower-cased, in order.
pub fn link_hosts(text: &str) -> Vec<String> {
    let mut hosts = Vec::new();
    let lower = text.to_ascii_lowercase();
    let mut rest = lower.as_str();
    while let Some(at) = rest.find("http") {
        let after = &rest[at..];
        let Some(scheme_len) = ["https://", "http://"].iter().find(|s| after.starts_with(**s)).map(|s| s.len()) else {
            rest = &after[4..];
            continue;
        };
        let tail = &after[scheme_len..];
        let end =
            tail.find(|c: char| matches!(c, '/' | '?' | '#' | '>' | ')') || c.is_whitespace()).unwrap_or(tail.len());
        let authority = &tail[..end];
        // user:password@host:port
        let host = authority.rsplit('@').next().unwrap_or("");
        let host = host.split(':').next().unwrap_or("").trim_end_matches('.');
        if !host.is_empty() && host.contains('.') && host.chars().all(|c| c.is_alphanumeric() || c == '-' || c == '.') {
            hosts.push(host.to_owned());
        }
        rest = &tail[end..];
    }
    hosts
}

/// The document of a message.
pub fn document(m: &Message) -> Document {
    let mut tags = Vec::new();
    for tagger in TAGGERS {
        tagger(m, &mut tags);
    }
    Document {
        id: m.id.to_string(),
        channel_id: m.channel_id,
        author_id: m.author.id,
        timestamp: m.timestamp.clone(),
        text: m.content.clone(),
        tags,
    }
}

pub struct DefaultIndexer;

impl Indexer for DefaultIndexer {
    fn init(_config: &Config) -> Result<Self, String> {
        Ok(DefaultIndexer)
    }

    fn index(&mut self, events: Vec<GuildEvent>) -> Vec<Document> {
        events
            .iter()
            .filter_map(|event| match event {
                GuildEvent::MessageCreate(m) | GuildEvent::MessageUpdate(m) => Some(document(m)),
                _ => None,
            })
            .collect()
    }
}

guildhall_sdk::export_indexer!(DefaultIndexer);

#[cfg(test)]
mod tests {
    use super::*;
    use guildhall_sdk::indexing::User;

    fn message(content: &str, bot: bool, mentions: Vec<u64>) -> Message {
        Message {
            id: 42,
            channel_id: 7,
            guild_id: 1,
            author: User { id: 5, username: "a".into(), bot },
            content: content.into(),
            timestamp: "2026-01-01T00:00:00.000000+00:00".into(),
            edited_timestamp: None,
            mentions,
        }
    }

    #[test]
    fn a_message_becomes_its_content_and_tags() {
        let d = document(&message("see https://Docs.Example.com/a?b and http://x.org", true, vec![9, 10]));
        assert_eq!((d.id.as_str(), d.channel_id, d.author_id), ("42", 7, 5));
        assert_eq!(d.text, "see https://Docs.Example.com/a?b and http://x.org");
        assert_eq!(
            d.tags,
            vec![
                "author_type:bot",
                "mentions:9",
                "mentions:10",
                "has:link",
                "link_hostname:docs.example.com",
                "link_hostname:x.org"
            ]
        );
        assert_eq!(document(&message("plain", false, vec![])).tags, vec!["author_type:user"]);
    }

    #[test]
    fn link_hosts_skip_what_is_not_a_host() {
        assert_eq!(link_hosts("<https://user:pw@Example.com:8080/x> https://a.b."), vec!["example.com", "a.b"]);
        assert!(link_hosts("http://localhost httpx://a.b https:// ftp://a.b").is_empty());
        assert_eq!(link_hosts("(https://a.b/c)"), vec!["a.b"]);
    }

    #[test]
    fn deletes_and_other_events_make_no_document() {
        let mut indexer = DefaultIndexer;
        let events = vec![
            GuildEvent::MessageCreate(message("one", false, vec![])),
            GuildEvent::MessageDelete(guildhall_sdk::indexing::MessageRef { id: 1, channel_id: 7 }),
            GuildEvent::MessageUpdate(message("two", false, vec![])),
        ];
        let texts: Vec<String> = indexer.index(events).into_iter().map(|d| d.text).collect();
        assert_eq!(texts, vec!["one", "two"]);
    }
}
