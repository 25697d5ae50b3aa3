//! The real binary, started as a user would, with its output captured.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::helpers::*;

pub struct Proc {
    pub child: Child,
    pub out: Arc<Mutex<String>>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

impl Proc {
    /// Sends the process a signal, as `kill -<name>` would.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name}");
    }

    /// Waits (up to 10 s) for the process to end on its own; its status.
    pub async fn exited(&mut self) -> std::process::ExitStatus {
        eventually(Duration::from_secs(10), || {
            let st = self.child.try_wait().unwrap();
            async move { st }
        })
        .await
    }
}

pub fn spawn_binary(env: &[(&str, &str)]) -> Proc {
    spawn_binary_args(&[], env)
}

pub fn spawn_binary_args(args: &[&str], env: &[(&str, &str)]) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fraudgate"));
    cmd.arg("serve")
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("FRAUDGATE_SERVER__LISTEN", "127.0.0.1:0")
        .env("FRAUDGATE_LOG__FORMAT", "json")
        .current_dir(std::env::temp_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("binary starts");
    let out = Arc::new(Mutex::new(String::new()));
    for stream in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let out = out.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let mut o = out.lock().unwrap();
                o.push_str(&line);
                o.push('\n');
            }
        });
    }
    Proc { child, out }
}

/// `/metrics` of a binary listening on `port`.
pub async fn metrics_on(port: u16) -> String {
    crate::helpers::http()
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

pub async fn listening_port(p: &Proc) -> u16 {
    eventually(Duration::from_secs(10), || async {
        let out = p.out.lock().unwrap().clone();
        out.lines()
            .filter(|l| l.contains("fraudgate listening"))
            .find_map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).ok()?;
                v["addr"].as_str()?.rsplit(':').next()?.parse().ok()
            })
    })
    .await
}
