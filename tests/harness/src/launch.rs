//! The one way tests start a program of their own (above all the tickr binary): write its config
//! into a temp dir, spawn it (through `sh -c` when a `ulimit` must come first), wait until it
//! listens, and kill it on drop (the [`Process`] it returns does that).

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tempfile::TempDir;

use crate::process::{Process, READY_LIMIT};

/// A program about to start, built step by step; [`spawn`](Self::spawn) or
/// [`start`](Self::start) runs it.
pub struct Launch {
    name: String,
    program: PathBuf,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    shell_prefix: Option<String>,
    dir: TempDir,
}

/// A started program and the address it logged that it listens on.
pub struct Listening {
    pub process: Process,
    pub addr: SocketAddr,
}

impl Launch {
    /// `program` (named `name` in failure messages) in a fresh temp dir, without arguments yet.
    pub fn new(name: &str, program: impl AsRef<Path>) -> Self {
        Self {
            name: name.to_owned(),
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            env: Vec::new(),
            shell_prefix: None,
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// The tickr binary at `program` (the caller's `env!("CARGO_BIN_EXE_tickr")`: only the
    /// tickr package's own tests and benches are told where it is) on `yaml`, written as
    /// `config.yml` in the temp dir, listening on a port the OS picks.
    pub fn tickr(program: impl AsRef<Path>, yaml: &str) -> Self {
        let launch = Self::new("tickr", program).file("config.yml", yaml);
        let config = launch.dir().join("config.yml");
        launch
            .arg("--config.file")
            .arg(config)
            .args(["--web.listen-address", "127.0.0.1:0"])
    }

    /// Writes `contents` as `name` in the temp dir.
    pub fn file(self, name: &str, contents: &str) -> Self {
        let path = self.dir().join(name);
        std::fs::write(&path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        self
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<S: Into<OsString>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Runs `prefix` (e.g. `ulimit -n 60 &&`) in `sh` first, which then `exec`s the program, so
    /// the process is still the program itself (its pid, its `/proc`).
    pub fn shell_prefix(mut self, prefix: &str) -> Self {
        self.shell_prefix = Some(prefix.to_owned());
        self
    }

    /// The temp dir the program will run in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts the program, without waiting for anything.
    pub fn spawn(self) -> Process {
        let Some(prefix) = &self.shell_prefix else {
            return Process::spawn_with_env(
                &self.name,
                &self.program,
                &self.args,
                &self.env,
                self.dir,
            );
        };
        let mut command = format!("{prefix} exec {}", quoted(self.program.as_os_str()));
        for arg in &self.args {
            command.push(' ');
            command.push_str(&quoted(arg));
        }
        let args = ["-c".to_owned(), command];
        Process::spawn_with_env(&self.name, "/bin/sh".as_ref(), &args, &self.env, self.dir)
    }

    /// Starts the program and waits until it logs that it listens (see
    /// [`Process::wait_listening`]).
    pub async fn start(self) -> Listening {
        self.start_within(READY_LIMIT).await
    }

    /// [`start`](Self::start), waiting at most `limit`.
    pub async fn start_within(self, limit: Duration) -> Listening {
        let mut process = self.spawn();
        let addr = process.wait_listening(limit).await;
        Listening { process, addr }
    }
}

/// `arg` in single quotes for `sh`.
fn quoted(arg: &std::ffi::OsStr) -> String {
    format!("'{}'", arg.to_string_lossy().replace('\'', r"'\''"))
}

impl Listening {
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    pub fn dir(&self) -> &Path {
        self.process.dir()
    }
}
