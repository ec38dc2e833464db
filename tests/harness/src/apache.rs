//! A real Apache httpd (one process, foreground, from the Debian package) as a reverse proxy
//! with mod_proxy and mod_proxy_http, one virtual host per [`Route`], every file in its temp dir.

use std::fmt::Write as _;
use std::time::Duration;

use crate::process::require;
use crate::reverse::{check_routes, make_writable_for_all, Fronts, Route};

/// A real Apache httpd proxying each [`Route`]'s front to its upstream.
pub struct Apache(Fronts);

impl std::ops::Deref for Apache {
    type Target = Fronts;

    fn deref(&self) -> &Fronts {
        &self.0
    }
}

/// How [`Apache::start_with`] configures httpd beyond its routes.
#[derive(Debug, Clone, Copy)]
pub struct ApacheOptions {
    /// `connectiontimeout` (connect, in milliseconds) and `timeout` (each read and write, in
    /// whole seconds: rounded up) of every `ProxyPass`.
    pub timeout: Duration,
    /// `ServerSignature On` (Debian's `security.conf` ships it On; httpd's compiled-in default,
    /// which a config without the line gets, is Off).
    pub signature: bool,
}

impl Apache {
    /// Apache with `ServerSignature Off` and `timeout` for connecting and for each read.
    pub async fn start(routes: &[Route], timeout: Duration) -> Self {
        Self::start_with(
            routes,
            ApacheOptions {
                timeout,
                signature: false,
            },
        )
        .await
    }

    /// Writes `httpd.conf`, starts `apache2 -X` and waits until every front accepts.
    ///
    /// - `-X`: one process in the foreground, the child we hold; SIGKILL on drop leaves nothing.
    ///   Run as root it switches to `User www-data` after opening its logs, hence the temp dir
    ///   open to all (as any other user, the `User` line is ignored).
    /// - `-d` is the temp dir; pid file, runtime dir (mutexes), error and access logs are there.
    /// - `timeout=` of `ProxyPass` takes whole seconds (`timeout=500ms` is read as 500 s), while
    ///   `connectiontimeout=` takes a unit.
    /// - `retry=0` on each `ProxyPass`: every request tries its upstream again (the default puts a
    ///   refused worker in an error state for 60 s, answering 503 without trying).
    /// - The access log: `status=%>s rid=%{X-Request-Id}i tp=%{traceparent}i "%r"`.
    pub async fn start_with(routes: &[Route], options: ApacheOptions) -> Self {
        check_routes("apache", routes);
        let binary = require("apache2");
        let dir = tempfile::tempdir().expect("temp dir");
        make_writable_for_all(dir.path());
        let d = dir.path().display();
        let m = "/usr/lib/apache2/modules";
        let connect = options.timeout.as_millis().max(1);
        let read = options.timeout.as_millis().div_ceil(1000).max(1);
        let signature = if options.signature { "On" } else { "Off" };
        let mut conf = format!(
            "ServerRoot {d}\nPidFile {d}/apache2.pid\nDefaultRuntimeDir {d}\nMutex file:{d} default\n\
             ServerName 127.0.0.1\nUser www-data\nGroup www-data\nServerSignature {signature}\nErrorLog {d}/error.log\nLogLevel info\n\
             LoadModule mpm_event_module {m}/mod_mpm_event.so\n\
             LoadModule authz_core_module {m}/mod_authz_core.so\n\
             LoadModule proxy_module {m}/mod_proxy.so\n\
             LoadModule proxy_http_module {m}/mod_proxy_http.so\n\
             LogFormat \"status=%>s rid=%{{X-Request-Id}}i tp=%{{traceparent}}i \\\"%r\\\"\" tickr\n\
             CustomLog {d}/access.log tickr\n"
        );
        for r in routes {
            let _ = write!(
                conf,
                "Listen {l}\n<VirtualHost {l}>\n    ProxyPass / http://{u}/ connectiontimeout={connect}ms timeout={read} retry=0\n    \
                 ProxyPassReverse / http://{u}/\n</VirtualHost>\n",
                l = r.listen,
                u = r.upstream
            );
        }
        let path = dir.path().join("httpd.conf");
        std::fs::write(&path, conf).expect("write httpd.conf");
        let args = [
            "-X".to_owned(),
            "-d".to_owned(),
            d.to_string(),
            "-f".to_owned(),
            path.display().to_string(),
        ];
        Self(Fronts::spawn("apache", &binary, &args, dir, routes).await)
    }
}
