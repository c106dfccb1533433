//! An indexing worker that disables a faulty indexer plugin tells the plugin's guild, whose
//! actor records it in the audit log (and sends the entry to the owner), as a bot's runner
//! does. On one host the worker reaches the actor through the directory
//! ([`ToGuildActors`]). A cluster's worker runs no actors: it asks the nodes over NATS, on
//! `{cluster}.search.disabled` ([`OverTheBus`]); the nodes answer as one queue group
//! ([`answer_notices`]), the one that takes a notice hands it to the guild's actor wherever
//! it runs, and the worker asks again until a node says it did.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use guildhall_core::model::GuildId;
use guildhall_runtime::actors::directory::Directory;
use guildhall_runtime::addresses::guild_ref::{Disabled, GuildMsg};
use guildhall_search::DisabledIndexers;
use serde::{Deserialize, Serialize};

/// Hands the notice to the guild's actor (started if it is not running). Whether it took it.
async fn tell_guild(directory: &dyn Directory, guild: GuildId, notice: Disabled) -> bool {
    match directory.locate(guild).await {
        Ok(actor) => actor.send(GuildMsg::PluginDisabled(notice)).await,
        Err(e) => {
            tracing::warn!(%guild, error = %e, "a disabled indexer's guild could not be reached");
            false
        }
    }
}

/// One host: the guild's actor through the directory.
pub struct ToGuildActors(pub Arc<dyn Directory>);

#[async_trait]
impl DisabledIndexers for ToGuildActors {
    async fn disabled(&self, guild: GuildId, notice: Disabled) {
        tell_guild(self.0.as_ref(), guild, notice).await;
    }
}

fn subject(cluster: &str) -> String {
    format!("{cluster}.search.disabled")
}

/// What travels from a worker to a node.
#[derive(Serialize, Deserialize)]
struct Notice {
    guild: GuildId,
    notice: Disabled,
}

/// The answer of the node that handed a notice to its guild.
const TAKEN: &[u8] = b"taken";

/// Times a worker asks, and how long it waits for each answer.
const ASKS: u32 = 10;
const ASK_TIMEOUT: Duration = Duration::from_secs(3);

/// A cluster's indexing worker: the nodes, over NATS.
pub struct OverTheBus {
    client: async_nats::Client,
    subject: String,
}

impl OverTheBus {
    pub fn new(client: async_nats::Client, cluster: &str) -> OverTheBus {
        OverTheBus { client, subject: subject(cluster) }
    }
}

#[async_trait]
impl DisabledIndexers for OverTheBus {
    async fn disabled(&self, guild: GuildId, notice: Disabled) {
        let name = notice.record.name.clone();
        let payload: bytes::Bytes = match serde_json::to_vec(&Notice { guild, notice }) {
            Ok(payload) => payload.into(),
            Err(e) => return tracing::error!(%guild, error = %e, "a disabled indexer's notice did not serialize"),
        };
        let (client, subject) = (self.client.clone(), self.subject.clone());
        // Off the indexing path: the worker goes on while nodes are asked.
        tokio::spawn(async move {
            for ask in 1..=ASKS {
                let asked = tokio::time::timeout(ASK_TIMEOUT, client.request(subject.clone(), payload.clone())).await;
                match asked {
                    Ok(Ok(answer)) if answer.payload.as_ref() == TAKEN => return,
                    Ok(Ok(_)) => tracing::warn!(%guild, ask, "no node could hand a disabled indexer's notice on"),
                    Ok(Err(e)) => tracing::warn!(%guild, ask, error = %e, "asking a node to record a disabled indexer"),
                    Err(_) => tracing::warn!(%guild, ask, "no node answered for a disabled indexer"),
                }
                tokio::time::sleep(ASK_TIMEOUT).await;
            }
            tracing::error!(%guild, plugin = %name, "a disabled indexer's audit entry could not be recorded");
        });
    }
}

/// A cluster node: takes the workers' notices (one node each, as a queue group) and hands
/// them to their guilds' actors, until the connection closes.
pub async fn answer_notices(
    client: async_nats::Client,
    cluster: &str,
    directory: Arc<dyn Directory>,
) -> Result<(), async_nats::SubscribeError> {
    let mut notices = client.queue_subscribe(subject(cluster), "nodes".into()).await?;
    tokio::spawn(async move {
        while let Some(message) = notices.next().await {
            let Some(reply) = message.reply.clone() else { continue };
            let answer: &[u8] = match serde_json::from_slice::<Notice>(&message.payload) {
                Ok(Notice { guild, notice }) => match tell_guild(directory.as_ref(), guild, notice).await {
                    true => TAKEN,
                    false => b"unreachable",
                },
                Err(e) => {
                    tracing::warn!(error = %e, "a disabled indexer's notice that does not decode");
                    b"undecodable"
                }
            };
            if let Err(e) = client.publish(reply, answer.into()).await {
                tracing::warn!(error = %e, "answering an indexing worker failed");
            }
        }
    });
    Ok(())
}
