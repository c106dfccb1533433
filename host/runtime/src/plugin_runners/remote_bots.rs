//! Bots that run on another node than their guild (a cluster with
//! `plugins.bot_placement = "spread"`: each bot on the ring owner of its plugin id, so a
//! busy guild's bots do not all load its node). The guild actor starts the runner there
//! with a [`BotWire::Start`] and sends it each event bots get, typed, one bus message per
//! event and bot, in order; the runner acts through the guild's address (commands over
//! the bus) and reads through the cluster's channel-routed reads, like any bot beside its
//! guild. A runner ends when its guild sends `Stop` (the actor reloaded its plugins,
//! placed its bots anew or stopped), when a newer runner of the same bot starts, or when
//! the guild's node leaves the view.

use guildhall_core::clock::Clock;
use guildhall_core::sync::LockUnpoisoned;
use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use guildhall_core::event::GuildEvent;
use guildhall_core::model::{GuildId, PluginRecord, User};
use guildhall_core::Snowflake;
use guildhall_data::DataService;
use guildhall_plugins::{Channel as PluginChannel, PluginEngine};
use serde::{Deserialize, Serialize};

use crate::addresses::guild_ref::Locate;
use crate::addresses::reply::NodeId;
use crate::infrastructure::config::PluginsConfig;
use crate::infrastructure::metrics::Metrics;
use crate::infrastructure::reads::MessageReads;
use crate::plugin_runners::bots::{bot_event, spawn_loading, BotRunner, BotSpec};
use crate::plugin_runners::plugin_support::load_component;
use crate::plugin_runners::pubsub::PluginBus;

/// One start of a bot's runner: the guild's node, and when (Unix ms, shifted, plus a count:
/// ordered across nodes as far as their clocks agree, and a guild moves between nodes
/// more slowly than that). A `Stop` or an event names the runner it is for, so a late one
/// never reaches a newer runner, and a late `Start` never replaces a newer one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RunnerId {
    pub origin: NodeId,
    pub seq: u64,
}

/// Does a start of `new` replace the runner `current`? Only if it is not older (a start
/// that arrives late, after its guild replaced it, changes nothing).
fn supersedes(new: RunnerId, current: Option<RunnerId>) -> bool {
    current.is_none_or(|current| new.seq >= current.seq)
}

/// What a guild's node sends the node that runs one of its bots.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum BotWire {
    /// Run this bot for its guild (replacing an older runner of it).
    Start {
        runner: RunnerId,
        record: Box<PluginRecord>,
        bot_user: Box<User>,
        channels: Vec<(u64, String)>,
    },
    /// An event of the guild, for the bot.
    Event {
        runner: RunnerId,
        guild: GuildId,
        plugin: Snowflake,
        event: Box<GuildEvent>,
    },
    Stop {
        runner: RunnerId,
        guild: GuildId,
        plugin: Snowflake,
    },
}

/// Where a guild's bots run; a cluster implements it (a single host runs every bot beside
/// its guild and has none).
pub trait BotPlacement: Send + Sync {
    /// The node that should run this bot, by this node's view; `None`: here.
    fn node_for(&self, plugin: Snowflake) -> Option<NodeId>;
    /// Sends `msg` to `node`'s [`HostedBots`]; messages to one node arrive in the order sent.
    fn send(&self, node: NodeId, msg: &BotWire);
    /// This node.
    fn me(&self) -> NodeId;
    /// A new runner id of this node.
    fn next_runner(&self) -> RunnerId;
}

/// A guild actor's end of a bot it placed on another node. Dropping it stops the runner.
pub struct RemoteBot {
    pub node: NodeId,
    runner: RunnerId,
    guild: GuildId,
    plugin: Snowflake,
    placement: Arc<dyn BotPlacement>,
}

