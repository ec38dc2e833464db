//! Which request gets which response: basic auth first (with a web configuration), then the
//! endpoint by method and path, then the headers every response carries; and the small
//! responses themselves.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::body::Incoming;

use crate::handle::Handle;
use crate::server::exposition::{self, Chunks};
use crate::server::web::auth::{self, Verdict};
use crate::server::web::live::Web;
use crate::server::web::WebConfig;
use crate::server::{browser, pages, probe};

/// The `caller` of these lines, as it was before they moved here from `server.rs`: log
/// filters and searches that operators wrote keep matching.
const CALLER: &str = "tickr::server";

/// Every response's body: whole, or the exposition as it is encoded.
pub(super) type Body = Either<Full<Bytes>, Chunks>;

/// The response to `req`: refused or served, with tickr's and the web configuration's headers.
pub(super) async fn respond(
    handle: &Handle,
    web: Option<&Web>,
    config: Option<&WebConfig>,
    req: Request<Incoming>,
    peer: SocketAddr,
    write_timeout: Duration,
) -> Response<Body> {
    let mut response = match (web, config) {
        (Some(web), Some(config)) => match web.authorize(config, req.headers(), peer.ip()).await {
            Verdict::Allowed => route(handle, req, write_timeout).await,
            Verdict::Refused => {
                // Never the credentials: a mistyped password is still a password.
                tracing::debug!(target: CALLER, %peer, path = req.uri().path(), "basic auth failed");
                unauthorized()
            }
            Verdict::Busy => {
                tracing::debug!(
                    target: CALLER,
                    %peer,
                    path = req.uri().path(),
                    "basic auth not checked: 429, this client or all at once \
                     have too many checks waiting"
                );
                too_many_checks()
            }
        },
        _ => route(handle, req, write_timeout).await,
    };
    browser::secure(response.headers_mut());
    // `insert`: a configured header replaces tickr's default of the same name.
    if let Some(config) = config {
        for (name, value) in config.headers() {
            response.headers_mut().insert(name, value.clone());
        }
    }
    response
}

async fn route(handle: &Handle, req: Request<Incoming>, write_timeout: Duration) -> Response<Body> {
    match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/metrics") => {
            exposition::metrics(handle, &req, write_timeout).map(Either::Right)
        }
        (&Method::GET | &Method::HEAD, "/") => html(pages::landing(handle)),
        (&Method::GET | &Method::HEAD, "/events") => events(handle, &req),
        (&Method::GET | &Method::HEAD, "/probe") => probe::probe(handle, &req).await,
        (&Method::GET | &Method::HEAD, "/-/healthy") => text(StatusCode::OK, "Healthy\n"),
        (&Method::GET | &Method::HEAD, "/-/ready") => {
            if handle.is_ready() {
                text(StatusCode::OK, "Ready\n")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "Not ready\n")
            }
        }
        (&Method::POST | &Method::PUT, "/-/reload") => reload(handle, &req).await,
        (_, "/metrics" | "/" | "/events" | "/probe" | "/-/healthy" | "/-/ready" | "/-/reload") => {
            text(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed\n")
        }
        _ => text(StatusCode::NOT_FOUND, "Not found\n"),
    }
}

/// Reloads, unless a web page sent the request: see [`browser::sent_by_web_page`].
async fn reload(handle: &Handle, req: &Request<Incoming>) -> Response<Body> {
    if let Some(page) = browser::sent_by_web_page(req.headers()) {
        tracing::info!(target: CALLER, sent_by = %page, "reload refused: a web page sent it");
        return text(
            StatusCode::FORBIDDEN,
            "Reload refused: a web page sent this request (it carries Origin or Sec-Fetch-Site); \
             reload with curl -X POST or SIGHUP\n",
        );
    }
    match handle.reload().await {
        Ok(()) => text(StatusCode::OK, "Configuration reloaded\n"),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("Configuration rejected, previous one kept: {e}\n"),
        ),
    }
}

fn unauthorized() -> Response<Body> {
    let mut r = text(StatusCode::UNAUTHORIZED, "Unauthorized\n");
    r.headers_mut().insert(
        WWW_AUTHENTICATE,
        r#"Basic realm="tickr", charset="UTF-8""#.parse().expect("static"),
    );
    r
}

/// 429 for a request whose credentials were not checked (see [`web::auth`]).
fn too_many_checks() -> Response<Body> {
    let mut r = text(
        StatusCode::TOO_MANY_REQUESTS,
        "Too many logins at once; try again in a moment\n",
    );
    r.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(auth::RETRY_AFTER.as_secs()));
    r
}

pub(super) fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Either::Left(Full::new(body.into())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        "text/plain; charset=utf-8".parse().expect("static"),
    );
    r
}

fn html(body: String) -> Response<Body> {
    let mut r = Response::new(Either::Left(Full::new(Bytes::from(body))));
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
    let query = pages::EventsQuery::parse(req.uri().query(), accept.contains("application/json"));
    if !query.json {
        return html(pages::events_html(handle, &query));
    }
    let body = browser::json(&pages::events_json(handle, &query));
    let mut r = Response::new(Either::Left(Full::new(Bytes::from(body))));
    r.headers_mut()
        .insert(CONTENT_TYPE, "application/json".parse().expect("static"));
    r
}
