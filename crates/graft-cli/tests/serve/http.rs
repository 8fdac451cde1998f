//! A `graft serve` process on a free port and a small blocking HTTP client for talking to it.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// `graft serve` on a free port; killed when dropped.
pub struct Server {
    child: Child,
    pub base: String,
}

impl Server {
    pub fn start(run: &Path, cache: &Path, extra: &[&str]) -> Server {
        let run = run.to_str().expect("utf-8 path");
        let args: Vec<&str> = ["--run", run].iter().chain(extra).copied().collect();
        Server::spawn(cache, Path::new("."), &args, &[])
    }

    /// `graft serve ARGS --port 0` (unless ARGS name a port) in `cwd` with `env` added.
    pub fn spawn(cache: &Path, cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        let port: &[&str] = if args.contains(&"--port") {
            &[]
        } else {
            &["--port", "0"]
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_graft"))
            .arg("serve")
            .args(args)
            .args(port)
            .current_dir(cwd)
            .env("GRAFT_CACHE", cache)
            .env_remove("GRAFT_API_KEYS")
            .env_remove("MLFLOW_TRACKING_URI")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn graft serve");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let base = loop {
            let line = lines
                .next()
                .expect("graft serve exited before listening")
                .expect("read");
            if let Some(rest) = line.trim().strip_prefix("web page  ") {
                break rest.trim_end_matches('/').to_string();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Server { child, base }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// SIGKILL, as a crash or the OOM killer would.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, and the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                return s;
            }
            assert!(Instant::now() < deadline, "no exit 10 s after SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// Status, headers we look at, and the body parsed as JSON (Null if it is not JSON).
pub struct Reply {
    pub status: u16,
    pub retry_after: Option<String>,
    pub text: String,
    pub json: Value,
}

pub fn reply(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Reply {
    let r = r.expect("request");
    let status = r.status().as_u16();
    let retry_after = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let text = r.into_body().read_to_string().unwrap_or_default();
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply {
        status,
        retry_after,
        text,
        json,
    }
}

pub fn post(a: &ureq::Agent, url: &str, ctype: Option<&str>, body: &[u8]) -> Reply {
    let mut req = a.post(url);
    if let Some(c) = ctype {
        req = req.header("Content-Type", c);
    }
    reply(req.send(body))
}

pub fn get(a: &ureq::Agent, url: &str) -> Reply {
    reply(a.get(url).call())
}

/// A multipart/form-data body with one part per `(field, filename, bytes)`.
pub fn multipart(parts: &[(&str, &str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "graft-test-boundary-7d1f";
    let mut body = Vec::new();
    for (field, file, bytes) in parts {
        body.extend(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{file}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend(b"\r\n");
    }
    body.extend(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

pub fn assert_error(r: &Reply, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", r.text);
    assert_eq!(r.json["code"], code, "{}", r.text);
    assert!(
        r.json["error"].as_str().is_some_and(|m| m.len() > 10),
        "error message: {}",
        r.text
    );
}