impl RemoteBot {
    pub fn start(
        node: NodeId,
        placement: Arc<dyn BotPlacement>,
        record: PluginRecord,
        bot_user: User,
        channels: &[PluginChannel],
    ) -> RemoteBot {
        let runner = placement.next_runner();
        let (guild, plugin) = (record.guild_id, record.id);
        let channels = channels.iter().map(|c| (c.id, c.name.clone())).collect();
        placement
            .send(node, &BotWire::Start { runner, record: Box::new(record), bot_user: Box::new(bot_user), channels });
        RemoteBot { node, runner, guild, plugin, placement }
    }

    /// Never waits (the bus's outbox is bounded; a full one drops, as a full queue does).
    pub fn offer(&self, event: &GuildEvent) {
        let msg = BotWire::Event {
            runner: self.runner,
            guild: self.guild,
            plugin: self.plugin,
            event: Box::new(event.clone()),
        };
        self.placement.send(self.node, &msg);
    }
}

impl Drop for RemoteBot {
    fn drop(&mut self) {
        self.placement.send(self.node, &BotWire::Stop { runner: self.runner, guild: self.guild, plugin: self.plugin });
    }
}

/// A bot as its guild actor holds it: a runner beside it, or one on another node.
pub enum PlacedBot {
    Here(BotRunner),
    There(RemoteBot),
}

impl PlacedBot {
    /// The node that runs it; `None`: this one.
    pub fn node(&self) -> Option<NodeId> {
        match self {
            PlacedBot::Here(_) => None,
            PlacedBot::There(remote) => Some(remote.node),
        }
    }

    pub fn plugin_id(&self) -> Snowflake {
        match self {
            PlacedBot::Here(runner) => runner.plugin_id,
            PlacedBot::There(remote) => remote.plugin,
        }
    }

    /// Offers an event bots get (see [`bot_event`]).
    pub fn offer(&self, event: &GuildEvent) {
        match self {
            PlacedBot::Here(runner) => {
                if let Some(e) = bot_event(event) {
                    runner.offer(e)
                }
            }
            PlacedBot::There(remote) => remote.offer(event),
        }
    }
}

/// What a node needs to run other nodes' guilds' bots.
pub struct HostedBotsDeps {
    pub engine: Arc<PluginEngine>,
    pub data: Arc<DataService>,
    pub reads: Arc<dyn MessageReads>,
    /// Finds a guild's actor (on its node) for the bots to act through.
    pub guilds: Arc<dyn Locate>,
    pub plugin_bus: Option<Arc<PluginBus>>,
    pub limits: PluginsConfig,
    pub metrics: Arc<Metrics>,
    pub clock: Arc<dyn Clock>,
}

/// Runners by (guild, plugin id).
type Runners = HashMap<(GuildId, Snowflake), (RunnerId, BotRunner)>;

/// The bots this node runs for guilds on other nodes.
pub struct HostedBots {
    deps: HostedBotsDeps,
    running: Mutex<Runners>,
}

/// Times a hosted bot's runner tries to reach its guild (500 ms apart) before it gives up.
const LOCATE_ATTEMPTS: u32 = 20;

/// The most bots one node runs for other nodes' guilds (a Start beyond it is refused and
/// logged: the bot stays off until it is placed again).
pub const MAX_HOSTED_BOTS: usize = 10_000;

impl HostedBots {
    pub fn new(deps: HostedBotsDeps) -> Arc<HostedBots> {
        Arc::new(HostedBots { deps, running: Mutex::new(HashMap::new()) })
    }

    pub fn handle(&self, msg: BotWire) {
        let mut running = self.running.lock_unpoisoned();
        self.apply(&mut running, msg);
        self.deps.metrics.bots_hosted.store(running.len() as u64, Relaxed);
    }

