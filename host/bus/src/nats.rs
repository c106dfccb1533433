//! The bus over core NATS (async-nats): the realtime path of a cluster.

use std::time::Duration;

use async_nats::{Client, RequestErrorKind};
use async_trait::async_trait;
use bytes::Bytes;

use crate::bus::Bus;
use crate::message::BusError;
use crate::subject::{check_pattern, check_subject};
use crate::subscription::{Subscription, SubscriptionInner};

/// A connection to a NATS server (it reconnects by itself; publishes made while it is
/// away are buffered by the client up to its limit, then refused).
#[derive(Clone)]
pub struct NatsBus {
    client: Client,
}

impl NatsBus {
    /// Connects to `url` (`nats://HOST:PORT`, comma-separated for several servers),
    /// naming the connection `name` (it shows in the server's monitoring).
    pub async fn connect(url: &str, name: &str) -> Result<NatsBus, BusError> {
        let client = async_nats::ConnectOptions::new()
            .name(name)
            .connection_timeout(Duration::from_secs(5))
            .event_callback(|event| async move {
                tracing::info!(%event, "nats connection");
            })
            .connect(url)
            .await
            .map_err(|e| BusError::Unavailable(format!("connecting to {url}: {e}")))?;
        Ok(NatsBus { client })
    }

    /// The underlying client, for JetStream (membership, leases, durable streams).
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn check_size(&self, payload: &Bytes) -> Result<(), BusError> {
        let max = self.max_payload();
        if payload.len() > max {
            return Err(BusError::TooLarge { size: payload.len(), max });
        }
        Ok(())
    }
}

fn unavailable(e: impl std::fmt::Display) -> BusError {
    BusError::Unavailable(e.to_string())
}

/// How long a publish, a subscription or a flush may wait for the client. The client
/// buffers while its server is away, but a server that stopped answering (hung, or a
/// network that drops packets) fills the buffer, and a publish would then wait until the
/// client notices the dead connection, minutes later. Requests carry their own timeout.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

async fn bounded<T, E: std::fmt::Display>(
    what: &str,
    call: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, BusError> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(result) => result.map_err(unavailable),
        Err(_) => Err(BusError::TimedOut(what.to_owned())),
    }
}

#[async_trait]
impl Bus for NatsBus {
    async fn publish(&self, subject: &str, payload: Bytes) -> Result<(), BusError> {
        check_subject(subject)?;
        self.check_size(&payload)?;
        bounded(subject, self.client.publish(subject.to_owned(), payload)).await
    }

    async fn publish_with_reply(&self, subject: &str, reply: &str, payload: Bytes) -> Result<(), BusError> {
        check_subject(subject)?;
        check_subject(reply)?;
        self.check_size(&payload)?;
        bounded(subject, self.client.publish_with_reply(subject.to_owned(), reply.to_owned(), payload)).await
    }

    async fn subscribe(&self, pattern: &str) -> Result<Subscription, BusError> {
        check_pattern(pattern)?;
        let subscriber = bounded(pattern, self.client.subscribe(pattern.to_owned())).await?;
        Ok(Subscription { inner: SubscriptionInner::Nats(subscriber) })
    }

    async fn request(&self, subject: &str, payload: Bytes, timeout: Duration) -> Result<Bytes, BusError> {
        check_subject(subject)?;
        self.check_size(&payload)?;
        let request = async_nats::Request::new().payload(payload).timeout(Some(timeout));
        match self.client.send_request(subject.to_owned(), request).await {
            Ok(answer) => Ok(answer.payload),
            Err(e) => Err(match e.kind() {
                RequestErrorKind::NoResponders => BusError::NoResponders(subject.to_owned()),
                RequestErrorKind::TimedOut => BusError::TimedOut(subject.to_owned()),
                RequestErrorKind::InvalidSubject => BusError::InvalidSubject(subject.to_owned()),
                _ => unavailable(e),
            }),
        }
    }

    async fn flush(&self) -> Result<(), BusError> {
        bounded("flush", self.client.flush()).await
    }

    fn max_payload(&self) -> usize {
        self.client.server_info().max_payload
    }
}
