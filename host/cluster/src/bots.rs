//! Bots on another node than their guild's, over the bus: the placement (each bot on the
//! ring owner of its plugin id) and the subject where a node takes its hosted bots'
//! starts, events and stops (`{c}.node.{n}.bots`, one message per event and bot, in the
//! order the guild's node sent them: one publisher, one outbox).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use guildhall_bus::BusError;
use guildhall_core::clock::Clock;
use guildhall_core::Snowflake;
use guildhall_runtime::addresses::reply::NodeId;
use guildhall_runtime::plugin_runners::remote_bots::{BotPlacement, BotWire, HostedBots, RunnerId};

use crate::transport::Transport;
use crate::wire::{decode, encode};

/// `plugins.bot_placement = "spread"`: each bot runs on the ring owner of its plugin id.
pub struct SpreadBots {
    transport: Arc<Transport>,
    /// The last runner sequence given out (Unix ms << 16, plus a count within the ms).
    last_seq: AtomicU64,
    clock: Arc<dyn Clock>,
}

impl SpreadBots {
    pub fn new(transport: Arc<Transport>, clock: Arc<dyn Clock>) -> Arc<SpreadBots> {
        Arc::new(SpreadBots { transport, last_seq: AtomicU64::new(0), clock })
    }
}

impl BotPlacement for SpreadBots {
    fn node_for(&self, plugin: Snowflake) -> Option<NodeId> {
        self.transport.owner(plugin)
    }

    fn send(&self, node: NodeId, msg: &BotWire) {
        self.transport.post(self.transport.subjects().bots(node), encode(msg));
    }

    fn me(&self) -> NodeId {
        self.transport.node()
    }

    fn next_runner(&self) -> RunnerId {
        let now = self.clock.unix_ms() << 16;
        let prev = self.last_seq.fetch_update(Relaxed, Relaxed, |last| Some(now.max(last + 1))).expect("always some");
        RunnerId { origin: self.me(), seq: now.max(prev + 1) }
    }
}

/// Takes this node's hosted-bot traffic off the bus, in order, into `hosted`.
pub async fn serve_hosted_bots(transport: &Arc<Transport>, hosted: Arc<HostedBots>) -> Result<(), BusError> {
    let mut inbox = transport.bus().subscribe(&transport.subjects().bots(transport.node())).await?;
    tokio::spawn(async move {
        while let Some(message) = inbox.next().await {
            match decode::<BotWire>(&message.payload) {
                Ok(msg) => hosted.handle(msg),
                Err(e) => tracing::warn!(error = %e, "dropping an unreadable bot message"),
            }
        }
    });
    Ok(())
}
