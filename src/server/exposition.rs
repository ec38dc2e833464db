//! `/metrics`: the exposition encoded on a blocking thread and streamed to the client as it is
//! written, in OpenMetrics for clients that ask for it and the Prometheus text format 0.0.4 for
//! every other, gzipped when the client accepts it.

use std::io::Write as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_TYPE, VARY};
use http::{Request, Response};
use hyper::body::Incoming;
use tokio::sync::mpsc;

use crate::handle::Handle;
use crate::metrics::Format;

pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
pub const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether the client asks for OpenMetrics, as the official Go client decides: an `Accept`
/// entry for `application/openmetrics-text` with a quality above zero and at least that of its
/// `text/plain`. Prometheus asks for it first; curl, `*/*` or no `Accept` get the text format.
pub(super) fn wants_openmetrics<B>(req: &Request<B>) -> bool {
    let (mut openmetrics, mut text) = (0.0_f32, 0.0_f32);
    let values = req
        .headers()
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok());
    for entry in values.flat_map(|v| v.split(',')) {
        let mut fields = entry.split(';').map(str::trim);
        let kind = fields.next().unwrap_or_default().to_ascii_lowercase();
        let q = fields
            .filter_map(|f| f.strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        match kind.as_str() {
            "application/openmetrics-text" => openmetrics = openmetrics.max(q),
            "text/plain" => text = text.max(q),
            _ => {}
        }
    }
    openmetrics > 0.0 && openmetrics >= text
}

/// The content type of an exposition in the negotiated format.
pub(super) fn content_type(openmetrics: bool) -> &'static str {
    if openmetrics {
        OPENMETRICS
    } else {
        TEXT_FORMAT
    }
}

fn accepts_gzip(req: &Request<Incoming>) -> bool {
    req.headers()
        .get_all(ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',').any(|part| {
                let mut fields = part.split(';').map(str::trim);
                let coding = fields.next().unwrap_or_default();
                let refused = fields.any(|f| f.replace(' ', "") == "q=0");
                coding.eq_ignore_ascii_case("gzip") && !refused
            })
        })
}

/// `/metrics`, encoded on a blocking thread and streamed as it is written: a scrape of
/// thousands of targets takes a CPU for a while and would otherwise hold up a runtime worker
/// (and every probe queued on it), and its text need never be in memory whole.
///
/// The encoder waits for a slow client only between two targets' series, never while it holds
/// a lock that probes record under (see [`crate::metrics::Sink`]), and for at most
/// `write_timeout`. A body that ends before the encoder finished ends with an error, so that
/// the client sees a broken response, never a short exposition that looks complete.
pub(super) fn metrics(
    handle: &Handle,
    req: &Request<Incoming>,
    write_timeout: Duration,
) -> Response<Chunks> {
    let gzip = accepts_gzip(req);
    let openmetrics = wants_openmetrics(req);
    let (tx, rx) = mpsc::channel(4);
    let complete = Arc::new(AtomicBool::new(false));
    let metrics = handle.metrics.clone();
    let sender = Sender {
        tx,
        runtime: tokio::runtime::Handle::current(),
        write_timeout,
        complete: complete.clone(),
    };
    let out = if gzip {
        let (texts, compressor) = std::sync::mpsc::sync_channel(1);
        tokio::task::spawn_blocking(move || compress(&compressor, &sender));
        Chunked::new(Out::Gzip(texts))
    } else {
        Chunked::new(Out::Plain(sender))
    };
    tokio::task::spawn_blocking(move || {
        // An error means the client went away or stopped reading; nothing is left to tell.
        let format = if openmetrics {
            Format::OpenMetrics
        } else {
            Format::Text
        };
        if let Ok(out) = metrics.stream(out, format) {
            out.finish();
        }
    });
    let mut r = Response::new(Chunks { rx, complete });
    if gzip {
        r.headers_mut()
            .insert(CONTENT_ENCODING, "gzip".parse().expect("static"));
    }
    r.headers_mut().insert(
        CONTENT_TYPE,
        content_type(openmetrics).parse().expect("static"),
    );
    r.headers_mut()
        .insert(VARY, "Accept, Accept-Encoding".parse().expect("static"));
    r
}

/// How much text is encoded before it is compressed and sent on.
const CHUNK: usize = 128 << 10;

