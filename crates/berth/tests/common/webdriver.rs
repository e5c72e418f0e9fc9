//! A small W3C WebDriver client for end-to-end tests in a real browser: Debian's headless
//! Chromium driven by Debian's `chromedriver`, over plain HTTP with reqwest.
//!
//! ```ignore
//! let home = ScratchDir::new("chrome");
//! nss_trust_ca(home.path(), &ca_path);              // optional: trust berth's CA
//! let driver = Chromedriver::start(home.path()).await; // HOME=home
//! let s = driver.chromium_session().await.unwrap(); // fresh profile under home
//! s.goto("https://…").await.unwrap();
//! let list = s.wait_for("#list", WAIT).await;
//! s.save_screenshot(&artifact_path("page.png")).await;
//! ```
//!
//! Chromium reads certificates from `$HOME/.pki/nssdb` (not from `--user-data-dir`), so a
//! profile's trust is chosen by the HOME chromedriver runs with. Sessions are deleted on
//! drop (which closes the browser) and chromedriver is killed when the last handle goes.
//! Missing chromium, chromedriver or certutil is a failure, never a skip.
#![allow(dead_code)]

use base64::Engine;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const CHROMIUM: &str = "/usr/bin/chromium";
/// The W3C key under which an element reference travels.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";
const MISSING: &str = "install Debian's chromium, chromium-driver and libnss3-tools (.ci/run does)";

/// Fails the test unless chromium, chromedriver and certutil are installed.
pub fn require_browser_tools() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: {MISSING}"
    );
    for (tool, arg) in [("chromedriver", "--version"), ("certutil", "-H")] {
        let found = Command::new(tool)
            .arg(arg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        assert!(found, "`{tool}` is not on PATH: {MISSING}");
    }
}

/// `<repo>/artifacts/NAME` (the directory is created; it is gitignored).
pub fn artifact_path(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir.canonicalize().unwrap().join(name)
}

