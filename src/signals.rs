//! Process signals: SIGTERM/SIGINT shut down, SIGHUP reloads. The only module that knows them.

use crate::Handle;

/// Completes on the first SIGTERM or SIGINT. A second one exits the process at once.
pub async fn shutdown() {
    wait_for_stop().await;
    tokio::spawn(async {
        wait_for_stop().await;
        tracing::warn!("second signal: exiting without waiting");
        std::process::exit(1);
    });
}

async fn wait_for_stop() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing a SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// Reloads the configuration on every SIGHUP, for as long as the exporter runs.
pub fn reload_on_sighup(handle: Handle) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup()).expect("installing a SIGHUP handler");
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            // The outcome is logged by the exporter; nothing else to do with it here.
            let _ = handle.reload().await;
        }
    });
}
