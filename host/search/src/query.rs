//! A search, as a cell runs it: content (words as prefixes, quoted phrases, CJK substrings),
//! filters on what the host set (scope, visible channels, authors, id range) and on the
//! indexer's tags, sorted by time or relevance, a page of it and the total.

use std::collections::BTreeSet;
use std::ops::Bound;

use guildhall_core::model::{ChannelId, MessageId, UserId};
use guildhall_core::Snowflake;
use serde::{Deserialize, Serialize};
use tantivy::collector::{Count, TopDocs};
use tantivy::query::{
    BooleanQuery, ConstScoreQuery, EmptyQuery, Occur, PhraseQuery, Query, RangeQuery, RegexQuery, TermQuery,
    TermSetQuery,
};
use tantivy::schema::IndexRecordOption;
use tantivy::{Order, Term};

use crate::cell::{doc_ids, term_u64, CellReader, Fields};
use crate::tokenizer::{is_cjk, terms};
use crate::SearchError;

/// How hits are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Sort {
    #[default]
    Newest,
    Oldest,
    /// Best match first (BM25 over the content terms); ties newest first.
    Relevance,
}

/// One search in one scope (it travels to the cell's owner as it is: serde).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SearchRequest {
    pub scope: Snowflake,
    /// The generation of the scope's documents (the cell that runs it sets its log's serving
    /// one; see `cell`).
    #[serde(default)]
    pub gen: u32,
    /// Only these channels (the ones the caller may read); empty finds nothing.
    pub channels: Vec<ChannelId>,
    /// Text as a person types it: words match as prefixes, `"quoted words"` as a phrase.
    pub content: Option<String>,
    /// How far apart a phrase's words may be.
    pub slop: u32,
    /// Any of these authors (empty: anyone).
    pub authors: Vec<UserId>,
    /// Every group must match one of its tags.
    pub any_of_tags: Vec<Vec<String>>,
    /// None of these tags.
    pub none_of_tags: Vec<String>,
    /// Only messages a bot without the MESSAGE_CONTENT intent may read: its own, and those
    /// that mention it (so it cannot learn other messages' content by searching for it).
    pub only_about: Option<UserId>,
    /// Ids strictly within (Discord's `min_id` and `max_id`).
    pub after: Option<MessageId>,
    pub before: Option<MessageId>,
    pub sort: Sort,
    pub offset: usize,
    pub limit: usize,
}

/// What a search found: the total, and the page asked for (message id, channel).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hits {
    pub total: usize,
    pub page: Vec<(MessageId, ChannelId)>,
}

/// The content part of a query: a list of clauses that must all match.
fn content_clauses(fields: Fields, content: &str, slop: u32) -> Vec<Box<dyn Query>> {
    let mut clauses: Vec<Box<dyn Query>> = Vec::new();
    // Quoted parts are phrases; the rest are words (each a prefix), CJK runs substrings.
    for (i, part) in content.split('"').enumerate() {
        let quoted = i % 2 == 1;
        let words = terms(part);
        if words.is_empty() {
            continue;
        }
        if quoted {
            clauses.push(phrase(fields, &words, slop));
            continue;
        }
        let mut run: Vec<String> = Vec::new();
        for word in words {
            if word.chars().all(is_cjk) {
                run.push(word);
                continue;
            }
            if !run.is_empty() {
                clauses.push(phrase(fields, &std::mem::take(&mut run), 0));
            }
            clauses.push(prefix(fields, &word));
        }
        if !run.is_empty() {
            clauses.push(phrase(fields, &run, 0));
        }
    }
    clauses
}

fn phrase(fields: Fields, words: &[String], slop: u32) -> Box<dyn Query> {
    if words.len() == 1 {
        return Box::new(TermQuery::new(
            Term::from_field_text(fields.text, &words[0]),
            IndexRecordOption::WithFreqsAndPositions,
        ));
    }
    let terms = words.iter().map(|w| Term::from_field_text(fields.text, w)).collect();
    let mut query = PhraseQuery::new(terms);
    query.set_slop(slop);
    Box::new(query)
}

/// The word itself (scored: BM25, for relevance) or any term starting with it (the term
/// dictionary walked by an automaton; a constant score).
fn prefix(fields: Fields, word: &str) -> Box<dyn Query> {
    let exact = TermQuery::new(Term::from_field_text(fields.text, word), IndexRecordOption::WithFreqs);
    Box::new(BooleanQuery::new(vec![(Occur::Should, Box::new(exact)), (Occur::Should, starting_with(fields, word))]))
}