/// A unique temporary directory, removed on drop unless the test is panicking.
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    pub fn new(tag: &str) -> ScratchDir {
        ScratchDir(super::temp_dir(tag))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("browser test dir kept: {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Creates the NSS database Chromium reads under `home` (if needed) and adds `ca_pem` to
/// it as a trusted certificate authority for TLS servers.
pub fn nss_trust_ca(home: &Path, ca_pem: &Path) {
    let db = home.join(".pki/nssdb");
    let db_arg = format!("sql:{}", db.display());
    let certutil = |args: &[&str]| {
        let out = Command::new("certutil")
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running certutil ({MISSING}): {e}"));
        assert!(
            out.status.success(),
            "certutil {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    if !db.join("cert9.db").exists() {
        std::fs::create_dir_all(&db).unwrap();
        certutil(&["-d", &db_arg, "-N", "--empty-password"]);
    }
    certutil(&[
        "-d",
        &db_arg,
        "-A",
        "-n",
        "berth-ca",
        "-t",
        "C,,",
        "-i",
        ca_pem.to_str().unwrap(),
    ]);
}

/// A `chromedriver` child process on a free local port; killed on drop.
pub struct Chromedriver {
    pub url: String,
    pub home: PathBuf,
    child: Mutex<Child>,
}

impl Chromedriver {
    /// Starts chromedriver with `HOME=home` (its log goes to `home/chromedriver.log`) and
    /// waits until `/status` says it is ready.
    pub async fn start(home: &Path) -> Arc<Chromedriver> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = home.join("chromedriver.log");
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .env("HOME", home)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting chromedriver ({MISSING}): {e}"));
        let driver = Arc::new(Chromedriver {
            url: format!("http://127.0.0.1:{port}"),
            home: home.to_path_buf(),
            child: Mutex::new(child),
        });
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let status = http.get(format!("{}/status", driver.url)).send().await;
            if let Ok(r) = status {
                let v: Value = r.json().await.unwrap_or_default();
                if v["value"]["ready"] == true {
                    return driver;
                }
            }
            if let Ok(Some(exit)) = driver.child.lock().unwrap().try_wait() {
                panic!(
                    "chromedriver exited with {exit}; log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver on port {port} was not ready within 20 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A new session with the given capabilities (`alwaysMatch`).
    pub async fn new_session(self: &Arc<Self>, capabilities: Value) -> Result<Session, WdError> {
        let http = reqwest::Client::new();
        let body = json!({ "capabilities": { "alwaysMatch": capabilities } });
        let v = call(
            &http,
            reqwest::Method::POST,
            &format!("{}/session", self.url),
            Some(body),
        )
        .await?;
        let id = v["sessionId"].as_str().expect("sessionId").to_string();
        Ok(Session {
            url: format!("{}/session/{id}", self.url),
            http,
            ended: false,
            _driver: self.clone(),
        })
    }

    /// A new headless Chromium session with a fresh profile under HOME.
    pub async fn chromium_session(self: &Arc<Self>) -> Result<Session, WdError> {
        let profile = self.home.join(format!("profile-{}", rand::random::<u32>()));
        self.new_session(chromium_capabilities(&profile)).await
    }

    /// Like [`Chromedriver::chromium_session`], saving downloads in `downloads` without
    /// asking.
    pub async fn chromium_session_downloading_to(
        self: &Arc<Self>,
        downloads: &Path,
    ) -> Result<Session, WdError> {
        let profile = self.home.join(format!("profile-{}", rand::random::<u32>()));
        let mut caps = chromium_capabilities(&profile);
        caps["goog:chromeOptions"]["prefs"] = json!({
            "download.default_directory": downloads.display().to_string(),
            "download.prompt_for_download": false,
            "download.directory_upgrade": true,
        });
        self.new_session(caps).await
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap();
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Capabilities for Debian's headless Chromium with `user_data_dir` as its profile;
/// certificate errors are errors (`acceptInsecureCerts: false`).
pub fn chromium_capabilities(user_data_dir: &Path) -> Value {
    json!({
        "browserName": "chrome",
        "acceptInsecureCerts": false,
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--no-default-browser-check",
                "--window-size=1280,800",
                format!("--user-data-dir={}", user_data_dir.display()),
            ],
        },
    })
}

/// A WebDriver error: the W3C `error` code (e.g. "no such element", "insecure
/// certificate"; "transport" when chromedriver could not be reached) and its message.
#[derive(Debug, Clone)]
pub struct WdError {
    pub error: String,
    pub message: String,
}

impl std::fmt::Display for WdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.error, self.message)
    }
}

impl std::error::Error for WdError {}

/// One WebDriver command; returns the response's `value`.
async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<Value>,
) -> Result<Value, WdError> {
    let transport = |e: reqwest::Error| WdError {
        error: "transport".into(),
        message: format!("{url}: {e}"),
    };
    let mut req = http.request(method, url);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.map_err(transport)?;
    let ok = resp.status().is_success();
    let v: Value = resp.json().await.map_err(transport)?;
    let value = v["value"].clone();
    if ok {
        Ok(value)
    } else {
        Err(WdError {
            error: value["error"].as_str().unwrap_or("unknown error").into(),
            message: value["message"].as_str().unwrap_or_default().into(),
        })
    }
}

/// A browser session; deleted (closing the browser) on drop.
pub struct Session {
    url: String,
    http: reqwest::Client,
    ended: bool,
    _driver: Arc<Chromedriver>,
}

impl Session {
    async fn get(&self, path: &str) -> Result<Value, WdError> {
        call(
            &self.http,
            reqwest::Method::GET,
            &format!("{}{path}", self.url),
            None,
        )
        .await
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value, WdError> {
        let url = format!("{}{path}", self.url);
        call(&self.http, reqwest::Method::POST, &url, Some(body)).await
    }

    /// Navigates and waits for the page load (certificate errors fail with "insecure
    /// certificate").
    pub async fn goto(&self, url: &str) -> Result<(), WdError> {
        self.post("/url", json!({ "url": url })).await.map(drop)
    }

    pub async fn current_url(&self) -> Result<String, WdError> {
        Ok(self.get("/url").await?.as_str().unwrap_or_default().into())
    }

    pub async fn title(&self) -> Result<String, WdError> {
        Ok(self
            .get("/title")
            .await?
            .as_str()
            .unwrap_or_default()
            .into())
    }

    /// The page's HTML as the browser has it now.
    pub async fn source(&self) -> Result<String, WdError> {
        Ok(self
            .get("/source")
            .await?
            .as_str()
            .unwrap_or_default()
            .into())
    }

    /// The first element matching a CSS selector ("no such element" if none).
    pub async fn find(&self, css: &str) -> Result<Element<'_>, WdError> {
        let v = self
            .post("/element", json!({ "using": "css selector", "value": css }))
            .await?;
        Ok(self.element(&v))
    }

    /// Every element matching a CSS selector.
    pub async fn find_all(&self, css: &str) -> Result<Vec<Element<'_>>, WdError> {
        let v = self
            .post(
                "/elements",
                json!({ "using": "css selector", "value": css }),
            )
            .await?;
        Ok(v.as_array()
            .map(|a| a.iter().map(|e| self.element(e)).collect())
            .unwrap_or_default())
    }

    fn element(&self, v: &Value) -> Element<'_> {
        Element {
            session: self,
            id: v[ELEMENT_KEY].as_str().expect("element reference").into(),
        }
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns its result.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Result<Value, WdError> {
        self.post("/execute/sync", json!({ "script": script, "args": args }))
            .await
    }

    /// Types `text` (WebDriver key codes such as [`keys::TAB`] work) into whatever has the
    /// focus, as a user at the keyboard would: W3C key actions, no element targeted.
    pub async fn press_keys(&self, text: &str) -> Result<(), WdError> {
        let mut actions = Vec::new();
        for c in text.chars() {
            actions.push(json!({ "type": "keyDown", "value": c.to_string() }));
            actions.push(json!({ "type": "keyUp", "value": c.to_string() }));
        }
        self.post(
            "/actions",
            json!({ "actions": [{ "type": "key", "id": "keyboard", "actions": actions }] }),
        )
        .await
        .map(drop)
    }

    /// The element that has the focus.
    pub async fn active_element(&self) -> Result<Element<'_>, WdError> {
        let v = self.get("/element/active").await?;
        Ok(self.element(&v))
    }

    /// Resizes the browser window (headless: the viewport) to `width`×`height`.
    pub async fn set_window_size(&self, width: u32, height: u32) -> Result<(), WdError> {
        self.post("/window/rect", json!({ "width": width, "height": height }))
            .await
            .map(drop)
    }

    /// A screenshot of the viewport, as PNG bytes.
    pub async fn screenshot(&self) -> Result<Vec<u8>, WdError> {
        let b64 = self.get("/screenshot").await?;
        Ok(base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap_or_default())
            .expect("screenshot is base64"))
    }

    /// Saves a screenshot as PNG at `path`, and says where on stderr.
    pub async fn save_screenshot(&self, path: &Path) {
        let png = self.screenshot().await.expect("screenshot");
        assert!(png.starts_with(b"\x89PNG"), "screenshot is not a PNG");
        std::fs::write(path, png).unwrap();
        eprintln!("screenshot saved: {}", path.display());
    }

    /// Polls `check` every 100 ms until it returns `Some`, panicking with `what`, the page
    /// title and URL after `timeout`.
    pub async fn wait_until<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl AsyncFnMut() -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(t) = check().await {
                return t;
            }
            if Instant::now() >= deadline {
                panic!(
                    "waited {timeout:?} for {what}; page {:?} at {:?}",
                    self.title().await,
                    self.current_url().await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until an element matching `css` exists.
    pub async fn wait_for(&self, css: &str, timeout: Duration) -> Element<'_> {
        self.wait_until(&format!("an element {css:?}"), timeout, async || {
            self.find(css).await.ok()
        })
        .await
    }

    /// Waits until the text of the element matching `css` contains `want`; returns the text.
    pub async fn wait_for_text(&self, css: &str, want: &str, timeout: Duration) -> String {
        let what = format!("{css:?} to show {want:?}");
        self.wait_until(&what, timeout, async || {
            let text = self.find(css).await.ok()?.text().await.ok()?;
            text.contains(want).then_some(text)
        })
        .await
    }

    /// Deletes the session now (drop does it too, blocking).
    pub async fn quit(mut self) -> Result<(), WdError> {
        self.ended = true;
        call(&self.http, reqwest::Method::DELETE, &self.url, None)
            .await
            .map(drop)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        // Drop cannot await: delete from a thread with its own runtime and client.
        let url = self.url.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let http = reqwest::Client::new();
                let _ = http
                    .delete(url)
                    .timeout(Duration::from_secs(20))
                    .send()
                    .await;
            });
        })
        .join();
    }
}

