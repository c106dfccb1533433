//! The WebSocket edge of the gateway: `GET /gateway?v=10&encoding=json`, or `/` (where
//! `GET /gateway/bot` points, as Discord's own URL has no path).
//!
//! Upgrades the HTTP connection, splits the socket, starts the reader task (frames in,
//! reassembled and size-checked, as [`Inbound`] events) and hands the write half to a new
//! session actor. Everything the protocol decides happens in the session state machine.
//! `compress=zlib-stream` gives the connection its own compression stream.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use fastwebsockets::{Frame, OpCode, WebSocketError, WebSocketRead};
use guildhall_core::gateway::close;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

use crate::app::App;
use crate::rest::error::ApiError;
use crate::session_actor::{run_session, Conn, Inbound, Writer};
use crate::write_buffer::GatheringWriter;

/// Frames a reader may queue ahead of its session actor (it then stops reading: TCP
/// backpressure reaches the client).
const INBOUND_QUEUE: usize = 16;

pub fn upgrade(app: Arc<App>, mut req: Request<Incoming>) -> Result<Response<Full<Bytes>>, ApiError> {
    let query = req.uri().query().unwrap_or("");
    let param = |name: &str| query.split('&').find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('=')));
    // Problems with the query are reported the way Discord does: with a close code.
    // Version 9 is accepted beside 10 (several libraries still default to it); the shapes
    // served are the same.
    let refusal = if param("v").is_some_and(|v| v != "10" && v != "9") {
        Some((close::INVALID_API_VERSION, "invalid API version"))
    } else if param("encoding").is_some_and(|e| e != "json") {
        Some((close::DECODE_ERROR, "only encoding=json is supported"))
    } else if param("compress").is_some_and(|c| c != "zlib-stream") {
        Some((close::DECODE_ERROR, "compress: only zlib-stream is supported"))
    } else {
        None
    };
    let zlib_stream = param("compress") == Some("zlib-stream");
    // The connection's slots, held for as long as the WebSocket lives.
    let hold = req.extensions_mut().remove::<Arc<crate::limits::ConnectionHold>>();
    let (response, upgrade) = fastwebsockets::upgrade::upgrade(&mut req)
        .map_err(|e| ApiError::bad_request(0, format!("WebSocket upgrade failed: {e}")))?;
    tokio::spawn(async move {
        let ws = match upgrade.await {
            Ok(ws) => ws,
            Err(e) => return tracing::debug!(error = %e, "upgrade did not complete"),
        };
        app.metrics.connections_open.fetch_add(1, Relaxed);
        let metrics = app.metrics.clone();
        let (read, write) = ws.split(|io| {
            let (r, w) = tokio::io::split(io);
            let counted = CountedWrites { inner: w, metrics: metrics.clone() };
            (r, GatheringWriter::new(Box::new(counted) as Box<dyn AsyncWrite + Send + Unpin>))
        });
        let mut writer: Writer = write;
        writer.set_writev(false); // frames are gathered in the writer: one syscall per batch
        let (tx, inbound) = mpsc::channel(INBOUND_QUEUE);
        let reader = tokio::spawn(read_loop(read, tx, app.config.gateway.max_frame_bytes)).abort_handle();
        let zlib = zlib_stream.then(crate::compress::ZlibStream::new);
        let mut conn = Conn { writer, zlib, inbound, reader, app: app.clone() };
        if let Some((code, reason)) = refusal {
            let _ = conn.writer.write_frame(Frame::close(code, reason.as_bytes())).await;
            let _ = conn.writer.flush().await;
            return;
        }
        run_session(app, conn).await;
        drop(hold);
    });
    Ok(response.map(|_| Full::new(Bytes::new())))
}

/// A socket's write half that counts its write calls and bytes (`guildhall_gateway_socket_*`):
/// how many frames share a syscall is what fan-out throughput comes from.
struct CountedWrites<W> {
    inner: W,
    metrics: Arc<guildhall_runtime::Metrics>,
}

impl<W: AsyncWrite + Unpin> AsyncWrite for CountedWrites<W> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.count(&result);
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.count(&result);
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<W> CountedWrites<W> {
    fn count(&self, result: &Poll<std::io::Result<usize>>) {
        self.metrics.socket_writes.fetch_add(1, Relaxed);
        if let Poll::Ready(Ok(n)) = result {
            self.metrics.socket_write_bytes.fetch_add(*n as u64, Relaxed);
        }
    }
}

/// Reads client frames until the connection ends, reassembling fragmented messages and
/// enforcing `max_bytes` on the whole message (not just on each fragment).
async fn read_loop<S: AsyncRead + Unpin>(mut read: WebSocketRead<S>, tx: mpsc::Sender<Inbound>, max_bytes: usize) {
    read.set_auto_close(false);
    read.set_auto_pong(false);
    // fastwebsockets refuses frames with length >= its limit.
    read.set_max_message_size(max_bytes + 1);
    let mut partial: Option<(OpCode, Vec<u8>)> = None;
    let mut no_obligations = |_: Frame<'_>| std::future::ready(Ok::<(), Infallible>(()));
    loop {
        let event = match read.read_frame(&mut no_obligations).await {
            Err(WebSocketError::FrameTooLarge) => Inbound::TooLarge,
            Err(
                WebSocketError::InvalidUTF8
                | WebSocketError::InvalidFragment
                | WebSocketError::InvalidContinuationFrame,
            ) => Inbound::Invalid,
            Err(
                WebSocketError::ReservedBitsNotZero
                | WebSocketError::ControlFrameFragmented
                | WebSocketError::PingFrameTooLarge,
            ) => Inbound::Invalid,
            Err(_) => Inbound::Closed { code: None },
            Ok(frame) => match frame.opcode {
                // With encoding=json a binary frame may carry the JSON too, as on Discord
                // (some libraries send every frame as binary); text frames are UTF-8 already.
                OpCode::Text if frame.fin && partial.is_none() => Inbound::Text(Bytes::copy_from_slice(&frame.payload)),
                OpCode::Binary if frame.fin && partial.is_none() => match std::str::from_utf8(&frame.payload) {
                    Ok(_) => Inbound::Text(Bytes::copy_from_slice(&frame.payload)),
                    Err(_) => Inbound::Binary,
                },
                OpCode::Text | OpCode::Binary if partial.is_none() => {
                    partial = Some((frame.opcode, frame.payload.to_vec()));
                    continue;
                }
                OpCode::Continuation if partial.is_some() => {
                    let (opcode, mut buf) = partial.take().expect("checked");
                    if buf.len() + frame.payload.len() > max_bytes {
                        Inbound::TooLarge
                    } else {
                        buf.extend_from_slice(&frame.payload);
                        if !frame.fin {
                            partial = Some((opcode, buf));
                            continue;
                        }
                        match (opcode, std::str::from_utf8(&buf).is_ok()) {
                            (_, true) => Inbound::Text(Bytes::from(buf)),
                            (OpCode::Text, false) => Inbound::Invalid,
                            _ => Inbound::Binary,
                        }
                    }
                }
                OpCode::Text | OpCode::Binary | OpCode::Continuation => Inbound::Invalid,
                OpCode::Close => {
                    let code =
                        (frame.payload.len() >= 2).then(|| u16::from_be_bytes([frame.payload[0], frame.payload[1]]));
                    Inbound::Closed { code }
                }
                OpCode::Ping => Inbound::Ping(Bytes::copy_from_slice(&frame.payload)),
                OpCode::Pong => continue,
            },
        };
        let last = !matches!(event, Inbound::Text(_) | Inbound::Ping(_));
        if tx.send(event).await.is_err() || last {
            return;
        }
    }
}
