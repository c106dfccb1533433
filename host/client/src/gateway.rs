//! The gateway side of the client: a WebSocket connection to a host's gateway (the same
//! handshake any Discord client makes), for the benchmarks and the end-to-end tests.

use std::future::Future;

use bytes::Bytes;
use fastwebsockets::{FragmentCollector, Frame, OpCode, Payload};
use http_body_util::Empty;
use hyper::upgrade::Upgraded;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::ClientError;

/// A WebSocket to a gateway, messages reassembled from fragments.
pub type GatewaySocket = FragmentCollector<TokioIo<Upgraded>>;

struct SpawnExecutor;

impl<F> hyper::rt::Executor<F> for SpawnExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        tokio::spawn(fut);
    }
}

/// Opens a WebSocket to `authority` (`HOST:PORT`) at `path_and_query`
/// (e.g. `/gateway?v=10&encoding=json`).
pub async fn connect_gateway(authority: &str, path_and_query: &str) -> Result<GatewaySocket, ClientError> {
    let stream = TcpStream::connect(authority).await.map_err(|e| ClientError::Connect(authority.to_owned(), e))?;
    let _ = stream.set_nodelay(true);
    let request = Request::builder()
        .method("GET")
        .uri(path_and_query)
        .header("host", authority)
        .header("upgrade", "websocket")
        .header("connection", "upgrade")
        .header("sec-websocket-key", websocket_key())
        .header("sec-websocket-version", "13")
        .body(Empty::<Bytes>::new())?;
    let (ws, _) = fastwebsockets::handshake::client(&SpawnExecutor, request, stream)
        .await
        .map_err(|e| ClientError::WebSocket(e.to_string()))?;
    Ok(FragmentCollector::new(ws))
}

/// A fresh `Sec-WebSocket-Key` (for a client that makes its handshake itself).
pub fn websocket_key() -> String {
    fastwebsockets::handshake::generate_key()
}

/// Sends a JSON text frame.
pub async fn send_json(ws: &mut GatewaySocket, value: &serde_json::Value) -> Result<(), ClientError> {
    let bytes = serde_json::to_vec(value)?;
    ws.write_frame(Frame::text(Payload::Owned(bytes))).await.map_err(|e| ClientError::WebSocket(e.to_string()))
}

/// The next data frame: whether it is binary (a `compress=zlib-stream` connection's), and
/// its bytes; `None` once the server closed the connection.
pub async fn next_frame(ws: &mut GatewaySocket) -> Result<Option<(bool, Vec<u8>)>, ClientError> {
    loop {
        let frame = ws.read_frame().await.map_err(|e| ClientError::WebSocket(e.to_string()))?;
        match frame.opcode {
            OpCode::Text => return Ok(Some((false, frame.payload.to_vec()))),
            OpCode::Binary => return Ok(Some((true, frame.payload.to_vec()))),
            OpCode::Close => return Ok(None),
            _ => {}
        }
    }
}

/// The next text frame's bytes; `None` once the server closed the connection.
pub async fn next_text(ws: &mut GatewaySocket) -> Result<Option<Vec<u8>>, ClientError> {
    loop {
        let frame = ws.read_frame().await.map_err(|e| ClientError::WebSocket(e.to_string()))?;
        match frame.opcode {
            OpCode::Text => return Ok(Some(frame.payload.to_vec())),
            OpCode::Close => return Ok(None),
            _ => {}
        }
    }
}
