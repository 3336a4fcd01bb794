//! A small W3C WebDriver client for the end-to-end tests: it starts Debian's `chromedriver`
//! on a free loopback port, opens one headless Chromium session, and speaks the protocol
//! with plain blocking `reqwest` JSON calls. No crate beyond the dev-dependencies.
//!
//! Every wait is a bounded poll for a condition ([`Browser::wait_for`],
//! [`Browser::wait_until`]); a wait that runs out panics with the current URL and the start
//! of the page, so a failure says where the browser was.

#![allow(dead_code)] // a toolbox: not every test uses every call

use std::fmt;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use serde_json::{Value, json};
use tempfile::TempDir;

/// The key of a web element reference in WebDriver JSON.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// How long a wait for an element or a condition may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(15);
/// How long chromedriver may take to answer `/status` as ready.
const DRIVER_START: Duration = Duration::from_secs(20);
/// The pause between two looks at a condition (not a wait on its own: always in a bounded loop).
const POLL: Duration = Duration::from_millis(40);
/// The window size every session starts with, and what screenshots are taken at.
pub const WIDTH: u64 = 1280;
pub const HEIGHT: u64 = 900;

/// Paths of the browser and its driver.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub chromium: PathBuf,
    pub chromedriver: PathBuf,
}

impl Binaries {
    /// `$CHROMIUM` / `$CHROMEDRIVER` if set, else `chromium` (or `chromium-browser`) and
    /// `chromedriver` on `PATH`. The error names what is missing.
    pub fn find() -> std::result::Result<Binaries, String> {
        let chromium = from_env_or_path("CHROMIUM", &["chromium", "chromium-browser"]);
        let chromedriver = from_env_or_path("CHROMEDRIVER", &["chromedriver"]);
        match (chromium, chromedriver) {
            (Some(chromium), Some(chromedriver)) => Ok(Binaries { chromium, chromedriver }),
            (chromium, chromedriver) => {
                let missing: Vec<&str> = [(chromium.is_none(), "chromium"), (chromedriver.is_none(), "chromedriver")]
                    .into_iter()
                    .filter_map(|(missing, name)| missing.then_some(name))
                    .collect();
                Err(format!("{} not found", missing.join(" and ")))
            }
        }
    }
}

fn from_env_or_path(variable: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(variable).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path)).filter(|p| p.is_file());
    }
    let path = std::env::var_os("PATH")?;
    names.iter().flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name))).find(|p| p.is_file())
}

/// An error answer from the driver (`{"value": {"error", "message"}}`) or a failed call.
#[derive(Debug)]
pub struct WebDriverError {
    pub error: String,
    pub message: String,
}

impl fmt::Display for WebDriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let first_line = self.message.lines().next().unwrap_or_default();
        write!(f, "{}: {first_line}", self.error)
    }
}

type Result<T> = std::result::Result<T, WebDriverError>;

