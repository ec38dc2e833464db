//! The `tickr` binary: parse flags, set up logging, hand over to the library.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tickr::cli::{self, Cli, Command};
use tickr::{config, demo, fds, logging, migrate, server, signals, Exporter};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // One worker: a current-thread runtime, with no work stealing to pay for.
    let mut builder = match cli.worker_threads {
        1 => tokio::runtime::Builder::new_current_thread(),
        n => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n.into());
            b
        }
    };
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(run(cli));
    // Lookups abandoned in a resolver that never answers still occupy blocking threads (see
    // `tickr::dns`); waiting for them would hold the exit hostage to libc's timeouts.
    runtime.shutdown_timeout(Duration::from_millis(200));
    code
}

async fn run(cli: Cli) -> ExitCode {
    if let Some(Command::Migrate(args)) = &cli.command {
        return match migrate::migrate(&args.blackbox_config, args.prometheus_config.as_deref()) {
            Ok(done) => {
                print!("{}", done.config);
                for line in &done.report {
                    eprintln!("{line}");
                }
                ExitCode::from(done.code)
            }
            Err(e) => {
                eprintln!("tickr migrate: {e}");
                ExitCode::from(2)
            }
        };
    }
    if let Some(Command::Demo(args)) = &cli.command {
        logging::init(cli.log_format, cli.log_level);
        return match demo::run(args).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("tickr demo: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let flags = match cli.fleet() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let config = match config::load_with(&cli.config_file, &flags) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let web = match cli
        .web_config_file
        .as_deref()
        .map(server::web::load)
        .transpose()
    {
        Ok(w) => w,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    if cli.config_check {
        let n = config.targets.len();
        println!(
            "{}: OK, {n} target{}",
            cli.config_file.display(),
            if n == 1 { "" } else { "s" }
        );
        let shard = config.flags.shard;
        if shard.count() > 1 {
            let owned = config
                .targets
                .iter()
                .filter(|t| shard.owns(&t.name))
                .count();
            println!("{shard}: owns {owned} of the {n} listed");
        }
        if let Some(web) = &web {
            println!("{}: OK, {}", web.path().display(), web.summary());
        }
        return ExitCode::SUCCESS;
    }
    logging::init(cli.log_format, cli.log_level);
    fds::report(
        fds::raise_limit(),
        config.max_concurrent_probes + cli.max_connections as usize,
    );
    let address = cli::listen_address(&cli.listen_address);
    let listener = match tokio::net::TcpListener::bind(&address).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on {address}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let location = config.location.clone();
    let exporter = Exporter::start(config).await;
    signals::reload_on_sighup(exporter.handle());
    let shutdown = signals::shutdown();
    let bound = listener.local_addr().map_or(address, |a| a.to_string());
    let web_summary = web.as_ref().map(|w| w.summary());
    tracing::info!(address = %bound, version = env!("CARGO_PKG_VERSION"), web = web_summary, location = location.as_deref(), "listening");
    exporter
        .run(
            server::Listener::new(listener, web).with_limits(server::Limits {
                max_connections: cli.max_connections as usize,
                write_timeout: cli.write_timeout,
            }),
            shutdown,
        )
        .await;
    ExitCode::SUCCESS
}
