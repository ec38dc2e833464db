//! Process signals: SIGTERM/SIGINT shut down, SIGHUP reloads. The only module that knows them.
//!
//! Handlers are installed when these functions are called, not when their futures are first
//! polled: until then a signal would take its default action, and SIGHUP's is to terminate.

use std::future::Future;

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::oneshot;

use crate::handle::Handle;
use crate::limits::{DRAIN_GRACE, SHUTDOWN_MARGIN};

fn install(kind: SignalKind) -> Signal {
    signal(kind).expect("installing a signal handler")
}

/// Completes on the first SIGTERM or SIGINT. From then on a second one exits the process at
/// once (status 1), and so does shutdown still running [`DRAIN_GRACE`] + [`SHUTDOWN_MARGIN`]
/// after the first.
///
/// Both are watched from a thread with a runtime of its own, not from a task of the exporter's
/// runtime: once the exporter returns, that runtime's tasks are gone, and dropping it waits for
/// its blocking threads. A DNS lookup stuck in `getaddrinfo` (a black-holed resolver) holds one
/// for as long as the resolver's timeouts, which a timed-out probe does not shorten; a task
/// watching for the second signal would not be there when it is needed most.
pub fn shutdown() -> impl Future<Output = ()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("building the signal thread's runtime");
    let (mut term, mut int) = {
        // Installed now, in that runtime, so that no signal falls between two listeners.
        let _in = runtime.enter();
        (
            install(SignalKind::terminate()),
            install(SignalKind::interrupt()),
        )
    };
    let (first, first_seen) = oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("tickr-signals".into())
        .spawn(move || {
            runtime.block_on(async move {
                term_or_int(&mut term, &mut int).await;
                let _ = first.send(());
                let limit = DRAIN_GRACE + SHUTDOWN_MARGIN;
                tokio::select! {
                    () = term_or_int(&mut term, &mut int) => {
                        tracing::warn!("second signal: exiting without waiting");
                    }
                    () = tokio::time::sleep(limit) => tracing::warn!(
                        limit = ?limit,
                        "shutdown did not finish in time: exiting without waiting"
                    ),
                }
                std::process::exit(1);
            })
        })
        .expect("starting the signal thread");
    async move {
        let _ = first_seen.await;
    }
}

/// Whichever of SIGTERM and SIGINT comes first.
async fn term_or_int(term: &mut Signal, int: &mut Signal) {
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
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
