//! A real h2o (from the Debian package) as a reverse proxy (`proxy.reverse.url`), one host with
//! its own listen address per [`Route`], every file it writes in its temp dir.

use std::fmt::Write as _;
use std::time::Duration;

use crate::process::require;
use crate::reverse::{check_routes, make_writable_for_all, Fronts, Route};

/// A real h2o proxying each [`Route`]'s front to its upstream.
pub struct H2o(Fronts);

impl std::ops::Deref for H2o {
    type Target = Fronts;

    fn deref(&self) -> &Fronts {
        &self.0
    }
}

impl H2o {
    /// Writes `h2o.conf`, starts `h2o -c` and waits until every front accepts.
    ///
    /// - h2o stays in the foreground without `-m daemon`: one process, the child we hold (its
    ///   crash-handler helper exits when h2o does). Run as root, it switches to `nobody`, hence
    ///   the temp dir open to all.
    /// - `proxy.timeout.io` is `timeout` (h2o 2.2 has no separate connect timeout: it is the
    ///   same I/O timeout).
    /// - The access log: `status=%s rid=%{X-Request-Id}i tp=%{traceparent}i "%r"`.
    pub async fn start(routes: &[Route], timeout: Duration) -> Self {
        check_routes("h2o", routes);
        let binary = require("h2o");
        let dir = tempfile::tempdir().expect("temp dir");
        make_writable_for_all(dir.path());
        let d = dir.path().display();
        let mut conf = format!(
            "pid-file: {d}/h2o.pid\nerror-log: {d}/error.log\nproxy.timeout.io: {}\n\
             access-log:\n  path: {d}/access.log\n  \
             format: \"status=%s rid=%{{X-Request-Id}}i tp=%{{traceparent}}i \\\"%r\\\"\"\nhosts:\n",
            timeout.as_millis().max(1)
        );
        for r in routes {
            let _ = write!(
                conf,
                "  \"{l}\":\n    listen:\n      host: {ip}\n      port: {port}\n    paths:\n      \"/\":\n        \
                 proxy.reverse.url: \"http://{u}/\"\n",
                l = r.listen,
                ip = r.listen.ip(),
                port = r.listen.port(),
                u = r.upstream
            );
        }
        let path = dir.path().join("h2o.conf");
        std::fs::write(&path, conf).expect("write h2o.conf");
        let args = ["-c".to_owned(), path.display().to_string()];
        Self(Fronts::spawn("h2o", &binary, &args, dir, routes).await)
    }
}
