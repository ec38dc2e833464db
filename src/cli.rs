//! Command-line flags, named as Prometheus exporters name them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::logging::{Format, Level};

/// The port tickr listens on by default (see the README for why this one).
pub const DEFAULT_PORT: u16 = 10216;

#[derive(Debug, Parser)]
#[command(
    name = "tickr",
    version,
    about = "Scheduled HTTP(S) probes for Prometheus: every outcome counted, so intermittent 502s are never missed"
)]
pub struct Cli {
    /// Without a subcommand, tickr runs as the exporter configured by `--config.file`.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Configuration file.
    #[arg(
        long = "config.file",
        default_value = "config.yml",
        value_name = "PATH"
    )]
    pub config_file: PathBuf,

    /// Validate the configuration file, print a summary and exit.
    #[arg(long = "config.check")]
    pub config_check: bool,

    /// Address to serve metrics and the web pages on.
    #[arg(
        long = "web.listen-address",
        default_value = ":10216",
        value_name = "[HOST]:PORT"
    )]
    pub listen_address: String,

    /// Web configuration file, exporter-toolkit format: TLS, client certificates, basic auth.
    #[arg(long = "web.config.file", value_name = "PATH")]
    pub web_config_file: Option<PathBuf>,

    /// Connections served at once; beyond it a newcomer takes a place from the client holding most.
    #[arg(long = "web.max-connections", default_value_t = crate::limits::MAX_CONNECTIONS as u32,
          value_name = "N", value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub max_connections: u32,

    /// A client that reads nothing for this long while a response is being sent is cut off.
    #[arg(long = "web.write-timeout", default_value = "30s", value_parser = parse_write_timeout,
          value_name = "DURATION")]
    pub write_timeout: std::time::Duration,

    /// Threads that run probes and serve HTTP. One is the cheapest per probe and enough for a
    /// few thousand HTTPS probes a second; `/metrics` encodes on a thread of its own either way.
    #[arg(long = "runtime.worker-threads", default_value_t = 1, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=256))]
    pub worker_threads: u16,

    /// Where this tickr probes from: the `location` label of every per-target series (wins
    /// over `global.location`).
    #[arg(long = "probe.location", value_name = "NAME", value_parser = parse_location)]
    pub location: Option<String>,

    /// Split the targets among this many tickr processes (shards) that share one configuration.
    #[arg(long = "shard.count", default_value_t = 1, value_name = "N")]
    pub shard_count: u32,

    /// This process's shard, from 0 to `--shard.count` - 1.
    #[arg(
        long = "shard.index",
        value_name = "I",
        conflicts_with = "shard_index_from_hostname"
    )]
    pub shard_index: Option<u32>,

    /// Take the shard index from the host name's trailing ordinal, as a StatefulSet names its
    /// pods (`tickr-2` is shard 2).
    #[arg(long = "shard.index-from-hostname")]
    pub shard_index_from_hostname: bool,

    /// How many shards probe each target (rendezvous hashing of its name picks which).
    #[arg(long = "shard.replicas", default_value_t = 1, value_name = "R")]
    pub shard_replicas: u32,

    /// Only log messages at this level or above.
    #[arg(long = "log.level", value_enum, default_value_t = Level::Info, global = true)]
    pub log_level: Level,

    /// Log line format.
    #[arg(long = "log.format", value_enum, default_value_t = Format::Logfmt, global = true)]
    pub log_format: Format,
}

impl Cli {
    /// What the flags add to the configuration file: the location and this process's shard.
    /// An error names the flags that disagree.
    pub fn fleet(&self) -> Result<crate::config::Flags, String> {
        let index = match (self.shard_index, self.shard_index_from_hostname) {
            (Some(i), _) => i,
            (None, true) => crate::config::ordinal_of(&crate::config::host_name()?)?,
            (None, false) if self.shard_count > 1 => {
                return Err(format!(
                    "--shard.count {} needs --shard.index or --shard.index-from-hostname",
                    self.shard_count
                ))
            }
            (None, false) => 0,
        };
        let shard = crate::config::Shard::new(index, self.shard_count, self.shard_replicas)?;
        Ok(crate::config::Flags {
            location: self.location.clone(),
            shard,
        })
    }
}

fn parse_location(s: &str) -> Result<String, String> {
    crate::config::validate_location(s).map(|()| s.to_owned())
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Probe an embedded, misbehaving HTTPS gateway on 127.0.0.1 and serve what tickr sees.
    Demo(DemoArgs),
    /// Convert a blackbox_exporter set-up into a tickr configuration (written to standard
    /// output; what has no exact equivalent is listed on standard error).
    Migrate(MigrateArgs),
}

/// Flags of `tickr migrate`.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// blackbox_exporter's configuration file (its modules).
    #[arg(long = "blackbox.config", value_name = "FILE")]
    pub blackbox_config: std::path::PathBuf,

    /// Prometheus' configuration file: its jobs that call blackbox's /probe become targets or
    /// target sources.
    #[arg(long = "prometheus.config", value_name = "FILE")]
    pub prometheus_config: Option<std::path::PathBuf>,
}

/// Flags of `tickr demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Address to serve metrics and the web pages on (port 0: one the OS picks).
    #[arg(
        long = "web.listen-address",
        default_value = "127.0.0.1:10216",
        value_name = "[HOST]:PORT"
    )]
    pub listen_address: String,

    /// Time between two probes of each demo target.
    #[arg(long, default_value = "2s", value_parser = parse_duration, value_name = "DURATION")]
    pub interval: std::time::Duration,
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let d = crate::config::HumanDuration::parse(s)?.0;
    if d < crate::limits::MIN_INTERVAL {
        return Err(format!(
            "must be at least {:?}",
            crate::limits::MIN_INTERVAL
        ));
    }
    Ok(d)
}

fn parse_write_timeout(s: &str) -> Result<std::time::Duration, String> {
    let d = crate::config::HumanDuration::parse(s)?.0;
    if d < std::time::Duration::from_millis(100) {
        return Err("must be at least 100ms".into());
    }
    Ok(d)
}

/// `:9100` means every interface, as in Go; Rust wants an explicit host.
pub fn listen_address(flag: &str) -> String {
    match flag.strip_prefix(':') {
        Some(port) => format!("[::]:{port}"),
        None => flag.to_owned(),
    }
}
