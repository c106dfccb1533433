//! The HTTP client the CLI, the benchmarks and the end-to-end tests share: one keep-alive
//! HTTP/1.1 connection to a Guildhall host, requests under `/api/v10`, JSON in and out.
//! (hyper's own connection API; no pool: each user holds the connections it needs.)
//! `gateway` opens WebSockets to the gateway.

pub mod gateway;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
pub use hyper::{Method, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connecting to {0}: {1}")]
    Connect(String, std::io::Error),
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    #[error("bad request: {0}")]
    Request(#[from] hyper::http::Error),
    #[error("the body is not JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("WebSocket: {0}")]
    WebSocket(String),
}

/// An answer: the status, the headers and the body.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Answer {
    /// The body as JSON (`null` when empty).
    pub fn json(&self) -> Result<Value, ClientError> {
        if self.body.is_empty() {
            return Ok(Value::Null);
        }
        Ok(serde_json::from_slice(&self.body)?)
    }
}

/// One connection to a host (`HOST:PORT`), reused for every request made through it.
pub struct ApiClient {
    sender: SendRequest<Full<Bytes>>,
    authority: String,
}

impl ApiClient {
    pub async fn connect(authority: &str) -> Result<ApiClient, ClientError> {
        let stream = TcpStream::connect(authority).await.map_err(|e| ClientError::Connect(authority.to_owned(), e))?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        Ok(ApiClient { sender, authority: authority.to_owned() })
    }

    /// `METHOD /api/v10{path}` with `Authorization: token` if given and a body of `content_type`.
    pub async fn request(
        &mut self,
        method: Method,
        path: &str,
        token: Option<&str>,
        content_type: &str,
        body: Bytes,
    ) -> Result<Answer, ClientError> {
        self.request_at(method, &format!("/api/v10{path}"), token, content_type, body).await
    }

    /// The same at `uri` exactly as given (another API version, a path outside the API).
    pub async fn request_at(
        &mut self,
        method: Method,
        uri: &str,
        token: Option<&str>,
        content_type: &str,
        body: Bytes,
    ) -> Result<Answer, ClientError> {
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(uri)
            .header("host", &self.authority)
            .header("content-type", content_type);
        if let Some(t) = token {
            req = req.header("authorization", t);
        }
        let req = req.body(Full::new(body))?;
        self.sender.ready().await?;
        let resp = self.sender.send_request(req).await?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Answer { status: parts.status, headers: parts.headers, body })
    }

    /// `GET /metrics`: the host's Prometheus text.
    pub async fn metrics(&mut self) -> Result<String, ClientError> {
        self.get_text("/metrics").await
    }

    /// `GET path` exactly as given (no `/api/v10`), the body as text: for `/metrics` and
    /// other servers' monitoring endpoints.
    pub async fn get_text(&mut self, path: &str) -> Result<String, ClientError> {
        let req = hyper::Request::builder()
            .method(Method::GET)
            .uri(path)
            .header("host", &self.authority)
            .body(Full::new(Bytes::new()))?;
        self.sender.ready().await?;
        let resp = self.sender.send_request(req).await?;
        let body = resp.into_body().collect().await?.to_bytes();
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    /// A JSON request (no body when `body` is `None`) and its JSON answer.
    pub async fn json(
        &mut self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value), ClientError> {
        let bytes = match body {
            Some(b) => Bytes::from(serde_json::to_vec(b)?),
            None => Bytes::new(),
        };
        let answer = self.request(method, path, token, "application/json", bytes).await?;
        Ok((answer.status, answer.json()?))
    }
}
