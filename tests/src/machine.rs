//! This machine: free loopback ports, where the binaries and the checkout are, waiting for a port
//! or a `/readyz`, the local tools, and noting every child process's pid for `make test`.

use std::path::PathBuf;
use std::process::Child;
use std::time::Duration;

use anyhow::bail;

/// A loopback port for a process the stack will start. Not one the OS picks (`:0`): those are
/// ephemeral ports, which outbound connections (to Postgres, to the broker) also take as their
/// source ports, so by the time the process binds it one may hold it ("Address already in use").
/// So: a random port below the ephemeral range (32768 and up on Linux), free when checked, and never
/// handed out twice by this test process.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let mut given = GIVEN.lock().expect("port registry");
    for _ in 0..1_000 {
        let port = rand::random_range(20_000..29_000);
        if !given.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.insert(port);
            return port;
        }
    }
    panic!("no free port in 20000-29000 after 1000 tries");
}

pub fn bin_dir(release: bool) -> PathBuf {
    if let Ok(dir) = std::env::var("KEEL_BIN_DIR") {
        return PathBuf::from(dir);
    }
    // A test runs from target/<profile>/deps/, a binary such as keel-bench from target/<profile>/.
    let exe = std::env::current_exe().expect("current exe");
    let mut dir = exe.parent().expect("exe dir");
    if dir.ends_with("deps") {
        dir = dir.parent().expect("profile dir");
    }
    let target = dir.parent().expect("target dir");
    target.join(if release { "release" } else { "debug" })
}

/// The checkout this runs from. Cargo sets `CARGO_MANIFEST_DIR` when it runs a test, so a test
/// binary reused from a build in another checkout (the target dir is shared between clones) still
/// reads this checkout's files; the build-time value is for binaries started without cargo.
pub fn repo_root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .parent()
        .expect("repo root")
        .to_path_buf()
}

pub(crate) async fn wait_until_port(port: u16, timeout: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        if tokio::time::Instant::now() > deadline {
            bail!("nothing listens on 127.0.0.1:{port} after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Waits until `/readyz` on 127.0.0.1:`port` answers 200 (bounded per request: whatever holds the
/// port may accept and never answer).
pub(crate) async fn wait_ready_at(
    port: u16,
    timeout: Duration,
    what: &str,
    dir: &std::path::Path,
) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let url = format!("http://127.0.0.1:{port}/readyz");
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Ok(response) = client.get(&url).send().await {
            if response.status().is_success() {
                return Ok(());
            }
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "{what} not ready after {timeout:?}; see {}",
                dir.join("logs").display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The local tools (Postgres, nisshi), as `make test` exports them.
pub(crate) fn tools() -> keel_localstack::Tools {
    keel_localstack::Tools::from_env()
}

/// Notes a child process's pid in `KEEL_TEST_PIDS` (a folder `make test` makes), so that whatever a
/// killed test run leaves running can be stopped by pid.
pub fn register_child(child: &Child) {
    register_pid(child.id());
}

/// [`register_child`] for a process started in the background by keel-localstack.
pub fn register_pid(pid: u32) {
    if let Ok(dir) = std::env::var("KEEL_TEST_PIDS") {
        let _ = std::fs::write(
            PathBuf::from(dir).join(pid.to_string()),
            std::process::id().to_string(),
        );
    }
}
