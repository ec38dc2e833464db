//! The HTTP side: `/metrics`, the landing page, health and readiness, and `POST /-/reload`.
//!
//! [`serve`] takes an already bound listener and any future as its shutdown trigger; on shutdown
//! it stops accepting and gives open connections a bounded grace period.

use std::convert::Infallible;
use std::future::Future;
use std::io::Write as _;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_TYPE, VARY};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::Handle;

pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// How long open connections get to finish after shutdown starts.
pub const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// Serves until `shutdown` completes, then drains connections for at most [`DRAIN_GRACE`].
pub async fn serve(listener: TcpListener, handle: Handle, shutdown: impl Future<Output = ()>) {
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Typically EMFILE: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let handle = handle.clone();
                let service = service_fn(move |req| {
                    let handle = handle.clone();
                    async move { Ok::<_, Infallible>(route(&handle, req).await) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10))
                    .serve_connection(TokioIo::new(stream), service);
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(grace = ?DRAIN_GRACE, "gave up waiting for HTTP connections to close");
    }
}

type Body = Full<Bytes>;

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        "text/plain; charset=utf-8".parse().expect("static"),
    );
    r
}

async fn route(handle: &Handle, req: Request<Incoming>) -> Response<Body> {
    match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/metrics") => metrics(handle, &req),
        (&Method::GET | &Method::HEAD, "/") => html(crate::pages::landing(handle)),
        (&Method::GET | &Method::HEAD, "/events") => events(handle, &req),
        (&Method::GET | &Method::HEAD, "/-/healthy") => text(StatusCode::OK, "Healthy\n"),
        (&Method::GET | &Method::HEAD, "/-/ready") => {
            if handle.is_ready() {
                text(StatusCode::OK, "Ready\n")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "Not ready\n")
            }
        }
        (&Method::POST | &Method::PUT, "/-/reload") => match handle.reload().await {
            Ok(()) => text(StatusCode::OK, "Configuration reloaded\n"),
            Err(e) => text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("Configuration rejected, previous one kept: {e}\n"),
            ),
        },
        (_, "/metrics" | "/" | "/events" | "/-/healthy" | "/-/ready" | "/-/reload") => {
            text(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed\n")
        }
        _ => text(StatusCode::NOT_FOUND, "Not found\n"),
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

fn metrics(handle: &Handle, req: &Request<Incoming>) -> Response<Body> {
    let body = handle.metrics.encode();
    let mut r = if accepts_gzip(req) {
        let mut gz = flate2::write::GzEncoder::new(
            Vec::with_capacity(body.len() / 4),
            flate2::Compression::fast(),
        );
        gz.write_all(body.as_bytes())
            .expect("writing to a Vec cannot fail");
        let mut r = Response::new(Full::new(Bytes::from(
            gz.finish().expect("writing to a Vec cannot fail"),
        )));
        r.headers_mut()
            .insert(CONTENT_ENCODING, "gzip".parse().expect("static"));
        r
    } else {
        Response::new(Full::new(Bytes::from(body)))
    };
    r.headers_mut()
        .insert(CONTENT_TYPE, OPENMETRICS.parse().expect("static"));
    r.headers_mut()
        .insert(VARY, "Accept-Encoding".parse().expect("static"));
    r
}

fn html(body: String) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    r.headers_mut().insert(
        CONTENT_TYPE,
        "text/html; charset=utf-8".parse().expect("static"),
    );
    r
}

fn events(handle: &Handle, req: &Request<Incoming>) -> Response<Body> {
    let accept = req
        .headers()
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let query =
        crate::pages::EventsQuery::parse(req.uri().query(), accept.contains("application/json"));
    if !query.json {
        return html(crate::pages::events_html(handle, &query));
    }
    let body = serde_json::to_vec(&crate::pages::events_json(handle, &query))
        .expect("JSON values serialize");
    let mut r = Response::new(Full::new(Bytes::from(body)));
    r.headers_mut()
        .insert(CONTENT_TYPE, "application/json".parse().expect("static"));
    r
}
