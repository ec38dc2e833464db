//! `/probe?target=T&module=M`, for Prometheus set-ups built around blackbox_exporter (its scrape
//! jobs with `__param_target`, prometheus-operator's `Probe`): the `tickr_*` series of target T
//! and the blackbox `probe_*` gauges of its last probe. Prometheus decides which targets exist;
//! tickr keeps its own schedule and counts every probe. T must be a running target, or a URL
//! that module M lets `/probe` adopt: anything else is a 404, and never a connection to T.

use std::sync::Arc;
use std::time::Duration;

use http::header::CONTENT_TYPE;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::time::Instant;
use url::Url;

use crate::config::Target;
use crate::handle::Handle;
use crate::limits::{PROBE_ANSWER_MARGIN, PROBE_DEFAULT_WAIT};
use crate::metrics::{probe as exposition, TargetMetrics};
use crate::server::exposition::{content_type, wants_openmetrics};
use crate::server::routes::{text, Body};

/// How often a request waiting for an adopted target's first probe looks again.
const POLL: Duration = Duration::from_millis(5);

/// The answer to `/probe`.
pub(super) async fn probe(handle: &Handle, req: &Request<Incoming>) -> Response<Body> {
    let (mut target, mut module) = (None, None);
    for (key, value) in url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes()) {
        match key.as_ref() {
            "target" if target.is_none() => target = Some(value.into_owned()),
            "module" if module.is_none() => module = Some(value.into_owned()),
            _ => {}
        }
    }
    let Some(asked) = target.filter(|t| !t.trim().is_empty()) else {
        return text(StatusCode::BAD_REQUEST, "Target parameter is missing\n");
    };
    let module = module.filter(|m| !m.is_empty());
    let deadline = Instant::now() + wait(req);
    let url = normalise(&asked);
    let (t, tm, adopted) = match find(handle, &asked, url.as_deref(), module.as_deref()) {
        Found::Running(t, tm) => (t, tm, false),
        Found::OtherModule(t) => {
            let has = t.module.as_deref().unwrap_or("none");
            let msg = format!(
                "Target {:?} runs with module {has:?}, not {:?}\n",
                t.name,
                module.unwrap_or_default()
            );
            return text(StatusCode::NOT_FOUND, msg);
        }
        Found::Nothing => {
            let (Some(module), Some(url)) = (module.as_deref(), url.as_deref()) else {
                return not_found(handle, &asked, url.as_deref());
            };
            match handle.adopt(module, url).await {
                Ok(name) => match wait_for_start(handle, &name, deadline).await {
                    Some((t, tm)) => (t, tm, true),
                    None => return not_found(handle, &asked, Some(url)),
                },
                Err(why) => {
                    tracing::debug!(target: "tickr::server", %why, "/probe: not adopted");
                    return not_found(handle, &asked, Some(url));
                }
            }
        }
    };
    handle.asked(&t.name);
    // A target adopted by this request answers after its first probe (which runs at once), as
    // blackbox_exporter answers after probing; never past the scraper's deadline. Any other
    // target answers at once, with what it has.
    while adopted && tm.last_probe().is_none() && Instant::now() + POLL < deadline {
        tokio::time::sleep(POLL).await;
    }
    let mut body = exposition::encode(&tm, !t.matchers.is_empty());
    let openmetrics = wants_openmetrics(req);
    if !openmetrics {
        body = crate::metrics::text::to_text(&body);
    }
    let mut r = Response::new(http_body_util::Either::Left(http_body_util::Full::new(
        bytes::Bytes::from(body),
    )));
    r.headers_mut().insert(
        CONTENT_TYPE,
        content_type(openmetrics).parse().expect("static"),
    );
    r
}

/// How long the answer may wait for a first probe: Prometheus' scrape timeout (its
/// `X-Prometheus-Scrape-Timeout-Seconds` header) less a margin for the answer, as
/// blackbox_exporter reads it.
fn wait(req: &Request<Incoming>) -> Duration {
    req.headers()
        .get("x-prometheus-scrape-timeout-seconds")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .map_or(PROBE_DEFAULT_WAIT, |s| {
            Duration::from_secs_f64(s.min(3600.0)).saturating_sub(PROBE_ANSWER_MARGIN)
        })
}

/// The URL `asked` stands for, normalised as a target's URL is: a bare `host[:port][/path]`
/// means `http://…`, as blackbox_exporter reads it.
fn normalise(asked: &str) -> Option<String> {
    let text = asked.trim();
    let with_scheme = if text.contains("://") {
        text.to_owned()
    } else {
        format!("http://{text}")
    };
    let url = Url::parse(&with_scheme).ok()?;
    matches!(url.scheme(), "http" | "https").then(|| url.to_string())
}

enum Found {
    Running(Arc<Target>, Arc<TargetMetrics>),
    /// Found, but with another module than the one asked for.
    OtherModule(Arc<Target>),
    Nothing,
}

/// The running target named `asked`, else the first (by name) whose URL is `url`; of `module`,
/// when one is asked for.
fn find(handle: &Handle, asked: &str, url: Option<&str>, module: Option<&str>) -> Found {
    let targets = handle.targets();
    let by_name = targets.iter().find(|(t, _)| t.name == asked);
    let candidates: Vec<&(Arc<Target>, Arc<TargetMetrics>)> = match by_name {
        Some(found) => vec![found],
        None => targets
            .iter()
            .filter(|(t, _)| Some(t.url.as_str()) == url)
            .collect(),
    };
    let Some(first) = candidates.first() else {
        return Found::Nothing;
    };
    let Some(module) = module else {
        return Found::Running(first.0.clone(), first.1.clone());
    };
    match candidates
        .iter()
        .find(|(t, _)| t.module.as_deref() == Some(module))
    {
        Some((t, tm)) => Found::Running(t.clone(), tm.clone()),
        None => Found::OtherModule(first.0.clone()),
    }
}

/// The adopted target `name` once the scheduler runs it (at once, normally).
async fn wait_for_start(
    handle: &Handle,
    name: &str,
    deadline: Instant,
) -> Option<(Arc<Target>, Arc<TargetMetrics>)> {
    loop {
        if let Some((t, tm)) = handle.targets().into_iter().find(|(t, _)| t.name == name) {
            return Some((t, tm));
        }
        if Instant::now() + POLL >= deadline {
            return None;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// 404 with one line: the target is not known, and nothing lets `/probe` add it. Secret-looking
/// query values of the URL are hidden, as everywhere.
fn not_found(handle: &Handle, asked: &str, url: Option<&str>) -> Response<Body> {
    let shown = crate::redact::url(url.unwrap_or(asked), &[]).into_owned();
    let shard = handle.placement().shard;
    let msg = if shard.count() > 1 {
        format!(
            "Unknown target {:?} on shard {} of {}: this shard runs only the targets it owns, and no module lets /probe adopt it here\n",
            crate::config::one_line(&shown),
            shard.index(),
            shard.count()
        )
    } else {
        format!(
            "Unknown target {:?}: not configured, not discovered, and no module lets /probe adopt it\n",
            crate::config::one_line(&shown)
        )
    };
    text(StatusCode::NOT_FOUND, msg)
}
