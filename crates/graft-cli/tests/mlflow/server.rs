//! A real MLflow tracking server (the `mlflow` command scripts/fetch-mlflow.sh installs, named
//! by GRAFT_TEST_MLFLOW) on a free port of 127.0.0.1, with a SQLite backend and a local
//! artifact root in a folder of the test's; killed with its workers when dropped.

use std::net::TcpListener;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub struct Mlflow {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
    pub uri: String,
    agent: ureq::Agent,
}

fn mlflow_command() -> PathBuf {
    match std::env::var_os("GRAFT_TEST_MLFLOW") {
        Some(p) => PathBuf::from(p),
        None => panic!(
            "GRAFT_TEST_MLFLOW is not set: run the tests with scripts/test.sh, which installs \
             MLflow (scripts/fetch-mlflow.sh)"
        ),
    }
}

impl Mlflow {
    /// A new server storing everything under `dir`.
    pub fn start(dir: &Path) -> Mlflow {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        let mut m = Mlflow {
            child: None,
            port,
            dir: dir.to_path_buf(),
            uri: format!("http://127.0.0.1:{port}"),
            agent,
        };
        m.restart();
        m
    }

    /// Start the server (again, on the same port and storage).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        std::fs::create_dir_all(&self.dir).expect("mlflow dir");
        let log =
            std::fs::File::create(self.dir.join(format!("server-{}.log", self.port))).expect("log");
        let child = Command::new(mlflow_command())
            .args(["server", "--host", "127.0.0.1", "--workers", "1", "--port"])
            .arg(self.port.to_string())
            .arg("--backend-store-uri")
            .arg(format!(
                "sqlite:///{}",
                self.dir.join("mlflow.db").display()
            ))
            .arg("--artifacts-destination")
            .arg(self.dir.join("artifacts"))
            .current_dir(&self.dir)
            // Its background job runner (a dozen huey workers) does nothing graft uses.
            .env("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            // Its own process group: killing the server kills its workers too.
            .process_group(0)
            .spawn()
            .expect("start mlflow server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let up = self
                .agent
                .get(format!("{}/health", self.uri))
                .call()
                .is_ok_and(|r| r.status() == 200);
            if up {
                return;
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    panic!(
                        "mlflow server exited ({status}); see {}",
                        self.dir.display()
                    );
                }
            }
            assert!(
                Instant::now() < deadline,
                "mlflow server not up after 180 s"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", c.id())])
                .status();
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGKILL the server and its workers, as a crash would.
    pub fn kill(&mut self) {
        self.stop();
        // Until the port refuses connections.
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            assert!(Instant::now() < deadline, "port still open after kill");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn answer(&self, r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Value {
        let mut r = r.expect("mlflow answers");
        let status = r.status().as_u16();
        let text = r.body_mut().read_to_string().expect("body");
        assert!(status < 400, "mlflow: {status} {text}");
        serde_json::from_str(&text).expect("json")
    }

    pub fn get(&self, endpoint: &str, query: &[(&str, &str)]) -> Value {
        let mut req = self
            .agent
            .get(format!("{}/api/2.0/mlflow/{endpoint}", self.uri));
        for (k, v) in query {
            req = req.query(*k, *v);
        }
        self.answer(req.call())
    }

    pub fn post(&self, endpoint: &str, body: Value) -> Value {
        let req = self
            .agent
            .post(format!("{}/api/2.0/mlflow/{endpoint}", self.uri))
            .content_type("application/json");
        self.answer(req.send(body.to_string()))
    }

    /// The runs of experiment `name` whose tag graft.run_id is `id` (none when the experiment
    /// does not exist yet).
    pub fn runs_of(&self, experiment: &str, id: &str) -> Vec<Value> {
        let r = self
            .agent
            .get(format!(
                "{}/api/2.0/mlflow/experiments/get-by-name",
                self.uri
            ))
            .query("experiment_name", experiment)
            .call();
        let Ok(mut r) = r else {
            return Vec::new();
        };
        if r.status() != 200 {
            return Vec::new();
        }
        let v: Value =
            serde_json::from_str(&r.body_mut().read_to_string().expect("body")).expect("json");
        let exp = v["experiment"]["experiment_id"]
            .as_str()
            .expect("id")
            .to_string();
        let found = self.post(
            "runs/search",
            json!({
                "experiment_ids": [exp],
                "filter": format!("tags.`graft.run_id` = '{id}'"),
                "max_results": 10,
            }),
        );
        found["runs"].as_array().cloned().unwrap_or_default()
    }

    /// Every value of a metric of an MLflow run.
    pub fn history(&self, run: &str, key: &str) -> Vec<Value> {
        let v = self.get(
            "metrics/get-history",
            &[
                ("run_id", run),
                ("metric_key", key),
                ("max_results", "25000"),
            ],
        );
        v["metrics"].as_array().cloned().unwrap_or_default()
    }

    /// The bytes of an artifact of an MLflow run.
    pub fn artifact(&self, run: &str, path: &str) -> Vec<u8> {
        let mut r = self
            .agent
            .get(format!("{}/get-artifact", self.uri))
            .query("run_id", run)
            .query("path", path)
            .call()
            .expect("artifact");
        assert_eq!(r.status(), 200, "artifact {path}");
        r.body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_vec()
            .expect("bytes")
    }
}

impl Drop for Mlflow {
    fn drop(&mut self) {
        self.stop();
    }
}