/// An element on the page of a session.
pub struct Element<'s> {
    session: &'s Session,
    id: String,
}

impl Element<'_> {
    /// The element's rendered text.
    pub async fn text(&self) -> Result<String, WdError> {
        let v = self
            .session
            .get(&format!("/element/{}/text", self.id))
            .await?;
        Ok(v.as_str().unwrap_or_default().into())
    }

    /// A DOM property (`null` when absent), e.g. "href", "value", "checked".
    pub async fn property(&self, name: &str) -> Result<Value, WdError> {
        self.session
            .get(&format!("/element/{}/property/{name}", self.id))
            .await
    }

    pub async fn click(&self) -> Result<(), WdError> {
        self.session
            .post(&format!("/element/{}/click", self.id), json!({}))
            .await
            .map(drop)
    }

    /// Types `text` into the element; WebDriver key codes such as [`keys::ENTER`] work.
    pub async fn send_keys(&self, text: &str) -> Result<(), WdError> {
        self.session
            .post(
                &format!("/element/{}/value", self.id),
                json!({ "text": text }),
            )
            .await
            .map(drop)
    }

    pub async fn clear(&self) -> Result<(), WdError> {
        self.session
            .post(&format!("/element/{}/clear", self.id), json!({}))
            .await
            .map(drop)
    }
}

/// WebDriver key codes for [`Element::send_keys`].
pub mod keys {
    pub const ENTER: &str = "\u{E007}";
    pub const TAB: &str = "\u{E004}";
    pub const ESCAPE: &str = "\u{E00C}";
    pub const BACKSPACE: &str = "\u{E003}";
}
