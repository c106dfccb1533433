//! A connection's write buffer that exists only while it holds something: frames written
//! between two flushes are gathered into one write (one syscall per batch, as a `BufWriter`
//! does), and the flush that empties it gives its memory back. An idle session holds no
//! write buffer; thousands of idle sessions would otherwise keep 16 KiB each for nothing.

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::AsyncWrite;

/// Most bytes gathered before they are written through (a batch of large dispatches is
/// written in pieces of about this size).
pub const MAX_GATHERED: usize = 64 * 1024;

pub struct GatheringWriter<W> {
    inner: W,
    buf: Vec<u8>,
    /// How much of `buf` the inner writer took already.
    written: usize,
}

impl<W: AsyncWrite + Unpin> GatheringWriter<W> {
    pub fn new(inner: W) -> Self {
        GatheringWriter { inner, buf: Vec::new(), written: 0 }
    }

    /// Bytes of memory the buffer holds (0 when idle).
    #[cfg(test)]
    fn held(&self) -> usize {
        self.buf.capacity()
    }

    /// Writes what is gathered to the inner writer, then lets the buffer's memory go.
    fn poll_write_gathered(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while self.written < self.buf.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.buf[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.buf = Vec::new();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for GatheringWriter<W> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        if this.buf.len() + data.len() > MAX_GATHERED {
            ready!(this.poll_write_gathered(cx))?;
        }
        if data.len() >= MAX_GATHERED {
            return Pin::new(&mut this.inner).poll_write(cx, data);
        }
        this.buf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        ready!(self.poll_write_gathered(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        ready!(self.poll_write_gathered(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn frames_are_gathered_into_one_write_and_the_buffer_goes_when_flushed() {
        let (client, mut server) = tokio::io::duplex(1 << 20);
        let mut writer = GatheringWriter::new(client);
        assert_eq!(writer.held(), 0, "nothing before the first write");
        for i in 0..100u32 {
            writer.write_all(format!("frame {i};").as_bytes()).await.unwrap();
        }
        assert!(writer.held() > 0, "gathered, not written");
        writer.flush().await.unwrap();
        assert_eq!(writer.held(), 0, "an idle connection holds no buffer");
        let big = vec![b'x'; 3 * MAX_GATHERED];
        writer.write_all(b"before;").await.unwrap();
        writer.write_all(&big).await.unwrap();
        writer.write_all(b";after").await.unwrap();
        writer.flush().await.unwrap();
        drop(writer);
        let mut received = Vec::new();
        server.read_to_end(&mut received).await.unwrap();
        let expected: String = (0..100).map(|i| format!("frame {i};")).collect();
        let expected = [expected.as_bytes(), b"before;", &big, b";after"].concat();
        assert_eq!(received.len(), expected.len());
        assert!(received == expected, "every byte, in order");
    }
}