/// The running chromedriver; killed when dropped.
struct Driver {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One headless Chromium session. Dropping it ends the session (closing Chromium) and
/// then kills chromedriver.
pub struct Browser {
    client: Client,
    session: String,
    // Field order matters: the driver is killed before the profile folder is removed.
    driver: Driver,
    _work: TempDir,
}

impl Browser {
    /// Starts chromedriver on a free loopback port, waits until it reports ready, and opens
    /// a session with a fresh profile.
    pub fn start(binaries: &Binaries) -> Browser {
        let work = tempfile::tempdir().expect("temp dir for the browser");
        let profile = work.path().join("profile");
        let log = work.path().join("chromedriver.log");
        let client = Client::builder().timeout(Duration::from_secs(60)).build().expect("http client");
        let driver = start_driver(binaries, &log, &client);

        let args = [
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            format!("--user-data-dir={}", profile.display()),
            format!("--window-size={WIDTH},{HEIGHT}"),
        ];
        let capabilities = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "pageLoadStrategy": "normal",
                    "goog:chromeOptions": {
                        "binary": binaries.chromium.to_string_lossy(),
                        "args": args,
                    },
                },
            },
        });
        let answer = call(&client, reqwest::Method::POST, &format!("{}/session", driver.base), Some(&capabilities))
            .unwrap_or_else(|e| {
                panic!(
                    "chromedriver could not start Chromium: {e}\nchromedriver log:\n{}",
                    std::fs::read_to_string(&driver.log).unwrap_or_default()
                )
            });
        let session = answer["sessionId"].as_str().expect("sessionId in the new-session answer").to_owned();
        let browser = Browser { client, session, driver, _work: work };
        // Our waits are explicit polls; the driver must not add hidden ones.
        browser.post("/timeouts", &json!({"implicit": 0, "pageLoad": 30_000, "script": 10_000})).expect("set timeouts");
        // `--window-size` sizes the window; headless Chromium still takes some of it for a
        // frame, so make the page itself WIDTH×HEIGHT, the size the tests and shots assume.
        browser.resize(WIDTH, HEIGHT);
        browser
    }

    // ----- the protocol -----

    fn url_of(&self, path: &str) -> String {
        format!("{}/session/{}{path}", self.driver.base, self.session)
    }

    fn get(&self, path: &str) -> Result<Value> {
        call(&self.client, reqwest::Method::GET, &self.url_of(path), None)
    }

    fn post(&self, path: &str, body: &Value) -> Result<Value> {
        call(&self.client, reqwest::Method::POST, &self.url_of(path), Some(body))
    }

    // ----- navigation -----

    /// Opens `url` and returns when the page has loaded.
    pub fn goto(&self, url: &str) {
        self.post("/url", &json!({ "url": url })).unwrap_or_else(|e| panic!("opening {url}: {e}"));
    }

    pub fn refresh(&self) {
        self.post("/refresh", &json!({})).unwrap_or_else(|e| panic!("reloading: {e}"));
    }

    pub fn current_url(&self) -> String {
        self.get("/url").ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
    }

    /// The current URL's path and query, e.g. `/settings/keys?notice=welcome`.
    pub fn path(&self) -> String {
        let url = self.current_url();
        let after_scheme = url.find("://").map_or(0, |i| i + 3);
        url[after_scheme..].find('/').map_or_else(|| "/".to_owned(), |i| url[after_scheme + i..].to_owned())
    }

    /// The serialized DOM of the current page.
    pub fn source(&self) -> String {
        self.get("/source").ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
    }

    pub fn title(&self) -> String {
        self.get("/title").ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns its result.
    pub fn execute(&self, script: &str, args: &[Value]) -> Value {
        self.post("/execute/sync", &json!({ "script": script, "args": args }))
            .unwrap_or_else(|e| panic!("executing script: {e}"))
    }

    // ----- elements -----

    /// The first element matching `selector` right now, if any.
    pub fn try_find(&self, selector: &str) -> Option<Element<'_>> {
        match self.post("/element", &json!({"using": "css selector", "value": selector})) {
            Ok(value) => Some(self.element(&value)),
            Err(e) if e.error == "no such element" => None,
            Err(e) => panic!("finding {selector:?}: {e}"),
        }
    }

    /// All elements matching `selector` right now.
    pub fn find_all(&self, selector: &str) -> Vec<Element<'_>> {
        let found = self
            .post("/elements", &json!({"using": "css selector", "value": selector}))
            .unwrap_or_else(|e| panic!("finding {selector:?}: {e}"));
        found.as_array().map(|all| all.iter().map(|v| self.element(v)).collect()).unwrap_or_default()
    }

    /// The element matching `selector`, now; panics if there is none.
    #[track_caller]
    pub fn find(&self, selector: &str) -> Element<'_> {
        self.try_find(selector).unwrap_or_else(|| self.fail(&format!("no element matches {selector:?}")))
    }

    /// Polls until an element matches `selector` (at most [`WAIT`]) and returns it.
    #[track_caller]
    pub fn wait_for(&self, selector: &str) -> Element<'_> {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(element) = self.try_find(selector) {
                return element;
            }
            if Instant::now() >= deadline {
                self.fail(&format!("waited {WAIT:?} for an element matching {selector:?}"));
            }
            std::thread::sleep(POLL);
        }
    }

    /// Polls `condition` until it holds (at most [`WAIT`]); `what` names it in the failure.
    #[track_caller]
    pub fn wait_until(&self, what: &str, mut condition: impl FnMut(&Browser) -> bool) {
        let deadline = Instant::now() + WAIT;
        while !condition(self) {
            if Instant::now() >= deadline {
                self.fail(&format!("waited {WAIT:?} for: {what}"));
            }
            std::thread::sleep(POLL);
        }
    }

    fn element(&self, value: &Value) -> Element<'_> {
        let id = value[ELEMENT].as_str().unwrap_or_else(|| panic!("not an element reference: {value}"));
        Element { browser: self, id: id.to_owned() }
    }

    /// Panics with where the browser is and what the page starts with.
    #[track_caller]
    pub fn fail(&self, message: &str) -> ! {
        let source = self.source();
        let body = source.find("<main").map_or(source.as_str(), |at| &source[at..]);
        let excerpt: String = body.chars().take(3000).collect();
        panic!("{message}\n  at {}\n  page: {excerpt}", self.current_url());
    }

    // ----- forms -----

    /// Replaces the text of the input matching `selector`.
    #[track_caller]
    pub fn fill(&self, selector: &str, text: &str) {
        let input = self.find(selector);
        input.clear();
        input.send_keys(text);
        assert_eq!(input.value(), text, "{selector} does not hold what was typed");
    }

    #[track_caller]
    pub fn click(&self, selector: &str) {
        self.find(selector).click();
    }

    // ----- screenshots -----

    /// A PNG of the visible part of the page.
    pub fn screenshot(&self) -> Vec<u8> {
        let answer = self.get("/screenshot").unwrap_or_else(|e| panic!("taking a screenshot: {e}"));
        base64_decode(answer.as_str().expect("base64 screenshot")).expect("valid base64 from the driver")
    }

    /// Saves a PNG of the whole page at the session's width: the window grows to the page's
    /// height for the shot and goes back to [`WIDTH`]×[`HEIGHT`] after.
    pub fn save_screenshot(&self, path: &Path) {
        let height = self.execute(
            "return Math.ceil(Math.max(document.documentElement.scrollHeight, document.body.scrollHeight));",
            &[],
        );
        let height = height.as_u64().unwrap_or(HEIGHT).clamp(HEIGHT, 4000);
        if height > HEIGHT {
            self.resize(WIDTH, height);
        }
        let png = self.screenshot();
        if height > HEIGHT {
            self.resize(WIDTH, HEIGHT);
        }
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "the screenshot is not a PNG");
        std::fs::write(path, png).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }

    /// Sets the viewport to `width`×`height` CSS pixels (the window's frame, if any, is added).
    pub fn resize(&self, width: u64, height: u64) {
        let inner = self.execute("return [window.innerWidth, window.innerHeight];", &[]);
        let outer = self.get("/window/rect").unwrap_or_else(|e| panic!("window rect: {e}"));
        let frame_w = outer["width"].as_u64().unwrap_or(width).saturating_sub(inner[0].as_u64().unwrap_or(width));
        let frame_h = outer["height"].as_u64().unwrap_or(height).saturating_sub(inner[1].as_u64().unwrap_or(height));
        self.post("/window/rect", &json!({"width": width + frame_w, "height": height + frame_h}))
            .unwrap_or_else(|e| panic!("resizing the window: {e}"));
        let now = self.execute("return [window.innerWidth, window.innerHeight];", &[]);
        assert_eq!(now, json!([width, height]), "the page area after resizing the window");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ends the session, which closes Chromium; the driver is killed after, by its Drop.
        let _ = self.client.delete(self.url_of("")).timeout(Duration::from_secs(10)).send();
    }
}

