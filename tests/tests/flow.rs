//! The main flows on the embedded store (see `guildhall_e2e::flows`).

use guildhall_e2e::{flows, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guild_invite_dm_and_ordered_fanout() {
    flows::guild_invite_dm_and_ordered_fanout(&Server::start(&[]).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_replays_exactly_the_missed_dispatches() {
    flows::resume_replays_exactly_the_missed_dispatches(&Server::start(&[]).await).await;
}
