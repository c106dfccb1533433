//! The stream in a cluster: one JetStream stream, `{cluster}_events`, on disk.
//!
//! An entry is published once for each search cell it is indexed in (its guild's; each of a
//! DM's recipients', see `CellLayout`), to `{cluster}.events.{cell}.{kind}.{log id}`, with
//! `Nats-Msg-Id` `{cell}-{log id}-{seq}`, so the server drops what a relay sends again within
//! its duplicate window (readers skip the rest by `seq`). A cell's indexing worker reads its
//! cell's subjects alone, through a durable consumer of its own (`cell_consumer`). The
//! layout is the stream's: recorded in its metadata when it is made, and a node configured
//! with another one is refused (its entries would reach the wrong cells).
//!
//! An append publishes its entries one after another on one connection (the server keeps
//! their order) and returns once the server acknowledged every one. Consumers are durable pull consumers that acknowledge everything up to a message
//! (`AckPolicy::All`); what a consumer has not acknowledged within `ack_wait` comes again.

use std::collections::VecDeque;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::{self, stream};
use async_nats::HeaderMap;
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use guildhall_core::stream::{CellLayout, LogEntry, LogKey};

use crate::{decode, encode, unavailable, Delivered, EventLog, LogConsumer, Progress, Result, StreamError};

/// The stream's metadata key that records its cell layout (JSON).
const LAYOUT_KEY: &str = "guildhall_cell_layout";

#[derive(Debug, Clone)]
pub struct JetStreamConfig {
    /// The cluster's name: the stream is `{cluster}_events`, its subjects `{cluster}.events.>`.
    pub cluster: String,
    /// How long the stream keeps an entry (the longest a worker may be away and catch up).
    pub max_age: Duration,
    /// Copies of the stream (1 on a single NATS server; 3 in a NATS cluster).
    pub replicas: usize,
    /// How long a consumer has to acknowledge a delivery before it comes again.
    pub ack_wait: Duration,
    /// The search cells entries are filed under.
    pub layout: CellLayout,
}

impl JetStreamConfig {
    pub fn new(cluster: &str, layout: CellLayout) -> JetStreamConfig {
        JetStreamConfig {
            cluster: cluster.to_owned(),
            max_age: Duration::from_secs(7 * 24 * 3600),
            replicas: 1,
            ack_wait: Duration::from_secs(60),
            layout,
        }
    }

    pub fn stream_name(&self) -> String {
        format!("{}_events", self.cluster)
    }

    fn subject(&self, cell: u32, key: LogKey) -> String {
        let kind = match key {
            LogKey::Guild(_) => "guild",
            LogKey::Dm(_) => "dm",
        };
        format!("{}.events.{cell}.{kind}.{}", self.cluster, key.id())
    }
}

#[derive(Clone)]
pub struct JetStreamLog {
    context: jetstream::Context,
    config: JetStreamConfig,
}

impl JetStreamLog {
    /// Makes the stream if it does not exist (an existing one is used as it is configured).
    pub async fn open(client: async_nats::Client, config: JetStreamConfig) -> Result<JetStreamLog> {
        let context = jetstream::new(client);
        let layout = serde_json::to_string(&config.layout).expect("a layout serializes");
        let stream = stream::Config {
            name: config.stream_name(),
            description: Some("Guildhall: message events, for the indexing workers".into()),
            subjects: vec![format!("{}.events.>", config.cluster)],
            storage: stream::StorageType::File,
            retention: stream::RetentionPolicy::Limits,
            max_age: config.max_age,
            num_replicas: config.replicas,
            duplicate_window: Duration::from_secs(120),
            metadata: [(LAYOUT_KEY.to_owned(), layout.clone())].into(),
            ..Default::default()
        };
        let made = context.get_or_create_stream(stream).await.map_err(unavailable)?;
        match made.cached_info().config.metadata.get(LAYOUT_KEY) {
            Some(theirs) if *theirs != layout => {
                return Err(StreamError::Misconfigured(format!(
                    "the stream {} files entries under the search cells {theirs}, this node under {layout}: \
                     every node and worker of a cluster needs the same search.cells and search.dedicated_guilds",
                    config.stream_name()
                )));
            }
            _ => {}
        }
        Ok(JetStreamLog { context, config })
    }

    pub fn config(&self) -> &JetStreamConfig {
        &self.config
    }

    /// The stream's own handle (tests change its limits to make it refuse appends).
    pub fn context(&self) -> &jetstream::Context {
        &self.context
    }
}

#[async_trait]
impl EventLog for JetStreamLog {
    async fn append(&self, entries: &[LogEntry]) -> Result<()> {
        let mut acks = Vec::with_capacity(entries.len());
        for entry in entries {
            let payload = Bytes::from(encode(entry));
            for cell in self.config.layout.cells_of(entry) {
                let mut headers = HeaderMap::new();
                let id = format!("{cell}-{}-{}", entry.key.id(), entry.seq);
                headers.insert(async_nats::header::NATS_MESSAGE_ID, id.as_str());
                let subject = self.config.subject(cell, entry.key);
                let ack = self.context.publish_with_headers(subject, headers, payload.clone());
                acks.push(ack.await.map_err(unavailable)?);
            }
        }
        for ack in acks {
            ack.await.map_err(unavailable)?;
        }
        Ok(())
    }

