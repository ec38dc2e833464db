//! The read budget: how much one connection may read in all, in cooperative slices, and the
//! bounded read of a body.

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::BytesMut;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::classify::classify_hyper;
use super::{Failure, Reason};

/// How much one connection may read. What a probe keeps is bounded by `max_body_bytes`, but
/// hyper and h2 also read and discard on their own, without limit: an endless run of 1xx
/// interim responses (HTTP/1.1), or of frames without a body (HTTP/2). Such a server kept a
/// worker thread parsing for the probe's whole timeout, and two at once held up every other
/// probe's timers for seconds (found by `tests/it/hostile.rs`). Twice `max_body_bytes` plus
/// 1 MiB leaves room for any head, the TLS handshake and framing (even padded) around a body that
/// fits.
#[derive(Debug)]
pub(super) struct ReadBudget {
    limit: u64,
    exceeded: Arc<AtomicBool>,
}

impl ReadBudget {
    pub(super) fn new(max_body_bytes: u64) -> Self {
        Self {
            limit: max_body_bytes.saturating_mul(2).saturating_add(1 << 20),
            exceeded: Arc::default(),
        }
    }

    pub(super) fn wrap<S>(&self, inner: S) -> Metered<S> {
        Metered {
            inner,
            left: self.limit,
            exceeded: self.exceeded.clone(),
        }
    }

    /// Whatever error a layer above made of a spent budget, it is `too_large`.
    pub(super) fn explain(&self, failure: Failure) -> Failure {
        if !self.exceeded.load(Ordering::Relaxed) {
            return failure;
        }
        Failure::new(
            Reason::TooLarge,
            format!(
                "the server sent more than {} bytes without completing a response",
                self.limit
            ),
        )
    }
}

/// Most a [`Metered`] stream reads at once. hyper asks for up to ~400 KB per read and parses all
/// of it in one go; in small reads, each charged to the task's cooperative budget, a flood is
/// parsed in slices and the worker thread gets back to other probes' timers in between.
const READ_SLICE: usize = 4 << 10;

/// A stream that reads in slices, cooperatively, and fails reads once its [`ReadBudget`] is
/// spent.
pub(super) struct Metered<S> {
    inner: S,
    left: u64,
    exceeded: Arc<AtomicBool>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Metered<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.left == 0 {
            self.exceeded.store(true, Ordering::Relaxed);
            return Poll::Ready(Err(io::Error::other("read budget spent")));
        }
        let coop = ready!(tokio::task::coop::poll_proceed(cx));
        let mut slice = [MaybeUninit::uninit(); READ_SLICE];
        let room = buf.remaining().min(READ_SLICE);
        let mut slice = ReadBuf::uninit(&mut slice[..room]);
        ready!(Pin::new(&mut self.inner).poll_read(cx, &mut slice))?;
        coop.made_progress();
        buf.put_slice(slice.filled());
        let read = slice.filled().len() as u64;
        self.left = self.left.saturating_sub(read);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Metered<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Reads at most `limit` bytes of the body into `buf`; the flag says whether there was more. On
/// an error, `buf` holds what arrived before it.
pub(super) async fn read_body(
    mut body: Incoming,
    limit: u64,
    buf: &mut BytesMut,
) -> Result<bool, Failure> {
    // Sized up front when the server announces a length, within reason: growing by doubling
    // copies the body several times, and a 64 KiB page would end up in a 128 KiB buffer.
    let announced = hyper::body::Body::size_hint(&body)
        .exact()
        .unwrap_or(0)
        .min(limit);
    buf.reserve(usize::try_from(announced.min(1 << 20)).unwrap_or(0));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(classify_hyper)?;
        if let Ok(data) = frame.into_data() {
            let room = usize::try_from(limit)
                .unwrap_or(usize::MAX)
                .saturating_sub(buf.len());
            if data.len() > room {
                buf.extend_from_slice(&data[..room]);
                return Ok(true);
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(false)
}
