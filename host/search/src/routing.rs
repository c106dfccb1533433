//! A search goes to the cell of its scope, wherever that cell is open: in this process (one
//! host: [`Cells`] answers itself), or on the indexing worker that owns it in a cluster
//! ([`BusCells`]: request/reply over NATS, to `{cluster}.search.{cell}.query`, which only
//! the cell's owner subscribes to; see [`serve_cell`]). What travels is the search as the
//! host built it (scope, the channels the caller may read, filters): the owner runs it on
//! its cell and answers with ids; the caller's node reads the messages back from storage.

use std::sync::Arc;
use std::time::Duration;

use async_nats::RequestErrorKind;
use async_trait::async_trait;
use futures_util::StreamExt;
use guildhall_core::model::GuildId;
use guildhall_core::stream::{CellLayout, LogKey};
use guildhall_core::Snowflake;
use serde::{Deserialize, Serialize};

use crate::cell::{CellReader, Coverage};
use crate::cells::Cells;
use crate::query::{Hits, SearchRequest};
use crate::SearchError;

/// A search as a cell's owner takes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellQuery {
    /// A guild search: the guild whose index must be ready (one that is not is backfilled
    /// from now on). `None`: a user's DMs (`request.channels`), always answered.
    pub guild: Option<GuildId>,
    pub request: SearchRequest,
}

/// What the owner answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellAnswer {
    /// The guild's index; for DMs `Complete`, or `Backfilling` while one of them is
    /// backfilled (answered, saying the index is incomplete).
    pub coverage: Coverage,
    /// `None` while the guild's recent history is not indexed yet (Discord's 202).
    pub hits: Option<Hits>,
}

/// Where searches go.
#[async_trait]
pub trait SearchCells: Send + Sync {
    async fn search(&self, query: CellQuery) -> Result<CellAnswer, SearchError>;
    /// A guild's plugins changed (its indexer may have): its cell's worker looks again.
    async fn plugins_changed(&self, guild: GuildId);
}

/// Answers a search from the cells open in this process.
pub async fn answer_here(cells: &Cells, query: CellQuery) -> Result<CellAnswer, SearchError> {
    let scope = query.request.scope;
    let reader = cells.reader_of(scope).cloned().ok_or(SearchError::NotHere(cells.cell_of(scope) as u32))?;
    let coverage = match query.guild {
        Some(guild) => {
            let log = LogKey::Guild(guild);
            let coverage = reader.coverage(log);
            if coverage == Coverage::Unknown {
                cells.request_backfill(log);
            }
            coverage
        }
        None => dms_coverage(cells, &reader, scope, &query.request.channels),
    };
    if !matches!(coverage, Coverage::Complete | Coverage::Backfilling { recent_done: true, .. }) {
        return Ok(CellAnswer { coverage, hits: None });
    }
    let mut request = query.request;
    // A guild's documents of the generation its searches read (a re-index builds the next).
    request.gen = query.guild.map_or(0, |guild| reader.serving(LogKey::Guild(guild)));
    let hits = tokio::task::spawn_blocking(move || request.run(&reader))
        .await
        .map_err(|e| SearchError::Unavailable(e.to_string()))??;
    Ok(CellAnswer { coverage, hits: Some(hits) })
}

/// What a search of `user`'s DMs `channels` can rely on in the user's cell. A DM unknown
/// there (from before the index, or before the cell was rebuilt, and not streamed since) is
/// backfilled from now on; until every one is complete, answers say the index is incomplete
/// (DM searches are never refused: a DM has a page of history at a time to read).
fn dms_coverage(cells: &Cells, reader: &CellReader, user: Snowflake, channels: &[Snowflake]) -> Coverage {
    let mut documents = 0;
    let mut complete = true;
    for &channel in channels {
        let log = LogKey::Dm(channel);
        match reader.coverage(log) {
            Coverage::Complete => {}
            Coverage::Unknown => {
                cells.request_backfill_in(log, cells.cell_of(user));
                complete = false;
            }
            Coverage::Backfilling { documents: d, .. } => {
                documents += d;
                complete = false;
            }
        }
    }
    match complete {
        true => Coverage::Complete,
        false => Coverage::Backfilling { recent_done: true, documents },
    }
}

#[async_trait]
impl SearchCells for Cells {
    async fn search(&self, query: CellQuery) -> Result<CellAnswer, SearchError> {
        answer_here(self, query).await
    }

    async fn plugins_changed(&self, guild: GuildId) {
        Cells::plugins_changed(self, guild);
    }
}

