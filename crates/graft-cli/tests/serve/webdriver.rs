//! Headless Chromium driven through chromedriver's W3C WebDriver API, over plain HTTP on
//! 127.0.0.1 (Debian's `chromium` and `chromium-driver`).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The key under which WebDriver returns an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// One browser session; dropping it ends the session (closing Chromium) and stops chromedriver,
/// also when an assertion failed.
pub struct Browser {
    agent: ureq::Agent,
    base: String,
    session: String,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// A new headless session; fails when Chromium or chromedriver is not installed
    /// (scripts/test.sh installs them).
    pub fn start() -> Browser {
        assert!(
            Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists(),
            "{CHROMIUM} or {CHROMEDRIVER} is missing: run the tests with scripts/test.sh, which \
             installs Debian's chromium and chromium-driver"
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let base = format!("http://127.0.0.1:{port}");
        let mut browser = Browser {
            agent,
            base,
            session: String::new(),
            driver,
            _profile: tempfile::tempdir().expect("profile dir"),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !browser.ready() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        // The flags keep Chromium off the network this machine does not have.
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=900,1000",
                    format!("--user-data-dir={}", browser._profile.path().display()),
                ],
            },
        }}});
        let v = browser.request("POST", &format!("{}/session", browser.base), Some(caps));
        browser.session = v["sessionId"].as_str().expect("session id").to_string();
        browser
    }

    fn ready(&self) -> bool {
        self.agent
            .get(format!("{}/status", self.base))
            .call()
            .is_ok_and(|r| r.status() == 200)
    }

    fn request(&self, method: &str, url: &str, body: Option<Value>) -> Value {
        let r = match method {
            "GET" => self.agent.get(url).call(),
            "DELETE" => self.agent.delete(url).call(),
            _ => self
                .agent
                .post(url)
                .header("Content-Type", "application/json")
                .send(body.unwrap_or_else(|| json!({})).to_string().as_bytes()),
        };
        let r = r.expect("WebDriver request");
        let status = r.status().as_u16();
        let text = r.into_body().read_to_string().unwrap_or_default();
        assert_eq!(status, 200, "WebDriver {method} {url}: {text}");
        let v: Value = serde_json::from_str(&text).expect("WebDriver JSON");
        v["value"].clone()
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        self.request(method, &url, body)
    }

    pub fn goto(&self, url: &str) {
        self.call("POST", "/url", Some(json!({"url": url})));
    }

    /// The element matching a CSS selector.
    pub fn find(&self, css: &str) -> String {
        let v = self.call(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        v[ELEMENT].as_str().expect("element id").to_string()
    }

    /// Type into an element; for a file input, `text` is the path to upload.
    pub fn send_keys(&self, el: &str, text: &str) {
        self.call(
            "POST",
            &format!("/element/{el}/value"),
            Some(json!({"text": text})),
        );
    }

    pub fn click(&self, el: &str) {
        self.call("POST", &format!("/element/{el}/click"), Some(json!({})));
    }

    pub fn attribute(&self, el: &str, name: &str) -> Value {
        self.call("GET", &format!("/element/{el}/attribute/{name}"), None)
    }

    pub fn text(&self, css: &str) -> String {
        let el = self.find(css);
        self.call("GET", &format!("/element/{el}/text"), None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// A Chrome DevTools Protocol command (chromedriver's `goog/cdp/execute`), such as
    /// `Network.emulateNetworkConditions`.
    pub fn cdp(&self, cmd: &str, params: Value) -> Value {
        self.call(
            "POST",
            "/goog/cdp/execute",
            Some(json!({"cmd": cmd, "params": params})),
        )
    }

    /// Wait until the element matching `css` has attribute `name` equal to one of `values`
    /// (returned), or fail after `secs` naming what it last saw.
    pub fn wait_attribute(&self, css: &str, name: &str, values: &[&str], secs: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let el = self.find(css);
            let v = self.attribute(&el, name);
            let s = v.as_str().unwrap_or_default().to_string();
            if values.contains(&s.as_str()) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "{css}[{name}] is {v} after {secs} s, not one of {values:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A PNG of the viewport.
    pub fn screenshot(&self) -> Vec<u8> {
        let v = self.call("GET", "/screenshot", None);
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("base64 screenshot"))
            .expect("base64")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let url = format!("{}/session/{}", self.base, self.session);
            let _ = self.agent.delete(&url).call();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
