//! Server processes: spawning under a watchdog, readiness polling, stopping and killing.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use super::Error;

const POLL_INTERVAL: Duration = Duration::from_millis(200);
const LOG_TAIL_LINES: usize = 30;

/// Runs `"$@"` under a watchdog. A line on stdin or SIGTERM to the watchdog stops the server
/// gracefully (SIGTERM); end of file on stdin (our process closed the pipe or died) kills it
/// (SIGKILL), as a server may hang in graceful shutdown once etcd is gone. The watchdog exits
/// with the server's status once the server is gone.
const WATCHDOG: &str = r#"exec 3<&0 </dev/null
"$@" 3<&- & child=$!
{ if read -r _ <&3; then kill "$child"; else kill -KILL "$child"; fi; } 2>/dev/null & reader=$!
exec 3<&-
trap 'kill "$child" 2>/dev/null' TERM
wait "$child"; status=$?
while kill -0 "$child" 2>/dev/null; do wait "$child"; status=$?; done
kill "$reader" 2>/dev/null
exit "$status""#;

/// How to (re)start one server: the program, its flags and its log file.
#[derive(Debug, Clone)]
pub(super) struct ServerSpec {
    name: &'static str,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    log: PathBuf,
}

impl ServerSpec {
    /// Any program with `args` and extra environment, logging to `log`.
    pub(super) fn program(
        name: &'static str,
        program: PathBuf,
        args: Vec<String>,
        env: Vec<(String, String)>,
        log: PathBuf,
    ) -> Self {
        Self { name, program, args, env, log }
    }

    /// `bin_dir/name` with `args`, logging to `log_dir/name.log`.
    pub(super) fn new(
        bin_dir: &Path,
        name: &'static str,
        log_dir: &Path,
        args: Vec<String>,
    ) -> Result<Self, Error> {
        let program = bin_dir.join(name);
        if !program.is_file() {
            return Err(Error::MissingBinary { path: program });
        }
        let log = log_dir.join(format!("{name}.log"));
        Ok(Self { name, program, args, env: Vec::new(), log })
    }
}

/// One server under its watchdog: a line on `stdin` stops it, closing `stdin` kills it.
/// Dropping it kills the server.
#[derive(Debug)]
pub(super) struct Server {
    name: &'static str,
    watchdog: Child,
    stdin: Option<ChildStdin>,
    log: PathBuf,
}

impl Server {
    /// Starts the watchdog, which starts the server; output is appended to the log file.
    pub(super) fn spawn(spec: &ServerSpec) -> Result<Self, Error> {
        let write_err = |source| Error::WriteFile { path: spec.log.clone(), source };
        let log = OpenOptions::new().create(true).append(true).open(&spec.log);
        let log = log.map_err(write_err)?;
        let log_err = log.try_clone().map_err(write_err)?;
        let mut watchdog = Command::new("bash")
            .args(["-c", WATCHDOG, "watchdog"])
            .arg(&spec.program)
            .args(&spec.args)
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(log)
            .stderr(log_err)
            // Own process group, so `kill` reaches the watchdog, its reader and the server.
            .process_group(0)
            .spawn()
            .map_err(|source| Error::Spawn { name: spec.name, source })?;
        let stdin = watchdog.stdin.take();
        Ok(Self { name: spec.name, watchdog, stdin, log: spec.log.clone() })
    }

