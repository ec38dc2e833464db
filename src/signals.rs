//! Process signals: SIGTERM/SIGINT shut down, SIGHUP reloads. The only module that knows them.
//!
//! Handlers are installed when these functions are called, not when their futures are first
//! polled: until then a signal would take its default action, and SIGHUP's is to terminate.

use std::future::Future;

use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::Handle;

fn install(kind: SignalKind) -> Signal {
    signal(kind).expect("installing a signal handler")
}

/// Completes on the first SIGTERM or SIGINT; a second one then exits the process at once.
pub fn shutdown() -> impl Future<Output = ()> {
    let (mut term, mut int) = (
        install(SignalKind::terminate()),
        install(SignalKind::interrupt()),
    );
    async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            tracing::warn!("second signal: exiting without waiting");
            std::process::exit(1);
        });
    }
}

/// Reloads the configuration on every SIGHUP, for as long as the exporter runs.
pub fn reload_on_sighup(handle: Handle) {
    let mut hup = install(SignalKind::hangup());
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            // The outcome is logged by the exporter; nothing else to do with it here.
            let _ = handle.reload().await;
        }
    });
}
