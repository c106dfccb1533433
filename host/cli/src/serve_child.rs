//! A `guildhall serve` child process for the benchmarks that drive a real server over
//! sockets: started on an ephemeral port with a temporary embedded store, killed and
//! cleaned up when dropped, however the scenario ends.

use std::net::SocketAddr;
use std::path::PathBuf;

/// A fresh temporary directory name for a benchmark's data (named after `tag`).
pub fn temp_dir(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "guildhall-bench-{tag}-{}-{}",
        std::process::id(),
        guildhall_server::auth::random_hex(4)
    ))
}

pub struct ServeChild {
    child: std::process::Child,
    dir: PathBuf,
    pub addr: SocketAddr,
}

impl ServeChild {
    /// Starts this binary's `serve` on 127.0.0.1:0 with a fresh temporary data directory
    /// (named after `tag`) and `env` (GUILDHALL_* configuration).
    pub async fn start(tag: &str, env: &[(&str, &str)]) -> Result<ServeChild, String> {
        ServeChild::start_in(temp_dir(tag), env).await
    }

    /// The same on a data directory made beforehand (a seeded store); it is removed when
    /// the child is dropped.
    pub async fn start_in(dir: PathBuf, env: &[(&str, &str)]) -> Result<ServeChild, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut child = std::process::Command::new(exe)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&dir)
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting the server: {e}"))?;
        let stdout = child.stdout.take().expect("piped");
        let mut guard = ServeChild { child, dir, addr: SocketAddr::from(([127, 0, 0, 1], 0)) };
        guard.addr = tokio::task::spawn_blocking(move || {
            use std::io::BufRead;
            let mut lines = std::io::BufReader::new(stdout).lines();
            let line = lines.next().and_then(|l| l.ok()).unwrap_or_default();
            std::thread::spawn(move || for _ in lines {});
            line.strip_prefix("guildhall listening on ").and_then(|a| a.parse().ok())
        })
        .await
        .map_err(|e| e.to_string())?
        .ok_or("the server did not report its address")?;
        Ok(guard)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU time the server process has used so far (user + system), from /proc (Linux).
    pub fn cpu_seconds(&self) -> Option<f64> {
        crate::stats::cpu_seconds(self.child.id())
    }
}

impl Drop for ServeChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
