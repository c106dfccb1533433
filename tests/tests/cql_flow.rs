//! The main flows once more, with `--storage scylla://...` against a real CQL node.

use guildhall_e2e::{flows, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guild_invite_dm_and_ordered_fanout_on_cql() {
    let Some(server) = Server::start_on_cql(&[]).await else { return };
    flows::guild_invite_dm_and_ordered_fanout(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_replays_exactly_the_missed_dispatches_on_cql() {
    let Some(server) = Server::start_on_cql(&[]).await else { return };
    flows::resume_replays_exactly_the_missed_dispatches(&server).await;
}
