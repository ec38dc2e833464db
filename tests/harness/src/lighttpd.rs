//! A real lighttpd (`lighttpd -D`, from the Debian package) as a reverse proxy with mod_proxy,
//! one listen socket per [`Route`], every file it writes in its temp dir.

use std::fmt::Write as _;
use std::time::Duration;

use crate::process::require;
use crate::reverse::{check_routes, Fronts, Route};

/// A real lighttpd proxying each [`Route`]'s front to its upstream.
pub struct Lighttpd(Fronts);

impl std::ops::Deref for Lighttpd {
    type Target = Fronts;

    fn deref(&self) -> &Fronts {
        &self.0
    }
}

impl Lighttpd {
    /// Writes `lighttpd.conf` (the first route is the main `server.bind`/`server.port`, each
    /// other one a `$SERVER["socket"]` block with its own `proxy.server`), starts `lighttpd -D`
    /// and waits until every front accepts.
    ///
    /// - `-D`: one process in the foreground, the child we hold; SIGKILL on drop.
    /// - `connect-timeout`, `read-timeout` and `write-timeout` take whole seconds: `timeout` is
    ///   rounded up (500 ms becomes 1 s).
    /// - After a failed connect, lighttpd marks the backend down for `disable-time` (1 s by
    ///   default) and answers 503 without trying it meanwhile.
    /// - The access log: `status=%s rid=%{X-Request-Id}i tp=%{traceparent}i "%r"`; lighttpd
    ///   buffers it and writes it out about once a second.
    pub async fn start(routes: &[Route], timeout: Duration) -> Self {
        check_routes("lighttpd", routes);
        let binary = require("lighttpd");
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path().display();
        let t = timeout.as_millis().div_ceil(1000).max(1);
        let proxy = |r: &Route| {
            format!(
                "proxy.server = (\"\" => ((\"host\" => \"{}\", \"port\" => {}, \"connect-timeout\" => {t}, \
                 \"read-timeout\" => {t}, \"write-timeout\" => {t})))",
                r.upstream.ip(),
                r.upstream.port()
            )
        };
        let main = routes[0];
        let mut conf = format!(
            "server.document-root = \"{d}\"\nserver.bind = \"{}\"\nserver.port = {}\n\
             server.pid-file = \"{d}/lighttpd.pid\"\nserver.errorlog = \"{d}/error.log\"\n\
             server.modules = (\"mod_proxy\", \"mod_accesslog\")\n\
             accesslog.filename = \"{d}/access.log\"\n\
             accesslog.format = \"status=%s rid=%{{X-Request-Id}}i tp=%{{traceparent}}i \\\"%r\\\"\"\n{}\n",
            main.listen.ip(),
            main.listen.port(),
            proxy(&main)
        );
        for r in &routes[1..] {
            let _ = writeln!(
                conf,
                "$SERVER[\"socket\"] == \"{}\" {{\n    {}\n}}",
                r.listen,
                proxy(r)
            );
        }
        let path = dir.path().join("lighttpd.conf");
        std::fs::write(&path, conf).expect("write lighttpd.conf");
        let args = ["-D".to_owned(), "-f".to_owned(), path.display().to_string()];
        Self(Fronts::spawn("lighttpd", &binary, &args, dir, routes).await)
    }
}
