//! Relays: the fan-out path between guilds and the sessions of this node (the seed's
//! "separate sender", Discord's relays). A process runs a few relay tasks, one per core by
//! default; every local session belongs to one of them (by its id). A guild hands each
//! event once to each relay that has sessions in its audience, with the serialized
//! dispatch and those sessions, and goes on with its next command: it never spends its own
//! time on the recipients, and a guild of many thousands of sessions has its fan-out split
//! over the cores. A relay offers the dispatch to each session's queue in the order the
//! guild sent its events, so each session sees a guild's events in order (a session
//! belongs to one relay, and a relay's mailbox is first in, first out).
//!
//! A session whose queue is full is flagged as too slow (it closes itself) and reported
//! to the guild, which stops sending to it; the relay goes on with the others at once.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use guildhall_core::gateway::DispatchPrefix;
use guildhall_core::guild::SessionId;
use guildhall_core::model::GuildId;
use tokio::sync::mpsc;

use crate::addresses::guild_ref::GuildRef;
use crate::addresses::session::{Offer, SessionHandle, SessionMsg};
use crate::infrastructure::metrics::Metrics;

/// What a relay is handed.
pub enum RelayMsg {
    /// One dispatch of `guild` for these sessions (all of this relay's). Those that are
    /// gone or too slow are reported to the guild, which stops sending to them.
    Deliver { prefix: DispatchPrefix, sessions: Arc<[SessionHandle]>, guild: GuildRef },
    /// A guild routes `session` elsewhere now: the marker follows every dispatch the guild
    /// handed this relay for it (see [`SessionMsg::Moved`]).
    Moved { session: SessionHandle, guild: GuildId },
}

/// The relays of this process: where a guild hands an event for each session.
#[derive(Clone)]
pub struct Relays {
    mailboxes: Arc<[mpsc::Sender<RelayMsg>]>,
}

impl Relays {
    /// Starts `count` relay tasks (at least one), each with a mailbox of `queue` events.
    pub fn spawn(count: usize, queue: usize, metrics: Arc<Metrics>) -> Relays {
        let mailboxes: Vec<_> = (0..count.max(1))
            .map(|_| {
                let (tx, rx) = mpsc::channel(queue.max(1));
                tokio::spawn(run_relay(rx, metrics.clone()));
                tx
            })
            .collect();
        Relays { mailboxes: mailboxes.into() }
    }

    pub fn count(&self) -> usize {
        self.mailboxes.len()
    }

    /// The relay a session belongs to.
    pub fn of(&self, session: SessionId) -> usize {
        (session.0 % self.mailboxes.len() as u64) as usize
    }

    /// Hands `msg` to relay `relay`, waiting while its mailbox is full: a relay that
    /// cannot keep up slows the guilds that feed it (and so their senders) rather than
    /// lose their events.
    pub async fn send(&self, relay: usize, msg: RelayMsg) {
        // A relay ends only with the runtime; nothing is left to deliver to then.
        let _ = self.mailboxes[relay].send(msg).await;
    }
}

async fn run_relay(mut mailbox: mpsc::Receiver<RelayMsg>, metrics: Arc<Metrics>) {
    while let Some(msg) = mailbox.recv().await {
        match msg {
            RelayMsg::Deliver { prefix, sessions, guild } => {
                let mut delivered = 0u64;
                for session in sessions.iter() {
                    match session.offer(&prefix) {
                        Offer::Queued => delivered += 1,
                        Offer::Overflowed => {
                            Metrics::inc(&metrics.slow_consumer_drops);
                            guild.disconnect(session.id);
                        }
                        Offer::Gone => guild.disconnect(session.id),
                        Offer::Dropped => {}
                    }
                }
                metrics.deliveries.fetch_add(delivered, Relaxed);
            }
            RelayMsg::Moved { session, guild } => {
                let _ = session.tx.try_send(SessionMsg::Moved(guild)); // full: it waits out its deadline
            }
        }
    }
}
