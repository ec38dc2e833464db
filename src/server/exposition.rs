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
use crate::metrics::text::TextSink;

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
    let out = Chunked::new(tx, gzip, write_timeout, complete.clone());
    tokio::task::spawn_blocking(move || {
        // An error means the client went away or stopped reading; nothing is left to tell.
        let streamed = if openmetrics {
            metrics.stream(out)
        } else {
            metrics.stream(TextSink::new(out)).map(TextSink::into_inner)
        };
        if let Ok(out) = streamed {
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

/// The exposition as it is written, in chunks to the response, gzipped when asked.
struct Chunked {
    text: String,
    gzip: Option<flate2::write::GzEncoder<Vec<u8>>>,
    tx: mpsc::Sender<Bytes>,
    /// The runtime the response is served on, to wait for room in `tx` with a timeout.
    runtime: tokio::runtime::Handle,
    write_timeout: Duration,
    complete: Arc<AtomicBool>,
}

impl Chunked {
    /// Must be made on the runtime (it keeps a handle to it).
    fn new(
        tx: mpsc::Sender<Bytes>,
        gzip: bool,
        write_timeout: Duration,
        complete: Arc<AtomicBool>,
    ) -> Self {
        Self {
            text: String::with_capacity(CHUNK + 16 * 1024),
            gzip: gzip.then(|| {
                flate2::write::GzEncoder::new(
                    Vec::with_capacity(CHUNK / 4),
                    flate2::Compression::fast(),
                )
            }),
            tx,
            runtime: tokio::runtime::Handle::current(),
            write_timeout,
            complete,
        }
    }

    /// Sends what is encoded so far; `Err` once the client has gone or read nothing for the
    /// write timeout.
    fn flush(&mut self) -> std::fmt::Result {
        let chunk = match &mut self.gzip {
            Some(gz) => {
                gz.write_all(self.text.as_bytes())
                    .expect("writing to a Vec cannot fail");
                self.text.clear();
                Bytes::from(std::mem::take(gz.get_mut()))
            }
            None => Bytes::from(std::mem::replace(
                &mut self.text,
                String::with_capacity(CHUNK + 16 * 1024),
            )),
        };
        self.send(chunk)
    }

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

    fn finish(mut self) {
        if self.flush().is_err() {
            return;
        }
        if let Some(gz) = self.gzip.take() {
            let tail = gz.finish().expect("writing to a Vec cannot fail");
            if self.send(Bytes::from(tail)).is_err() {
                return;
            }
        }
        // Before `tx` is dropped, which ends the body.
        self.complete.store(true, Ordering::Release);
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