/// A reference to an element on the current page.
pub struct Element<'a> {
    browser: &'a Browser,
    id: String,
}

impl Element<'_> {
    fn path(&self, rest: &str) -> String {
        format!("/element/{}{rest}", self.id)
    }

    #[track_caller]
    pub fn click(&self) {
        if let Err(e) = self.browser.post(&self.path("/click"), &json!({})) {
            self.browser.fail(&format!("clicking failed: {e}"));
        }
    }

    #[track_caller]
    pub fn clear(&self) {
        if let Err(e) = self.browser.post(&self.path("/clear"), &json!({})) {
            self.browser.fail(&format!("clearing failed: {e}"));
        }
    }

    #[track_caller]
    pub fn send_keys(&self, text: &str) {
        if let Err(e) = self.browser.post(&self.path("/value"), &json!({ "text": text })) {
            self.browser.fail(&format!("typing failed: {e}"));
        }
    }

    /// The rendered text (empty for hidden elements).
    pub fn text(&self) -> String {
        self.browser.get(&self.path("/text")).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
    }

    /// The `value` property (what an input holds now).
    pub fn value(&self) -> String {
        self.property("value").and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
    }

    pub fn property(&self, name: &str) -> Option<Value> {
        self.browser.get(&self.path(&format!("/property/{name}"))).ok().filter(|v| !v.is_null())
    }

    pub fn attribute(&self, name: &str) -> Option<String> {
        self.browser.get(&self.path(&format!("/attribute/{name}"))).ok().and_then(|v| v.as_str().map(str::to_owned))
    }

    /// The first descendant matching `selector`, if any.
    pub fn try_find(&self, selector: &str) -> Option<Element<'_>> {
        match self.browser.post(&self.path("/element"), &json!({"using": "css selector", "value": selector})) {
            Ok(value) => Some(self.browser.element(&value)),
            Err(e) if e.error == "no such element" => None,
            Err(e) => panic!("finding {selector:?} in an element: {e}"),
        }
    }
}

