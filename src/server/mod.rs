//! The HTTP side: `/metrics`, `/probe`, the landing page, health and readiness, and
//! `POST /-/reload`, over plain HTTP or, with a web configuration, TLS and basic auth on every
//! endpoint.
//!
//! [`serve`] takes an already bound listener and any future as its shutdown trigger; on shutdown
//! it stops accepting and gives open connections a bounded grace period.
//!
//! This file owns the accept loop, the TLS handshake and the hyper connection; beside it:
//! [`slots`] (the connection limit, shared out by client), `routes.rs` (which request gets which
//! response), `exposition.rs` (`/metrics`, streamed), `probe.rs` (`/probe`, one target for
//! blackbox-style scrape jobs), `deadline.rs` (the write timeout), [`pages`] (the HTML and JSON a
//! person reads), [`browser`] (what browsers are told and refused) and [`web`]
//! (`--web.config.file`: TLS, client certificates, basic auth, headers).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::Request;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::handle::Handle;
use crate::limits::{DRAIN_GRACE, HANDSHAKE_TIMEOUT, MAX_CONNECTIONS, WRITE_TIMEOUT};
use deadline::WriteDeadline;
use slots::Slots;
use web::live::Web;
use web::WebConfig;

pub mod browser;
mod deadline;
mod exposition;
pub mod pages;
mod probe;
mod routes;
pub mod slots;
pub mod web;

/// What one client may hold of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once, so that descriptors stay for the probes. At the limit a
    /// newcomer takes the oldest connection of the client holding most (see [`slots`]).
    pub max_connections: usize,
    /// A client that reads nothing for this long while tickr has something to send (a
    /// scraper that stopped reading, a wedged proxy) is cut off, and the scrape it asked for
    /// stops costing anything.
    pub write_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: MAX_CONNECTIONS,
            write_timeout: WRITE_TIMEOUT,
        }
    }
}

/// A bound TCP listener, the web configuration (TLS, basic auth, headers) to serve it with,
/// and the limits each client is held to.
#[derive(Debug)]
pub struct Listener {
    tcp: TcpListener,
    web: Option<Arc<Web>>,
    limits: Limits,
}

impl Listener {
    /// Serves `tcp` as `web` says, or as plain HTTP without one, with the default limits.
    pub fn new(tcp: TcpListener, web: Option<WebConfig>) -> Self {
        Self {
            tcp,
            web: web.map(|w| Arc::new(Web::new(w))),
            limits: Limits::default(),
        }
    }

    /// The same, held to `limits`.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }
}

impl From<TcpListener> for Listener {
    fn from(tcp: TcpListener) -> Self {
        Self::new(tcp, None)
    }
}

/// Serves until `shutdown` completes, then drains connections for at most [`DRAIN_GRACE`].
pub async fn serve(listener: Listener, handle: Handle, shutdown: impl Future<Output = ()>) {
    let graceful = GracefulShutdown::new();
    // Tells connections still in their TLS handshake to give up: they are not watched yet.
    let (stopping, stopped) = watch::channel(false);
    let limits = listener.limits;
    let slots = Slots::new(limits.max_connections);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.tcp.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Typically EMFILE: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                // Without it, a response's last small write waits for the client's delayed ACK
                // on a kept-alive connection: about 40 ms added to a scrape (seen in the bench).
                let _ = stream.set_nodelay(true);
                let Some(slot) = slots.admit(peer.ip()) else {
                    tracing::debug!(%peer, "connection closed: the limit is reached and this client holds the most");
                    continue;
                };
                let connection = Connection {
                    handle: handle.clone(),
                    web: listener.web.clone(),
                    peer,
                    write_timeout: limits.write_timeout,
                };
                let stream = WriteDeadline::new(stream, limits.write_timeout, peer);
                let watcher = graceful.watcher();
                let stopped = stopped.clone();
                tokio::spawn(async move {
                    let mut slot = slot;
                    tokio::select! {
                        () = connection.serve(stream, watcher, stopped) => {}
                        _ = &mut slot.evicted => tracing::debug!(%peer, "connection closed to make room for another client"),
                    }
                    // The place is given back only now that the connection is closed.
                    drop(slot);
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    let _ = stopping.send(true);
    if tokio::time::timeout(DRAIN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(grace = ?DRAIN_GRACE, "gave up waiting for HTTP connections to close");
    }
}

/// One accepted connection, before and after its TLS handshake.
struct Connection {
    handle: Handle,
    web: Option<Arc<Web>>,
    peer: SocketAddr,
    write_timeout: Duration,
}

impl Connection {
    async fn serve(
        self,
        stream: WriteDeadline<TcpStream>,
        watcher: Watcher,
        mut stopped: watch::Receiver<bool>,
    ) {
        // Read per connection: a renewed certificate or changed user list applies from here on.
        let config = match &self.web {
            Some(web) => Some(web.current().await),
            None => None,
        };
        let Some(tls) = config.as_ref().and_then(|c| c.tls()) else {
            return self.http(TokioIo::new(stream), config, watcher).await;
        };
        let handshake =
            tokio::time::timeout(HANDSHAKE_TIMEOUT, TlsAcceptor::from(tls).accept(stream));
        tokio::select! {
            done = handshake => match done {
                Ok(Ok(stream)) => self.http(TokioIo::new(stream), config, watcher).await,
                // Scanners, plain HTTP on the TLS port, unknown client certificates: routine,
                // and nothing an operator can act on, so debug.
                Ok(Err(e)) => tracing::debug!(peer = %self.peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(peer = %self.peer, timeout = ?HANDSHAKE_TIMEOUT, "TLS handshake timed out"),
            },
            () = async { let _ = stopped.wait_for(|s| *s).await; } => {}
        }
    }

    async fn http<I>(self, io: TokioIo<I>, config: Option<Arc<WebConfig>>, watcher: Watcher)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let Connection {
            handle,
            web,
            peer,
            write_timeout,
        } = self;
        let service = service_fn(move |req: Request<Incoming>| {
            let handle = handle.clone();
            let web = web.clone();
            let config = config.clone();
            async move {
                Ok::<_, std::convert::Infallible>(
                    routes::respond(
                        &handle,
                        web.as_deref(),
                        config.as_deref(),
                        req,
                        peer,
                        write_timeout,
                    )
                    .await,
                )
            }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(Duration::from_secs(10))
            .serve_connection(io, service);
        let _ = watcher.watch(conn).await;
    }
}
