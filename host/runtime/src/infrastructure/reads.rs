//! Message reads (history, one message), as REST asks for them. On one host the data
//! service answers; a cluster sends each read to the node that runs the channel's actor,
//! whose data service also takes that channel's writes: one place per channel for
//! coalescing, and read-after-write holds across nodes.

use std::sync::Arc;

use async_trait::async_trait;
use guildhall_core::model::{Channel, Message, MessageId};
use guildhall_data::DataService;
use guildhall_store::{HistoryQuery, Result};

#[async_trait]
pub trait MessageReads: Send + Sync {
    async fn history(&self, channel: &Channel, query: HistoryQuery, limit: usize) -> Result<Arc<Vec<Message>>>;
    async fn message(&self, channel: &Channel, id: MessageId) -> Result<Option<Message>>;
}

#[async_trait]
impl MessageReads for DataService {
    async fn history(&self, channel: &Channel, query: HistoryQuery, limit: usize) -> Result<Arc<Vec<Message>>> {
        DataService::history(self, channel, query, limit).await
    }

    async fn message(&self, channel: &Channel, id: MessageId) -> Result<Option<Message>> {
        DataService::message(self, channel, id).await
    }
}