/// One WebDriver command: the answer's `value`, or the error it reports.
fn call(client: &Client, method: reqwest::Method, url: &str, body: Option<&Value>) -> Result<Value> {
    let mut request = client.request(method, url);
    if let Some(body) = body {
        request = request.json(body);
    }
    let response =
        request.send().map_err(|e| WebDriverError { error: "request failed".into(), message: e.to_string() })?;
    let status = response.status();
    let mut answer: Value = response
        .json()
        .map_err(|e| WebDriverError { error: format!("unreadable answer ({status})"), message: e.to_string() })?;
    let value = answer["value"].take();
    if status.is_success() {
        Ok(value)
    } else {
        Err(WebDriverError {
            error: value["error"].as_str().unwrap_or("unknown error").to_owned(),
            message: value["message"].as_str().unwrap_or_default().to_owned(),
        })
    }
}

/// Starts chromedriver on a free loopback port and polls `/status` until it is ready.
fn start_driver(binaries: &Binaries, log: &Path, client: &Client) -> Driver {
    // A port the kernel just handed out and we let go of; chromedriver binds it next.
    let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
    let log_file = std::fs::File::create(log).expect("chromedriver log file");
    let child = Command::new(&binaries.chromedriver)
        .arg(format!("--port={port}"))
        .arg(format!("--log-path={}", log.display()))
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().expect("log file"))
        .stderr(log_file)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", binaries.chromedriver.display()));
    let mut driver = Driver { child, base: format!("http://127.0.0.1:{port}"), log: log.to_owned() };

    let deadline = Instant::now() + DRIVER_START;
    loop {
        let status = call(client, reqwest::Method::GET, &format!("{}/status", driver.base), None);
        if status.is_ok_and(|status| status["ready"] == true) {
            return driver;
        }
        if let Ok(Some(exit)) = driver.child.try_wait() {
            panic!(
                "chromedriver exited ({exit}) before it was ready; its log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        if Instant::now() >= deadline {
            panic!("chromedriver was not ready within {DRIVER_START:?} on port {port}");
        }
        std::thread::sleep(POLL);
    }
}

/// Decodes standard base64 (with or without padding; whitespace ignored).
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    fn sextet(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let symbols: Vec<u8> = text.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    let data = symbols.strip_suffix(b"==").or_else(|| symbols.strip_suffix(b"=")).unwrap_or(&symbols);
    if data.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(data.len() * 3 / 4);
    for chunk in data.chunks(4) {
        let mut bits = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            bits |= sextet(c)? << (18 - 6 * i);
        }
        let bytes = bits.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::base64_decode;

    #[test]
    fn base64_decodes_every_padding_and_refuses_garbage() {
        assert_eq!(base64_decode("").unwrap(), b"");
        assert_eq!(base64_decode("Zg==").unwrap(), b"f");
        assert_eq!(base64_decode("Zm8=").unwrap(), b"fo");
        assert_eq!(base64_decode("Zm9v").unwrap(), b"foo");
        assert_eq!(base64_decode("Zm9vYmFy\n").unwrap(), b"foobar");
        assert_eq!(base64_decode("+/+/").unwrap(), [0xfb, 0xff, 0xbf]);
        assert!(base64_decode("Zm9v!").is_none());
        assert!(base64_decode("Z").is_none());
    }
}
