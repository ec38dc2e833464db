//! The write timeout: a connection whose writes may stall only so long.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

/// The `caller` of its line, as it was before it moved here from `server.rs`: log filters and
/// searches that operators wrote keep matching.
const CALLER: &str = "tickr::server";

/// A connection whose writes may stall for at most `timeout`: a client that stops reading
/// gets an error on its connection, which hyper then closes. Reads are not bounded here
/// (request heads have their own timeout, and tickr reads no request bodies).
pub(super) struct WriteDeadline<I> {
    inner: I,
    timeout: Duration,
    peer: SocketAddr,
    /// Armed when a write first returned `Pending`; cleared by any progress.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<I> WriteDeadline<I> {
    pub(super) fn new(inner: I, timeout: Duration, peer: SocketAddr) -> Self {
        Self {
            inner,
            timeout,
            peer,
            stalled: None,
        }
    }

    /// After the inner write returned `poll`: progress disarms the deadline, a stall arms it.
    fn watch<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if poll.is_ready() {
            self.stalled = None;
            return poll;
        }
        let timeout = self.timeout;
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        ready!(stalled.as_mut().poll(cx));
        tracing::warn!(target: CALLER, peer = %self.peer, timeout = ?timeout, "client read nothing within the write timeout; connection closed");
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "write timeout",
        )))
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for WriteDeadline<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.watch(cx, poll)
    }
}