/// The exposition as it is written, in chunks to the response or to the compressor.
struct Chunked {
    text: String,
    out: Out,
}

/// Where [`Chunked`] sends its chunks of text.
enum Out {
    Plain(Sender),
    /// To [`compress`] on a thread of its own: compressing costs about as much as encoding,
    /// and on two threads a large scrape takes the longer of the two instead of their sum.
    /// `None` says the exposition is whole; a sender dropped without it, that it was cut off.
    Gzip(std::sync::mpsc::SyncSender<Option<String>>),
}

/// The response's end of the exposition, bounded by the write timeout.
struct Sender {
    tx: mpsc::Sender<Bytes>,
    /// The runtime the response is served on, to wait for room in `tx` with a timeout.
    runtime: tokio::runtime::Handle,
    write_timeout: Duration,
    complete: Arc<AtomicBool>,
}

impl Sender {
    /// `Err` once the client has gone or read nothing for the write timeout.
    fn send(&self, chunk: Bytes) -> std::fmt::Result {
        if chunk.is_empty() {
            return Ok(());
        }
        let sent = self.runtime.block_on(async {
            tokio::time::timeout(self.write_timeout, self.tx.send(chunk)).await
        });
        match sent {
            Ok(Ok(())) => Ok(()),
            _ => Err(std::fmt::Error),
        }
    }

    /// Marks the body whole; before `tx` is dropped, which ends it.
    fn complete(&self) {
        self.complete.store(true, Ordering::Release);
    }
}

/// Compresses each chunk of text as it comes and sends it on. Returns as soon as the client has
/// gone (dropping `texts`, which stops the encoder at its next chunk) or the text is cut off.
fn compress(texts: &std::sync::mpsc::Receiver<Option<String>>, to: &Sender) {
    let mut gz =
        flate2::write::GzEncoder::new(Vec::with_capacity(CHUNK / 4), flate2::Compression::fast());
    loop {
        match texts.recv() {
            Ok(Some(text)) => {
                gz.write_all(text.as_bytes())
                    .expect("writing to a Vec cannot fail");
                if to.send(Bytes::from(std::mem::take(gz.get_mut()))).is_err() {
                    return;
                }
            }
            Ok(None) => break,
            Err(_) => return,
        }
    }
    let tail = gz.finish().expect("writing to a Vec cannot fail");
    if to.send(Bytes::from(tail)).is_ok() {
        to.complete();
    }
}

impl Chunked {
    fn new(out: Out) -> Self {
        Self {
            text: Self::buffer(),
            out,
        }
    }

    fn buffer() -> String {
        String::with_capacity(CHUNK + 16 * 1024)
    }

    /// Sends what is encoded so far; `Err` once the client has gone or read nothing for the
    /// write timeout.
    fn flush(&mut self) -> std::fmt::Result {
        if self.text.is_empty() {
            return Ok(());
        }
        let text = std::mem::replace(&mut self.text, Self::buffer());
        match &self.out {
            Out::Plain(to) => to.send(Bytes::from(text)),
            Out::Gzip(texts) => texts.send(Some(text)).map_err(|_| std::fmt::Error),
        }
    }

    fn finish(mut self) {
        if self.flush().is_err() {
            return;
        }
        match &self.out {
            Out::Plain(to) => to.complete(),
            Out::Gzip(texts) => {
                let _ = texts.send(None);
            }
        }
    }
}

impl crate::metrics::Sink for Chunked {
    fn write(&mut self, text: &str) {
        self.text.push_str(text);
    }

    fn pause(&mut self) -> std::fmt::Result {
        if self.text.len() >= CHUNK {
            self.flush()?;
        }
        Ok(())
    }
}

/// A response body fed by [`Chunked`] from another thread.
pub(super) struct Chunks {
    rx: mpsc::Receiver<Bytes>,
    complete: Arc<AtomicBool>,
}

impl hyper::body::Body for Chunks {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
        Poll::Ready(match ready!(self.rx.poll_recv(cx)) {
            Some(chunk) => Some(Ok(hyper::body::Frame::data(chunk))),
            None if self.complete.load(Ordering::Acquire) => None,
            None => Some(Err(std::io::Error::other(
                "the exposition was not finished",
            ))),
        })
    }
}