    async fn consumer(&self, name: &str) -> Result<Box<dyn LogConsumer>> {
        self.durable(name, None).await
    }
}

impl JetStreamLog {
    /// The durable consumer `{name}-cell-{cell}`: the entries filed under one search cell.
    pub async fn cell_consumer(&self, name: &str, cell: u32) -> Result<Box<dyn LogConsumer>> {
        let filter = format!("{}.events.{cell}.>", self.config.cluster);
        self.durable(&format!("{name}-cell-{cell}"), Some(filter)).await
    }

    async fn durable(&self, name: &str, filter: Option<String>) -> Result<Box<dyn LogConsumer>> {
        let stream = self.context.get_stream(self.config.stream_name()).await.map_err(unavailable)?;
        let mut config = pull::Config {
            durable_name: Some(name.to_owned()),
            filter_subject: filter.unwrap_or_default(),
            ack_policy: AckPolicy::All,
            ack_wait: self.config.ack_wait,
            max_ack_pending: 100_000,
            ..Default::default()
        };
        // Deliveries the last reader did not acknowledge would come again only after
        // `ack_wait`. One reader at a time is the contract, so the new one starts the
        // consumer again just after its acknowledgement floor and gets them at once.
        if let Ok(mut existing) = stream.get_consumer::<pull::Config>(name).await {
            let info = existing.info().await.map_err(unavailable)?;
            if info.num_ack_pending > 0 {
                let floor = info.ack_floor.stream_sequence;
                stream.delete_consumer(name).await.map_err(unavailable)?;
                config.deliver_policy = DeliverPolicy::ByStartSequence { start_sequence: floor + 1 };
            }
        }
        let filter = config.filter_subject.clone();
        let consumer = stream.get_or_create_consumer(name, config).await.map_err(unavailable)?;
        Ok(Box::new(JetStreamConsumer { consumer, stream, filter, unacked: VecDeque::new() }))
    }
}

struct JetStreamConsumer {
    consumer: jetstream::consumer::Consumer<pull::Config>,
    stream: jetstream::stream::Stream,
    /// The subjects it reads (empty: all of the stream's).
    filter: String,
    /// Fetched and not yet acknowledged, by stream sequence (acknowledging one acknowledges
    /// every one before it).
    unacked: VecDeque<(u64, jetstream::Message)>,
}

impl JetStreamConsumer {
    /// One pull request: at most `max` entries, waiting `wait` for them (`None`: what is
    /// there now).
    async fn pull(&mut self, max: usize, wait: Option<Duration>) -> Result<Vec<Delivered>> {
        let mut out = Vec::new();
        let mut batch = match wait {
            None => self.consumer.fetch().max_messages(max).messages().await.map_err(unavailable)?,
            Some(wait) => {
                self.consumer.batch().max_messages(max).expires(wait).messages().await.map_err(unavailable)?
            }
        };
        while let Some(message) = batch.next().await {
            let message = message.map_err(unavailable)?;
            let position = message.info().map_err(unavailable)?.stream_sequence;
            out.push(Delivered { position, entry: decode(position, &message.payload) });
            self.unacked.push_back((position, message));
        }
        Ok(out)
    }
}

#[async_trait]
impl LogConsumer for JetStreamConsumer {
    async fn fetch(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivered>> {
        // What is there now; if nothing, one pull that waits for the first entry, then what
        // came with it. (A pull that waited for `max` entries would hold the first back.)
        let mut out = self.pull(max, None).await?;
        if out.is_empty() {
            out = self.pull(1, Some(wait.max(Duration::from_millis(10)))).await?;
            if !out.is_empty() && max > 1 {
                out.extend(self.pull(max - 1, None).await?);
            }
        }
        Ok(out)
    }

    async fn ack(&mut self, position: u64) -> Result<()> {
        let mut last = None;
        while self.unacked.front().is_some_and(|(p, _)| *p <= position) {
            last = self.unacked.pop_front();
        }
        if let Some((_, message)) = last {
            // Confirmed by the server: once this returns, the consumer's floor has moved.
            message.double_ack().await.map_err(unavailable)?;
        }
        Ok(())
    }

    async fn acknowledged_after(&mut self, position: u64) -> Result<bool> {
        let floor = self.progress().await?.acknowledged;
        if floor <= position || self.filter.is_empty() {
            return Ok(floor > position);
        }
        // A filtered consumer's floor moves past other subjects' entries too: what counts is
        // whether one of its own lies between.
        match self.stream.get_first_raw_message_by_subject(&self.filter, position + 1).await {
            Ok(first) => Ok(first.sequence <= floor),
            Err(e) if e.kind() == async_nats::jetstream::stream::RawMessageErrorKind::NoMessageFound => Ok(false),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn progress(&mut self) -> Result<Progress> {
        let info = self.consumer.info().await.map_err(unavailable)?;
        let pending = info.num_pending + info.num_ack_pending as u64;
        Ok(Progress { acknowledged: info.ack_floor.stream_sequence, pending })
    }
}