fn starting_with(fields: Fields, word: &str) -> Box<dyn Query> {
    let mut pattern = String::with_capacity(word.len() + 4);
    for c in word.chars() {
        if !c.is_alphanumeric() {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push_str(".*");
    match RegexQuery::from_pattern(&pattern, fields.text) {
        Ok(query) => Box::new(query),
        Err(_) => Box::new(EmptyQuery),
    }
}

fn filter(query: Box<dyn Query>) -> (Occur, Box<dyn Query>) {
    (Occur::Must, Box::new(ConstScoreQuery::new(query, 0.0)))
}

fn u64_set(field: tantivy::schema::Field, ids: impl IntoIterator<Item = u64>) -> Box<dyn Query> {
    let terms: BTreeSet<u64> = ids.into_iter().collect();
    Box::new(TermSetQuery::new(terms.into_iter().map(|v| Term::from_field_u64(field, v))))
}

impl SearchRequest {
    /// The tantivy query (without sorting or paging).
    pub fn query(&self, fields: Fields) -> Box<dyn Query> {
        if self.channels.is_empty() {
            return Box::new(EmptyQuery);
        }
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = vec![
            filter(term_u64(fields.scope, self.scope.0)),
            filter(term_u64(fields.gen, u64::from(self.gen))),
            filter(u64_set(fields.channel, self.channels.iter().map(|c| c.0))),
        ];
        if let Some(content) = &self.content {
            for clause in content_clauses(fields, content, self.slop) {
                clauses.push((Occur::Must, clause));
            }
        }
        if !self.authors.is_empty() {
            clauses.push(filter(u64_set(fields.author, self.authors.iter().map(|a| a.0))));
        }
        for group in &self.any_of_tags {
            let terms: BTreeSet<&String> = group.iter().collect();
            let set = TermSetQuery::new(terms.into_iter().map(|t| Term::from_field_text(fields.tags, t)));
            clauses.push(filter(Box::new(set)));
        }
        for tag in &self.none_of_tags {
            let term = Term::from_field_text(fields.tags, tag);
            clauses.push((Occur::MustNot, Box::new(TermQuery::new(term, IndexRecordOption::Basic))));
        }
        if let Some(bot) = self.only_about {
            let mentioned = Term::from_field_text(fields.tags, &format!("mentions:{}", bot.0));
            let about = BooleanQuery::new(vec![
                (Occur::Should, term_u64(fields.author, bot.0)),
                (Occur::Should, Box::new(TermQuery::new(mentioned, IndexRecordOption::Basic))),
            ]);
            clauses.push(filter(Box::new(about)));
        }
        if self.after.is_some() || self.before.is_some() {
            let bound = |id: Option<MessageId>| match id {
                Some(id) => Bound::Excluded(Term::from_field_u64(fields.id, id.0)),
                None => Bound::Unbounded,
            };
            clauses.push(filter(Box::new(RangeQuery::new(bound(self.after), bound(self.before)))));
        }
        Box::new(BooleanQuery::new(clauses))
    }

    /// Runs the search in a cell's last commit.
    pub fn run(&self, cell: &CellReader) -> Result<Hits, SearchError> {
        let fields = cell.fields();
        let searcher = cell.searcher();
        let query = self.query(fields);
        let limit = self.limit.max(1);
        let top = TopDocs::with_limit(limit).and_offset(self.offset);
        match self.sort {
            Sort::Newest | Sort::Oldest => {
                let order = if self.sort == Sort::Newest { Order::Desc } else { Order::Asc };
                let (found, total) = searcher.search(&query, &(top.order_by_fast_field::<u64>("id", order), Count))?;
                let page = found.into_iter().map(|(_, address)| address).collect();
                finish(&searcher, page, total)
            }
            Sort::Relevance => {
                let (found, total) = searcher.search(&query, &(top.order_by_score(), Count))?;
                let mut scored = Vec::with_capacity(found.len());
                for (score, address) in found {
                    let (id, _) = doc_ids(&searcher, address)?;
                    scored.push((score, id, address));
                }
                // Equal scores (a filter-only search): newest first.
                scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(b.1.cmp(&a.1)));
                let page = scored.into_iter().map(|(_, _, address)| address).collect();
                finish(&searcher, page, total)
            }
        }
    }
}

fn finish(searcher: &tantivy::Searcher, page: Vec<tantivy::DocAddress>, total: usize) -> Result<Hits, SearchError> {
    let page = page.into_iter().map(|address| doc_ids(searcher, address)).collect::<Result<_, _>>()?;
    Ok(Hits { total, page })
}