/// The subjects of a cluster's cells: `{cluster}.search.{cell}.{query|plugins}`.
fn subject(cluster: &str, cell: u32, what: &str) -> String {
    format!("{cluster}.search.{cell}.{what}")
}

/// A cluster's cells, reached over the bus.
pub struct BusCells {
    client: async_nats::Client,
    cluster: String,
    layout: CellLayout,
    timeout: Duration,
}

impl BusCells {
    pub fn new(client: async_nats::Client, cluster: &str, layout: CellLayout, timeout: Duration) -> BusCells {
        BusCells { client, cluster: cluster.to_owned(), layout, timeout }
    }
}

#[async_trait]
impl SearchCells for BusCells {
    async fn search(&self, query: CellQuery) -> Result<CellAnswer, SearchError> {
        let cell = self.layout.cell_of(query.request.scope);
        let payload = serde_json::to_vec(&query).expect("a query serializes");
        let ask = self.client.request(subject(&self.cluster, cell, "query"), payload.into());
        let reply = match tokio::time::timeout(self.timeout, ask).await {
            Err(_) => return Err(SearchError::Unavailable(format!("cell {cell} did not answer in time"))),
            // Nobody owns the cell this moment (its worker died or hands it over).
            Ok(Err(e)) if e.kind() == RequestErrorKind::NoResponders => return Err(SearchError::NotHere(cell)),
            Ok(Err(e)) => return Err(SearchError::Unavailable(e.to_string())),
            Ok(Ok(reply)) => reply,
        };
        match serde_json::from_slice::<Result<CellAnswer, SearchError>>(&reply.payload) {
            Ok(answer) => answer,
            Err(e) => Err(SearchError::Unavailable(format!("cell {cell} answered what does not decode: {e}"))),
        }
    }

    async fn plugins_changed(&self, guild: GuildId) {
        let cell = self.layout.cell_of(guild);
        let note = subject(&self.cluster, cell, "plugins");
        if let Err(e) = self.client.publish(note, guild.0.to_string().into()).await {
            // Its worker looks again within `plugin_recheck` anyway.
            tracing::warn!(%guild, error = %e, "could not tell a search cell that a guild's plugins changed");
        }
    }
}

/// Searches a cell's owner runs at once; more are refused (the caller answers 503).
const MAX_SEARCHES_IN_FLIGHT: usize = 64;

/// Answers `cell`'s searches and plugin notes from `cells` until the task is aborted (its
/// subscription goes with it). Subscribed before it returns.
pub async fn serve_cell(
    client: async_nats::Client,
    cluster: &str,
    cell: u32,
    cells: Arc<Cells>,
) -> Result<tokio::task::JoinHandle<()>, SearchError> {
    assert!(cells.is_open(cell as usize), "a cell is served where it is open");
    let mut subscription = client
        .subscribe(subject(cluster, cell, "*"))
        .await
        .map_err(|e| SearchError::Unavailable(format!("subscribing to cell {cell}'s searches: {e}")))?;
    let in_flight = Arc::new(tokio::sync::Semaphore::new(MAX_SEARCHES_IN_FLIGHT));
    Ok(tokio::spawn(async move {
        while let Some(message) = subscription.next().await {
            if message.subject.ends_with(".plugins") {
                match std::str::from_utf8(&message.payload).ok().and_then(|s| s.parse::<u64>().ok()) {
                    Some(guild) => cells.plugins_changed(Snowflake(guild)),
                    None => tracing::warn!(subject = %message.subject, "an unreadable plugin note; ignored"),
                }
                continue;
            }
            let Some(reply) = message.reply.clone() else { continue };
            let (client, cells) = (client.clone(), cells.clone());
            let permit = in_flight.clone().try_acquire_owned();
            tokio::spawn(async move {
                let answer = match (permit, serde_json::from_slice::<CellQuery>(&message.payload)) {
                    (Err(_), _) => Err(SearchError::Unavailable(format!("cell {cell} is busy"))),
                    (_, Err(e)) => Err(SearchError::Unavailable(format!("a query that does not decode: {e}"))),
                    (Ok(_permit), Ok(query)) => answer_here(&cells, query).await,
                };
                let payload = serde_json::to_vec(&answer).expect("an answer serializes");
                if let Err(e) = client.publish(reply, payload.into()).await {
                    tracing::debug!(cell, error = %e, "a search's answer was not sent");
                }
            });
        }
    }))
}