    /// Polls `probe` until it says ready, the server exits or `timeout` passes.
    pub(super) async fn wait_ready(
        &mut self,
        timeout: Duration,
        probe: impl AsyncFn() -> bool,
    ) -> Result<(), Error> {
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.watchdog.try_wait() {
                let log_tail = log_tail(&self.log, LOG_TAIL_LINES);
                return Err(Error::Exited { name: self.name, status, log_tail });
            }
            if probe().await {
                let elapsed_ms = started.elapsed().as_millis();
                tracing::info!(server = self.name, elapsed_ms, "control-plane server ready");
                return Ok(());
            }
            if started.elapsed() >= timeout {
                let log_tail = log_tail(&self.log, LOG_TAIL_LINES);
                return Err(Error::NotReady { name: self.name, timeout, log_tail });
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// The exit status, if the server has exited.
    pub(super) fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.watchdog.try_wait().ok().flatten()
    }

    /// Asks the watchdog for a graceful stop and waits up to `grace` before killing.
    pub(super) async fn stop(&mut self, grace: Duration) -> Result<(), Error> {
        if let Some(mut stdin) = self.stdin.take() {
            // A failed write means the watchdog is gone already; the wait below tells.
            let _ = stdin.write_all(b"stop\n");
        }
        let deadline = Instant::now() + grace;
        loop {
            let exited = self.watchdog.try_wait();
            match exited.map_err(|source| Error::Stop { name: self.name, source })? {
                Some(_) => return Ok(()),
                None if Instant::now() >= deadline => {
                    self.kill();
                    return Ok(());
                }
                None => tokio::time::sleep(POLL_INTERVAL).await,
            }
        }
    }

    /// SIGKILLs the whole process group and reaps the watchdog; blocks only briefly.
    pub(super) fn kill(&mut self) {
        self.stdin = None;
        if matches!(self.watchdog.try_wait(), Ok(Some(_))) {
            return;
        }
        let group = format!("-{}", self.watchdog.id());
        let killed = Command::new("bash")
            .args(["-c", r#"kill -KILL -- "$1""#, "kill", &group])
            .stdin(Stdio::null())
            .status();
        if !matches!(killed, Ok(status) if status.success()) {
            // Closing stdin above already makes the watchdog kill the server.
            let _ = self.watchdog.kill();
        }
        let _ = self.watchdog.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether `url` answers with a 2xx status.
pub(super) async fn http_ok(client: &reqwest::Client, url: &str) -> bool {
    matches!(client.get(url).send().await, Ok(response) if response.status().is_success())
}

/// Whether etcd's `/health` at `url` reports `{"health":"true"}`.
pub(super) async fn etcd_healthy(client: &reqwest::Client, url: &str) -> bool {
    let Ok(response) = client.get(url).send().await else {
        return false;
    };
    let Ok(body) = response.json::<serde_json::Value>().await else {
        return false;
    };
    body.get("health").and_then(serde_json::Value::as_str) == Some("true")
}

/// The last `lines` lines of a log file, or a note why it could not be read.
fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(error) => format!("(cannot read {}: {error})", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: Duration = Duration::from_secs(10);

    fn sh(dir: &Path, script: &str) -> ServerSpec {
        let args = vec!["-c".to_owned(), script.to_owned()];
        ServerSpec::new(Path::new("/bin"), "sh", dir, args).expect("/bin/sh exists")
    }

    /// Waits for the watchdog to exit; the watchdog exits only after its server.
    async fn watchdog_exits(server: &mut Server) -> bool {
        let started = Instant::now();
        while started.elapsed() < WAIT {
            if matches!(server.watchdog.try_wait(), Ok(Some(_))) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    #[tokio::test]
    async fn early_exit_reports_status_and_log_tail() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut server = Server::spawn(&sh(dir.path(), "echo boom; exit 3")).expect("spawn");

        let error = server.wait_ready(WAIT, async || false).await.expect_err("exits");
        let Error::Exited { status, log_tail, .. } = error else { panic!("{error}") };
        assert_eq!(status.code(), Some(3));
        assert_eq!(log_tail, "boom");
    }

    #[tokio::test]
    async fn closing_stdin_kills_a_server_that_ignores_sigterm() {
        let dir = tempfile::tempdir().expect("temp dir");
        let spec = sh(dir.path(), "trap '' TERM; while :; do sleep 0.1; done");
        let mut server = Server::spawn(&spec).expect("spawn");

        // What happens when the test process dies: the pipe closes, nobody calls kill.
        server.stdin = None;
        assert!(watchdog_exits(&mut server).await, "server outlived the pipe");
    }

    #[tokio::test]
    async fn stop_is_graceful() {
        let dir = tempfile::tempdir().expect("temp dir");
        let script = "trap 'echo bye; exit 0' TERM; echo ready; while :; do sleep 0.1; done";
        let spec = sh(dir.path(), script);
        let mut server = Server::spawn(&spec).expect("spawn");
        let trap_set = async || log_tail(&spec.log, 1) == "ready";
        server.wait_ready(WAIT, trap_set).await.expect("ready");

        server.stop(WAIT).await.expect("stop");
        assert_eq!(log_tail(&server.log, 1), "bye");
    }

    #[test]
    fn log_tail_keeps_the_last_lines() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("x.log");
        std::fs::write(&path, "a\nb\nc\n").expect("write");
        assert_eq!(log_tail(&path, 2), "b\nc");
        assert_eq!(log_tail(&path, 10), "a\nb\nc");
    }
}