    fn apply(&self, running: &mut Runners, msg: BotWire) {
        match msg {
            BotWire::Start { runner, record, bot_user, channels } => {
                let key = (record.guild_id, record.id);
                if running.len() >= MAX_HOSTED_BOTS && !running.contains_key(&key) {
                    tracing::error!(plugin = %record.name, guild = %record.guild_id, "too many hosted bots; not started");
                    return;
                }
                if !supersedes(runner, running.get(&key).map(|(current, _)| *current)) {
                    return; // a late start of a runner its guild (here or on its new node) replaced
                }
                Metrics::inc(&self.deps.metrics.bots_hosted_started);
                let bot = spawn_loading(record.id, self.load(*record, *bot_user, channels));
                running.insert(key, (runner, bot)); // a runner it replaces ends with its queue
            }
            BotWire::Event { runner, guild, plugin, event } => match running.get(&(guild, plugin)) {
                Some((current, bot)) if *current == runner && bot.has_ended() => {
                    // It could not load, or ended: forget it (its guild starts it again
                    // when it reloads or places its bots).
                    running.remove(&(guild, plugin));
                }
                Some((current, bot)) if *current == runner => {
                    if let Some(e) = bot_event(&event) {
                        bot.offer(e)
                    }
                }
                _ => tracing::debug!(%guild, %plugin, "an event for a bot runner that is not here; dropped"),
            },
            BotWire::Stop { runner, guild, plugin } => {
                if running.get(&(guild, plugin)).is_some_and(|(current, _)| *current == runner) {
                    running.remove(&(guild, plugin));
                }
            }
        }
    }

    /// Ends the runners whose guild's node is gone (that guild restarts on a live node,
    /// which starts its bots again).
    pub fn keep_origins(&self, alive: impl Fn(NodeId) -> bool) -> usize {
        let mut running = self.running.lock_unpoisoned();
        let before = running.len();
        running.retain(|_, (runner, _)| alive(runner.origin));
        self.deps.metrics.bots_hosted.store(running.len() as u64, Relaxed);
        before - running.len()
    }

    /// Bots running here for other nodes' guilds.
    pub fn count(&self) -> usize {
        self.running.lock_unpoisoned().len()
    }

    fn load(
        &self,
        record: PluginRecord,
        bot_user: User,
        channels: Vec<(u64, String)>,
    ) -> impl std::future::Future<Output = Option<BotSpec>> + Send + 'static {
        let d = &self.deps;
        let (engine, data, reads, guilds) = (d.engine.clone(), d.data.clone(), d.reads.clone(), d.guilds.clone());
        let (plugin_bus, deadline) = (d.plugin_bus.clone(), Duration::from_millis(d.limits.bot_event_deadline_ms));
        let guild_call_timeout = Duration::from_millis(d.limits.guild_call_timeout_ms);
        let clock = d.clock.clone();
        async move {
            let plugin = load_component(&engine, &**data.store(), &record)
                .await
                .map_err(|e| tracing::error!(plugin = %record.name, error = %e, "cannot load hosted bot"))
                .ok()?;
            // Views differ for a moment after a node joins or dies: the guild's node may not
            // answer yet. Try for a while; the bot stays off only if it never does.
            let mut attempt = 0;
            let guild = loop {
                match guilds.locate(record.guild_id).await {
                    Ok(guild) => break guild,
                    Err(e) if attempt >= LOCATE_ATTEMPTS => {
                        tracing::error!(plugin = %record.name, error = %e, "hosted bot: cannot reach its guild");
                        return None;
                    }
                    Err(_) => attempt += 1,
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            };
            let channels = channels.into_iter().map(|(id, name)| PluginChannel { id, name }).collect();
            Some(BotSpec {
                engine,
                plugin,
                record,
                bot_user,
                guild,
                data,
                reads,
                channels: Arc::new(channels),
                event_deadline: deadline,
                guild_call_timeout,
                plugin_bus,
                clock,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_start_that_is_not_older_replaces_a_runner() {
        let runner = |origin, seq| RunnerId { origin, seq };
        assert!(supersedes(runner(1, 5), None));
        assert!(supersedes(runner(1, 6), Some(runner(1, 5))), "the guild restarted it");
        assert!(supersedes(runner(2, 7), Some(runner(1, 5))), "the guild moved to node 2 and started it there");
        assert!(!supersedes(runner(1, 5), Some(runner(2, 7))), "the old node's start arrived late");
    }
}
