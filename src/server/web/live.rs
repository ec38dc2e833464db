//! The web configuration in use: re-read when its files change, so renewed certificates and
//! changed users apply to new connections; and the basic-auth check with its cache.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use http::header::HeaderMap;

use crate::server::web::auth::{Authenticator, Verdict};
use crate::server::web::{load, WebConfig};

/// The `caller` of these lines, as it was before they moved here from `webconfig.rs`: log
/// filters and searches that operators wrote keep matching.
const CALLER: &str = "tickr::webconfig";

/// Modification time and size of a file, or `None` when it cannot be read.
type Stamp = Option<(SystemTime, u64)>;

fn stamps(files: &[PathBuf]) -> Vec<Stamp> {
    files
        .iter()
        .map(|f| {
            let meta = std::fs::metadata(f).ok()?;
            Some((meta.modified().ok()?, meta.len()))
        })
        .collect()
}

/// A web configuration in use: re-read when the file or a file it names changes (so renewed
/// certificates apply to new connections), and the basic-auth check with its cache.
pub struct Web {
    live: Mutex<Live>,
    auth: Authenticator,
}

struct Live {
    config: Arc<WebConfig>,
    seen: Vec<Stamp>,
}

impl fmt::Debug for Web {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_struct("Web").finish_non_exhaustive()
    }
}

impl Web {
    pub fn new(config: WebConfig) -> Self {
        let seen = stamps(&config.files);
        Self {
            live: Mutex::new(Live {
                config: Arc::new(config),
                seen,
            }),
            auth: Authenticator::new(),
        }
    }

    /// The configuration for a new connection. When a watched file changed since the last call,
    /// the file is read again; a configuration that fails validation is logged and the previous
    /// one stays in use, so a half-written certificate never takes the exporter down.
    ///
    /// The files are checked (and read, parsed and turned into a TLS configuration when they
    /// changed) on a blocking thread, like the main configuration on reload: never on the
    /// thread that runs probes.
    pub async fn current(self: &Arc<Self>) -> Arc<WebConfig> {
        let web = Arc::clone(self);
        match tokio::task::spawn_blocking(move || web.refresh()).await {
            Ok(config) => config,
            Err(_) => self.lock().config.clone(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Live> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn refresh(&self) -> Arc<WebConfig> {
        let mut live = self.lock();
        let now = stamps(&live.config.files);
        if now == live.seen {
            return live.config.clone();
        }
        // Remember what was seen even when it fails, so a broken file is reported once.
        live.seen = now;
        let path = live.config.path.clone();
        match load(&path) {
            Ok(config) if config.tls.is_some() != live.config.tls.is_some() => {
                tracing::error!(
                    target: CALLER,
                    file = %path.display(),
                    "web configuration rejected: TLS cannot be turned on or off while tickr runs; \
                     restart it"
                );
            }
            Ok(config) => {
                tracing::info!(target: CALLER, file = %path.display(), settings = %config.summary(), "web configuration reloaded");
                if config.files != live.config.files {
                    live.seen = stamps(&config.files);
                }
                live.config = Arc::new(config);
            }
            Err(e) => {
                tracing::error!(target: CALLER, error = %e, "web configuration rejected; the previous one stays in use");
            }
        }
        live.config.clone()
    }

    /// Whether a request from `peer` with `headers` may be served under `config`: always when
    /// it needs no credentials, else after the basic-auth check (see [`super::auth`]).
    pub async fn authorize(
        &self,
        config: &WebConfig,
        headers: &HeaderMap,
        peer: IpAddr,
    ) -> Verdict {
        self.auth.authorize(config, headers, peer).await
    }
}
