//! The settings page (SPEC §7) over real HTTP: first-run setup, sign-in and throttling,
//! session cookies, CSRF and Origin checks, escaping, security headers, the one-time secret,
//! revoke and rotate through the forms, admin-only pages, logout and disabling users.
//!
//! A tiny hand-rolled "browser" keeps cookies, sends `Origin` like a real one on POST, and
//! does not follow redirects, so each 303 and each `Set-Cookie` can be asserted.

use std::cell::RefCell;
use std::collections::BTreeMap;

use reqwest::blocking::Client;
use reqwest::header::HeaderMap;

use crate::helpers::*;

const MISMATCH: &str = "That username and password do not match.";

// ----- a minimal browser -----

struct Page {
    status: u16,
    headers: HeaderMap,
    body: String,
}

impl Page {
    fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).map(|v| v.to_str().unwrap_or_default().to_owned())
    }

    fn location(&self) -> String {
        self.header("location").unwrap_or_else(|| panic!("no Location; status {}: {}", self.status, self.body))
    }

    /// The `Set-Cookie` header that sets (or clears) `name`.
    fn set_cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap_or_default().to_owned())
            .find(|v| v.starts_with(&format!("{name}=")))
    }

    /// The first form token on the page.
    fn csrf(&self) -> String {
        attribute_after(&self.body, "name=\"csrf\"", "value")
            .unwrap_or_else(|| panic!("no csrf field in: {}", self.body))
    }

    /// The ids of the keys in the keys table, newest first.
    fn key_ids(&self) -> Vec<String> {
        let mut ids = Vec::new();
        let mut rest = self.body.as_str();
        while let Some(at) = rest.find("data-key-id=\"") {
            rest = &rest[at + "data-key-id=\"".len()..];
            ids.push(rest[..rest.find('"').expect("closing quote")].to_owned());
        }
        ids
    }

    /// The secret in `#new-secret`, if the page shows one.
    fn secret(&self) -> Option<String> {
        attribute_after(&self.body, "id=\"new-secret\"", "value")
    }

    #[track_caller]
    fn assert_status(&self, status: u16) -> &Self {
        assert_eq!(self.status, status, "body:\n{}", self.body);
        self
    }

    #[track_caller]
    fn assert_redirect(&self, to: &str) {
        assert_eq!(self.status, 303, "expected a redirect to {to}; body:\n{}", self.body);
        assert_eq!(self.location(), to);
    }
}

/// The value of `attribute` in the tag in which `marker` appears.
fn attribute_after(body: &str, marker: &str, attribute: &str) -> Option<String> {
    let at = body.find(marker)?;
    let tag_start = body[..at].rfind('<')?;
    let tag = &body[tag_start..tag_start + body[tag_start..].find('>')?];
    let needle = format!(" {attribute}=\"");
    let value = &tag[tag.find(&needle)? + needle.len()..];
    Some(value[..value.find('"')?].to_owned())
}

struct Browser {
    base: String,
    client: Client,
    cookies: RefCell<BTreeMap<String, String>>,
}

impl Browser {
    fn new(server: &TestServer) -> Self {
        let client = Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
        Browser { base: server.base.clone(), client, cookies: RefCell::new(BTreeMap::new()) }
    }

    fn cookie(&self, name: &str) -> Option<String> {
        self.cookies.borrow().get(name).cloned()
    }

    fn set_cookie(&self, name: &str, value: &str) {
        self.cookies.borrow_mut().insert(name.to_owned(), value.to_owned());
    }

    fn get(&self, path: &str) -> Page {
        self.send(self.client.get(format!("{}{path}", self.base)))
    }

    /// A form POST as a browser on this site sends it: with `Origin`.
    fn post(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        self.post_from(path, fields, Some(&self.base.clone()))
    }

    fn post_from(&self, path: &str, fields: &[(&str, &str)], origin: Option<&str>) -> Page {
        // For the leak check: typed passwords must never reach a log or the data file.
        fields.iter().filter(|(name, _)| name.contains("password")).for_each(|(_, value)| remember_secret(value));
        let mut request = self.client.post(format!("{}{path}", self.base)).form(fields);
        if let Some(origin) = origin {
            request = request.header("Origin", origin);
        }
        self.send(request)
    }

    fn send(&self, mut request: reqwest::blocking::RequestBuilder) -> Page {
        let jar: Vec<String> = self.cookies.borrow().iter().map(|(k, v)| format!("{k}={v}")).collect();
        if !jar.is_empty() {
            request = request.header("Cookie", jar.join("; "));
        }
        let response = request.send().expect("request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        for set in headers.get_all("set-cookie") {
            let set = set.to_str().expect("ascii cookie");
            let (pair, attributes) = set.split_once(';').unwrap_or((set, ""));
            let (name, value) = pair.split_once('=').expect("name=value");
            if value.is_empty() || attributes.to_ascii_lowercase().contains("max-age=0") {
                self.cookies.borrow_mut().remove(name);
            } else {
                remember_secret(value);
                self.cookies.borrow_mut().insert(name.to_owned(), value.to_owned());
            }
        }
        let body = response.text().expect("body");
        if status >= 400 {
            assert_no_secrets(&format!("a {status} page"), body.as_bytes());
        }
        Page { status, headers, body }
    }

    /// Signs in through the form; panics unless it works.
    fn sign_in(&self, username: &str, password: &str) {
        let form = self.get("/login");
        form.assert_status(200);
        let page = self.post("/login", &[("csrf", &form.csrf()), ("username", username), ("password", password)]);
        page.assert_redirect("/settings/keys");
        assert!(self.cookie("ibp_session").is_some(), "no session cookie after signing in");
    }

    /// A token for forms on settings pages.
    fn csrf(&self) -> String {
        self.get("/settings/profile").assert_status(200).csrf()
    }

    /// Creates a key through the form and returns (id, secret), seeing the secret page once.
    fn create_key(&self, name: &str) -> (String, String) {
        let created = self.post("/settings/keys/new", &[("csrf", &self.csrf()), ("name", name), ("expires", "never")]);
        assert_eq!(created.status, 303, "create failed: {}", created.body);
        let location = created.location();
        let id = location.trim_start_matches("/settings/keys/").trim_end_matches("/secret").to_owned();
        let shown = self.get(&location);
        shown.assert_status(200);
        (id, shown.secret().expect("the secret page shows the secret"))
    }

    fn key_count(&self) -> usize {
        self.get("/settings/keys").assert_status(200).key_ids().len()
    }
}

// ----- set-up -----

/// Adds an administrator offline with [`PASSWORD`].
fn add_admin(dir: &TestDir, name: &str) {
    let out = dir.cli(&["users", "add", name, "--admin", "--password-stdin"], &format!("{PASSWORD}\n"));
    assert!(out.status.success(), "users add --admin failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// A server with administrator `root` and member `bob`.
fn root_and_bob() -> (TestDir, TestServer) {
    let dir = TestDir::new();
    add_admin(&dir, "root");
    dir.add_user("bob");
    let server = dir.start();
    (dir, server)
}

fn signed_in(server: &TestServer, username: &str) -> Browser {
    let browser = Browser::new(server);
    browser.sign_in(username, PASSWORD);
    browser
}

fn bearer_status(server: &TestServer, secret: &str) -> u16 {
    server.get("/v1/me", Some(secret)).status().as_u16()
}

// ----- first run -----

#[test]
fn the_setup_link_creates_the_first_admin_once_and_signs_them_in() {
    let dir = TestDir::new();
    let mut server = dir.start();
    let line = server.next_stdout_line();
    let link = line.split_whitespace().find(|w| w.contains("/setup/")).unwrap_or_else(|| panic!("no link in {line:?}"));
    let path = &link[link.find("/setup/").expect("path")..];
    let browser = Browser::new(&server);

    let form = browser.get(path);
    form.assert_status(200);
    assert!(form.body.contains("id=\"setup-form\""), "{}", form.body);
    assert!(!form.body.contains(&path["/setup/".len()..]), "the page must not repeat the link's secret");
    let form_cookie = form.set_cookie("ibp_form").expect("the setup page sets the pre-session cookie");
    assert!(form_cookie.contains("HttpOnly") && form_cookie.contains("SameSite=Strict"), "{form_cookie}");

    let token = form.csrf();
    let fields =
        |repeat| vec![("csrf", token.as_str()), ("username", "admin"), ("password", PASSWORD), ("repeat", repeat)];
    let refused = browser.post(path, &fields("something else"));
    refused.assert_status(422);
    assert!(refused.body.contains("The two passwords do not match."), "{}", refused.body);
    assert!(refused.body.contains("value=\"admin\""), "the username is kept");

    let done = browser.post(path, &fields(PASSWORD));
    done.assert_redirect("/settings/keys?notice=welcome");
    assert!(done.set_cookie("ibp_session").is_some());
    let keys = browser.get("/settings/keys?notice=welcome");
    keys.assert_status(200);
    assert!(keys.body.contains("id=\"keys-empty\"") && keys.body.contains("No API keys yet"), "{}", keys.body);
    assert!(keys.body.contains("class=\"flash flash-notice\""));
    assert!(keys.body.contains("id=\"nav-users\""), "the first user is an admin");

    // Single use: the link is spent, and a made-up one never worked.
    let spent = Browser::new(&server).get(path);
    spent.assert_status(404);
    assert!(spent.body.contains("id=\"setup-invalid\""), "{}", spent.body);
    Browser::new(&server).get("/setup/not-a-real-link").assert_status(404);
}

#[test]
fn a_server_with_users_prints_no_setup_link_and_every_link_is_a_404() {
    let (_dir, server) = root_and_bob();
    let page = Browser::new(&server).get("/setup/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    page.assert_status(404);
    assert!(page.body.contains("id=\"setup-invalid\""));
}

// ----- signing in -----

#[test]
fn wrong_password_unknown_user_and_disabled_user_look_the_same() {
    let dir = TestDir::new();
    dir.add_user("alice");
    dir.add_user("carol");
    let out = dir.cli(&["users", "disable", "carol"], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let server = dir.start();

    let attempt = |username: &str, password: &str| {
        let browser = Browser::new(&server);
        let form = browser.get("/login");
        let page = browser.post("/login", &[("csrf", &form.csrf()), ("username", username), ("password", password)]);
        assert!(browser.cookie("ibp_session").is_none());
        // The page differs only in the echoed username and the form token.
        let normalised = page.body.replace(username, "USER").replace(&form.csrf(), "TOKEN");
        (page.status, normalised)
    };
    let wrong_password = attempt("alice", "not the password");
    let unknown_user = attempt("mallory", "not the password");
    let disabled_user = attempt("carol", PASSWORD);
    assert_eq!(wrong_password.0, 422);
    assert!(wrong_password.1.contains(MISMATCH), "{}", wrong_password.1);
    assert_eq!(wrong_password, unknown_user);
    assert_eq!(wrong_password, disabled_user);

    let browser = Browser::new(&server);
    browser.sign_in("alice", PASSWORD);
    let keys = browser.get("/settings/keys");
    keys.assert_status(200);
    assert!(keys.body.contains("id=\"avatar-menu\"") && keys.body.contains(">A</summary>"), "initials in the avatar");
    assert!(!keys.body.contains("id=\"nav-users\""), "members have no Users entry");
    // Already signed in: the sign-in page sends you on.
    browser.get("/login").assert_redirect("/settings/keys");
    browser.get("/").assert_redirect("/settings/keys");
    Browser::new(&server).get("/").assert_redirect("/login");
}

#[test]
fn the_sixth_failed_sign_in_in_a_row_gets_429_with_retry_after() {
    let dir = TestDir::new();
    dir.add_user("alice");
    let server = dir.start();
    let browser = Browser::new(&server);
    let token = browser.get("/login").csrf();
    for attempt in 1..=5 {
        let page = browser.post("/login", &[("csrf", &token), ("username", "alice"), ("password", "wrong")]);
        assert_eq!(page.status, 422, "attempt {attempt}: {}", page.body);
    }
    // Even the right password is refused now.
    let page = browser.post("/login", &[("csrf", &token), ("username", "alice"), ("password", PASSWORD)]);
    page.assert_status(429);
    let retry: u64 = page.header("retry-after").expect("Retry-After").parse().expect("seconds");
    assert!((1..=900).contains(&retry), "Retry-After {retry}");
    assert!(page.body.contains("id=\"throttled\"") && page.body.contains("Try again in about"), "{}", page.body);
    assert!(browser.cookie("ibp_session").is_none());
}

#[test]
fn behind_a_local_proxy_the_last_forwarded_address_is_throttled_on_its_own() {
    let dir = TestDir::new();
    let server = dir.start();
    let browser = Browser::new(&server);
    let token = browser.get("/login").csrf();
    let attempt = |user: &str, forwarded: &str| {
        let request = browser
            .client
            .post(format!("{}/login", server.base))
            .header("Origin", &server.base)
            .header("X-Forwarded-For", forwarded)
            .form(&[("csrf", token.as_str()), ("username", user), ("password", "wrong")]);
        browser.send(request).status
    };
    // Twenty failures from one address, each for a different username.
    for n in 0..20 {
        assert_eq!(attempt(&format!("user{n}"), "198.51.100.1, 203.0.113.9"), 422, "attempt {n}");
    }
    assert_eq!(attempt("someone-new", "203.0.113.9"), 429, "the address is throttled");
    assert_eq!(attempt("someone-new", "203.0.113.10"), 422, "another address is not");
}

#[test]
fn cookies_are_http_only_strict_site_wide_and_not_secure_over_plain_http() {
    let dir = TestDir::new();
    dir.add_user("alice");
    let server = dir.start();
    let browser = Browser::new(&server);
    let form = browser.get("/login");
    let page = browser.post("/login", &[("csrf", &form.csrf()), ("username", "alice"), ("password", PASSWORD)]);
    page.assert_redirect("/settings/keys");
    for cookie in [form.set_cookie("ibp_form").expect("ibp_form"), page.set_cookie("ibp_session").expect("ibp_session")]
    {
        let attributes: Vec<&str> = cookie.split(';').map(str::trim).collect();
        assert!(attributes.contains(&"HttpOnly"), "{cookie}");
        assert!(attributes.contains(&"SameSite=Strict"), "{cookie}");
        assert!(attributes.contains(&"Path=/"), "{cookie}");
        assert!(!attributes.iter().any(|a| a.eq_ignore_ascii_case("secure")), "no Secure over http: {cookie}");
    }
    let session = page.set_cookie("ibp_session").expect("session cookie");
    assert!(session.contains("Max-Age=43200"), "the cookie lasts as long as the session: {session}");
    let secret = browser.cookie("ibp_session").expect("session");
    assert_eq!(secret.len(), 43, "a 43-character random secret");
}

#[test]
fn with_an_https_public_url_cookies_are_secure_and_posts_must_come_from_it() {
    let dir = TestDir::new();
    dir.add_user("alice");
    let server = dir.start_with(&[], &[("IBLUEPRINT_PUBLIC_URL", "https://keys.example.com")]);
    let browser = Browser::new(&server);
    let form = browser.get("/login");
    assert!(form.set_cookie("ibp_form").expect("ibp_form").contains("Secure"));
    let fields = [("csrf", form.csrf()), ("username", "alice".to_owned()), ("password", PASSWORD.to_owned())];
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // The address the request came to is not the public origin.
    browser.post("/login", &fields).assert_status(403);
    let page = browser.post_from("/login", &fields, Some("https://keys.example.com"));
    page.assert_redirect("/settings/keys");
    assert!(page.set_cookie("ibp_session").expect("session").contains("Secure"));
}

// ----- CSRF and Origin -----

#[test]
fn a_form_without_the_token_or_from_another_origin_is_refused_and_changes_nothing() {
    let (_dir, server) = root_and_bob();
    let browser = signed_in(&server, "root");
    let (id, secret) = browser.create_key("kept");
    let token = browser.csrf();
    let create =
        |fields: &[(&str, &str)], origin: Option<&str>| browser.post_from("/settings/keys/new", fields, origin);
    let own = server.base.clone();

    let refusals = [
        create(&[("name", "no token")], Some(&own)),
        create(&[("csrf", "0".repeat(64).as_str()), ("name", "wrong token")], Some(&own)),
        create(
            &[("csrf", &Browser::new(&server).get("/login").csrf()), ("name", "another cookie's token")],
            Some(&own),
        ),
        create(&[("csrf", &token), ("name", "foreign origin")], Some("http://evil.example")),
        create(&[("csrf", &token), ("name", "null origin")], Some("null")),
        create(&[("csrf", &token), ("name", "no origin")], None),
        browser.post_from(&format!("/settings/keys/{id}/revoke"), &[("csrf", &token)], Some("http://evil.example")),
        browser.post_from(&format!("/settings/keys/{id}/revoke"), &[], Some(&own)),
        browser.post_from("/logout", &[("csrf", &token)], Some("https://evil.example")),
    ];
    for page in &refusals {
        page.assert_status(403);
        assert!(page.body.contains("id=\"forbidden\"") && page.body.contains("Nothing was changed"), "{}", page.body);
    }
    assert_eq!(browser.key_count(), 1, "no key was created");
    assert_eq!(bearer_status(&server, &secret), 200, "the key was not revoked");
    browser.get("/settings/keys").assert_status(200); // and the session is still there

    // Without an Origin, a same-site Referer is accepted, as browsers send for some forms.
    let request = browser
        .client
        .post(format!("{}/settings/keys/new", server.base))
        .header("Referer", format!("{}/settings/keys/new", server.base))
        .form(&[("csrf", token.as_str()), ("name", "via referer")]);
    assert_eq!(browser.send(request).status, 303);
    assert_eq!(browser.key_count(), 2);

    // The sign-in form needs the pre-session cookie's token too.
    let stranger = Browser::new(&server);
    let page = stranger.post("/login", &[("csrf", &token), ("username", "root"), ("password", PASSWORD)]);
    page.assert_status(403);
    assert!(stranger.cookie("ibp_session").is_none());
}

#[test]
fn oversized_and_non_form_bodies_get_a_400_page() {
    let (_dir, server) = root_and_bob();
    let browser = signed_in(&server, "root");
    let token = browser.csrf();
    let huge = "x".repeat(20 * 1024);
    let page = browser.post("/settings/keys/new", &[("csrf", &token), ("name", &huge)]);
    page.assert_status(400);
    assert!(page.body.contains("larger than 16 KiB"), "{}", page.body);
    let request = browser
        .client
        .post(format!("{}/settings/keys/new", server.base))
        .header("Origin", &server.base)
        .header("Content-Type", "application/json")
        .body(format!("{{\"csrf\":\"{token}\",\"name\":\"json\"}}"));
    assert_eq!(browser.send(request).status, 400);
    assert_eq!(browser.key_count(), 0);
}

// ----- what pages show -----

#[test]
fn a_key_named_like_a_script_renders_as_text() {
    let (_dir, server) = root_and_bob();
    let browser = signed_in(&server, "root");
    let (id, _) = browser.create_key("<script>alert(1)</script>");
    for path in
        ["/settings/keys".to_owned(), format!("/settings/keys/{id}/revoke"), format!("/settings/keys/{id}/secret")]
    {
        let page = browser.get(&path);
        page.assert_status(200);
        assert!(!page.body.contains("<script>alert(1)"), "{path} renders markup: {}", page.body);
        assert!(page.body.contains("&#60;script&#62;alert(1)&#60;/script&#62;"), "{path}: {}", page.body);
    }
}

#[test]
fn every_page_has_the_security_headers_and_no_inline_script_or_style() {
    let (_dir, server) = root_and_bob();
    let browser = signed_in(&server, "root");
    let (id, _) = browser.create_key("k");
    let anonymous = Browser::new(&server);
    let pages = [
        anonymous.get("/login"),
        anonymous.get("/setup/nope"),
        anonymous.post("/login", &[]),
        browser.get("/settings/keys"),
        browser.get("/settings/keys/new"),
        browser.get(&format!("/settings/keys/{id}/secret")),
        browser.get(&format!("/settings/keys/{id}/revoke")),
        browser.get("/settings/users"),
        browser.get("/settings/audit"),
        browser.get("/settings/profile"),
        browser.get("/settings/no-such-page"),
        browser.get("/settings/keys/key_AAAAAAAAAAAAAAAA/revoke"),
    ];
    for page in &pages {
        let csp = page.header("content-security-policy").unwrap_or_default();
        assert!(csp.starts_with("default-src 'self'"), "CSP {csp:?} on {}", page.body);
        assert_eq!(page.header("x-frame-options").as_deref(), Some("DENY"));
        assert_eq!(page.header("x-content-type-options").as_deref(), Some("nosniff"));
        assert_eq!(page.header("referrer-policy").as_deref(), Some("same-origin"));
        assert_eq!(page.header("cache-control").as_deref(), Some("no-store"));
        assert!(page.header("content-type").unwrap_or_default().starts_with("text/html"), "{}", page.body);
        let body = page.body.to_ascii_lowercase();
        assert!(!body.contains("<style") && !body.contains(" style="), "inline style in: {}", page.body);
        assert!(body.matches("<script").count() == body.matches("<script src=\"/assets/").count(), "inline script");
        for handler in [" onclick=", " onload=", " onsubmit=", " onerror=", "javascript:"] {
            assert!(!body.contains(handler), "inline handler {handler}");
        }
    }
    assert_eq!(pages[10].status, 404);
    assert_eq!(pages[11].status, 404);

    let css = anonymous.get("/assets/app.css");
    css.assert_status(200);
    assert_eq!(css.header("content-type").as_deref(), Some("text/css; charset=utf-8"));
    let js = anonymous.get("/assets/copy.js");
    assert_eq!(js.header("content-type").as_deref(), Some("text/javascript; charset=utf-8"));
    assert_eq!(js.header("x-content-type-options").as_deref(), Some("nosniff"));
    anonymous.get("/assets/../Cargo.toml").assert_status(404);
    anonymous.get("/assets/nope.css").assert_status(404);
}

#[test]
fn signed_out_visitors_are_sent_to_sign_in() {
    let (_dir, server) = root_and_bob();
    let browser = Browser::new(&server);
    for path in
        ["/settings", "/settings/keys", "/settings/keys/new", "/settings/users", "/settings/audit", "/settings/profile"]
    {
        let page = browser.get(path);
        if path == "/settings" {
            // The bare prefix redirects to the list, which then redirects to sign-in.
            page.assert_redirect("/settings/keys");
        } else {
            page.assert_redirect("/login");
        }
    }
    // A made-up session cookie is cleared on the way.
    browser.set_cookie("ibp_session", &"A".repeat(43));
    let page = browser.get("/settings/keys");
    page.assert_redirect("/login");
    assert!(page.set_cookie("ibp_session").is_some_and(|c| c.contains("Max-Age=0")), "stale cookie cleared");
}

// ----- keys -----

#[test]
fn the_secret_is_shown_once_with_no_store_and_works_as_a_bearer_key() {
    let (_dir, server) = root_and_bob();
    let browser = signed_in(&server, "root");
    let created = browser.post(
        "/settings/keys/new",
        &[
            ("csrf", &browser.csrf()),
            ("name", "deploy"),
            ("per_hour", "100"),
            ("per_day", "1,000"),
            ("expires", "30d"),
            ("scopes", "orders:read, orders:write"),
            ("scope_keys_read", "on"),
        ],
    );
    let location = created.location();
    assert!(location.starts_with("/settings/keys/key_") && location.ends_with("/secret"), "{location}");

    let shown = browser.get(&location);
    shown.assert_status(200);
    assert_eq!(shown.header("cache-control").as_deref(), Some("no-store"));
    let secret = shown.secret().expect("#new-secret holds the secret");
    assert!(secret.starts_with("ibp_") && secret.len() == 50, "{secret}");
    assert!(shown.body.contains("id=\"copy-secret\"") && shown.body.contains("<script src=\"/assets/copy.js\">"));
    assert!(shown.body.contains("id=\"secret-warning\"") && shown.body.contains("will not be shown again"));
    assert!(shown.body.contains("readonly"));
    assert_eq!(bearer_status(&server, &secret), 200);

    // Reloading shows it no more, and the list never shows more than start…end.
    let again = browser.get(&location);
    again.assert_status(200);
    assert!(again.body.contains("id=\"secret-gone\"") && !again.body.contains(&secret), "{}", again.body);
    let list = browser.get("/settings/keys");
    assert!(!list.body.contains(&secret));
    assert!(list.body.contains(&format!("{}…{}", &secret[..8], &secret[46..])), "start…end in the list");
    for shown in ["100/h · 1,000/d", "orders:read", "orders:write", "keys:read", "badge-active", "Never"] {
        assert!(list.body.contains(shown), "the list shows {shown}: {}", list.body);
    }
    let me: serde_json::Value = server.get("/v1/me", Some(&secret)).json().expect("json");
    assert_eq!(me["key"]["scopes"], serde_json::json!(["keys:read", "orders:read", "orders:write"]));
    assert_eq!(me["key"]["rate_limit"], serde_json::json!({"per_hour": 100, "per_day": 1000}));
    assert!(me["key"]["expires_at"].is_string());

    // Another browser of the same user cannot pick up a waiting secret either.
    let (id, _) = browser.create_key("second");
    let other = signed_in(&server, "root");
    let page = other.get(&format!("/settings/keys/{id}/secret"));
    assert!(page.secret().is_none() && page.body.contains("id=\"secret-gone\""));
}

#[test]
fn create_form_errors_are_in_words_and_keep_what_was_typed() {
    let (_dir, server) = root_and_bob();
    let browser = signed_in(&server, "root");
    let page = browser.post(
        "/settings/keys/new",
        &[
            ("csrf", &browser.csrf()),
            ("name", "  "),
            ("per_hour", "lots"),
            ("per_day", "12"),
            ("expires", "tomorrow"),
            ("scopes", "orders:read Bad-Scope"),
            ("scope_keys_write", "on"),
        ],
    );
    page.assert_status(422);
    for message in [
        "Give the key a name",
        "The per-hour limit must be a whole number from 1 to 1,000,000,000",
        "Choose when the key expires from the list.",
        "“Bad-Scope” is not a scope.",
    ] {
        assert!(page.body.contains(message), "missing {message:?}: {}", page.body);
    }
    assert!(page.body.contains("class=\"form-error\""));
    assert!(page.body.contains("value=\"lots\"") && page.body.contains("value=\"12\""));
    assert!(page.body.contains("value=\"orders:read Bad-Scope\""));
    assert!(page.body.contains("name=\"scope_keys_write\" value=\"on\" checked"));
    assert!(page.body.contains("aria-invalid=\"true\""));
    assert_eq!(browser.key_count(), 0);
}

#[test]
fn revoking_through_the_confirmation_page_makes_the_key_answer_403() {
    let (_dir, server) = root_and_bob();
    let browser = signed_in(&server, "root");
    let (id, secret) = browser.create_key("to revoke");
    let list = browser.get("/settings/keys");
    assert!(list.body.contains("class=\"dropdown key-menu\"") && list.body.contains("class=\"rotate-form\""));
    assert!(
        list.body.contains(&format!("class=\"menu-item menu-danger revoke-link\" href=\"/settings/keys/{id}/revoke\""))
    );

    let confirm = browser.get(&format!("/settings/keys/{id}/revoke"));
    confirm.assert_status(200);
    assert!(confirm.body.contains("id=\"confirm-revoke\""), "{}", confirm.body);
    assert_eq!(bearer_status(&server, &secret), 200, "showing the confirmation changes nothing");

    let done = browser.post(&format!("/settings/keys/{id}/revoke"), &[("csrf", &confirm.csrf())]);
    done.assert_redirect("/settings/keys?notice=key_revoked");
    assert_eq!(bearer_status(&server, &secret), 403);
    let list = browser.get("/settings/keys?notice=key_revoked");
    assert!(list.body.contains("data-status=\"revoked\"") && list.body.contains("class=\"flash flash-notice\""));
    assert!(!list.body.contains("key-menu"), "a revoked key has no menu");
}

#[test]
fn rotation_shows_the_new_secret_once_and_honours_the_grace_period() {
    let (_dir, server) = root_and_bob();
    let browser = signed_in(&server, "root");
    let (id, old_secret) = browser.create_key("rotating");

    let rotated =
        browser.post(&format!("/settings/keys/{id}/rotate"), &[("csrf", &browser.csrf()), ("grace_seconds", "3600")]);
    let location = rotated.location();
    assert!(location.ends_with("/secret") && !location.contains(&id), "{location}");
    let shown = browser.get(&location);
    let new_secret = shown.secret().expect("new secret");
    assert!(shown.body.contains(&id) && shown.body.contains("keeps working until"), "{}", shown.body);
    assert_eq!(bearer_status(&server, &new_secret), 200);
    assert_eq!(bearer_status(&server, &old_secret), 200, "the old key works during the grace period");
    assert!(browser.get(&location).secret().is_none());

    // A key already rotating cannot be rotated again: said in words, nothing changes.
    let again =
        browser.post(&format!("/settings/keys/{id}/rotate"), &[("csrf", &browser.csrf()), ("grace_seconds", "0")]);
    again.assert_status(409);
    assert!(again.body.contains("class=\"flash flash-error\"") && again.body.contains("already been rotated"));
    assert_eq!(bearer_status(&server, &old_secret), 200);

    // Rotating without grace stops the old key at once.
    let new_id = location.trim_start_matches("/settings/keys/").trim_end_matches("/secret").to_owned();
    let now =
        browser.post(&format!("/settings/keys/{new_id}/rotate"), &[("csrf", &browser.csrf()), ("grace_seconds", "0")]);
    let newest = browser.get(&now.location());
    assert!(newest.body.contains("has stopped working"), "{}", newest.body);
    assert_eq!(bearer_status(&server, &new_secret), 403);
    assert_eq!(bearer_status(&server, &newest.secret().expect("secret")), 200);
}

// ----- who may see what -----

#[test]
fn a_member_cannot_open_users_or_another_users_key() {
    let (_dir, server) = root_and_bob();
    let root = signed_in(&server, "root");
    let (root_key, root_secret) = root.create_key("root's key");
    let bob = signed_in(&server, "bob");
    let token = bob.csrf();

    for path in [
        "/settings/users".to_owned(),
        format!("/settings/keys/{root_key}/revoke"),
        format!("/settings/keys/{root_key}/secret"),
    ] {
        let page = bob.get(&path);
        page.assert_status(404);
        assert!(page.body.contains("id=\"not-found\""), "{path}: {}", page.body);
    }
    bob.post(&format!("/settings/keys/{root_key}/revoke"), &[("csrf", &token)]).assert_status(404);
    bob.post(&format!("/settings/keys/{root_key}/rotate"), &[("csrf", &token)]).assert_status(404);
    bob.post("/settings/users", &[("csrf", &token), ("username", "eve"), ("password", PASSWORD)]).assert_status(404);
    let root_id =
        attribute_after(&root.get("/settings/users").body, "data-username=\"root\"", "data-user-id").expect("id");
    bob.post(&format!("/settings/users/{root_id}/disable"), &[("csrf", &token)]).assert_status(404);

    assert_eq!(bearer_status(&server, &root_secret), 200);
    assert!(!bob.get("/settings/keys").body.contains(&root_key));
    root.get("/settings/users").assert_status(200);
}

#[test]
fn the_audit_log_shows_members_their_own_events_and_admins_everything() {
    let (_dir, server) = root_and_bob();
    let root = signed_in(&server, "root");
    let (root_key, _) = root.create_key("audited");
    let bob = signed_in(&server, "bob");
    let (bob_key, _) = bob.create_key("bob's");

    let mine = bob.get("/settings/audit");
    mine.assert_status(200);
    assert!(mine.body.contains("id=\"audit-table\""));
    assert!(mine.body.contains(&bob_key) && !mine.body.contains(&root_key), "{}", mine.body);
    assert!(mine.body.contains("data-action=\"key.created\"") && mine.body.contains("data-action=\"login\""));

    let all = root.get("/settings/audit");
    assert!(all.body.contains(&bob_key) && all.body.contains(&root_key));
    // Newest first: bob's key came after root's.
    assert!(all.body.find(&bob_key) < all.body.find(&root_key));
    assert!(all.body.contains(">bob</td>") && all.body.contains(">root</td>"));
}

// ----- users, sessions, passwords -----

#[test]
fn logout_ends_the_session_and_clears_the_cookie() {
    let (_dir, server) = root_and_bob();
    let browser = signed_in(&server, "bob");
    let old = browser.cookie("ibp_session").expect("session");
    let page = browser.post("/logout", &[("csrf", &browser.csrf())]);
    page.assert_redirect("/login?notice=signed_out");
    assert!(page.set_cookie("ibp_session").is_some_and(|c| c.contains("Max-Age=0")), "cookie cleared");
    assert!(browser.cookie("ibp_session").is_none());
    assert!(browser.get("/login?notice=signed_out").body.contains("You have signed out."));

    // The old cookie is worthless now.
    let replay = Browser::new(&server);
    replay.set_cookie("ibp_session", &old);
    replay.get("/settings/keys").assert_redirect("/login");
}

#[test]
fn admins_add_disable_and_enable_users_and_disabling_ends_sessions() {
    let (_dir, server) = root_and_bob();
    let root = signed_in(&server, "root");
    let bob = signed_in(&server, "bob");
    let (_, bob_secret) = bob.create_key("bob's");

    let users = root.get("/settings/users");
    assert!(users.body.contains("id=\"users-table\"") && users.body.contains("id=\"add-user-form\""));
    let bob_id = attribute_after(&users.body, "data-username=\"bob\"", "data-user-id").expect("bob's row");
    let root_id = attribute_after(&users.body, "data-username=\"root\"", "data-user-id").expect("root's row");
    assert!(users.body.contains("You cannot disable yourself"));

    root.post(&format!("/settings/users/{bob_id}/disable"), &[("csrf", &root.csrf())])
        .assert_redirect("/settings/users?notice=user_disabled");
    bob.get("/settings/keys").assert_redirect("/login");
    assert_eq!(bearer_status(&server, &bob_secret), 403);
    let again = Browser::new(&server);
    let form = again.get("/login");
    let page = again.post("/login", &[("csrf", &form.csrf()), ("username", "bob"), ("password", PASSWORD)]);
    assert!(page.status == 422 && page.body.contains(MISMATCH));

    // Nobody can disable themself.
    let refused = root.post(&format!("/settings/users/{root_id}/disable"), &[("csrf", &root.csrf())]);
    refused.assert_status(409);
    assert!(refused.body.contains("You cannot disable your own account."), "{}", refused.body);
    root.get("/settings/keys").assert_status(200);

    root.post(&format!("/settings/users/{bob_id}/enable"), &[("csrf", &root.csrf())])
        .assert_redirect("/settings/users?notice=user_enabled");
    assert_eq!(bearer_status(&server, &bob_secret), 200);
    signed_in(&server, "bob");

    // Adding: bad input is explained, a good one can sign in.
    let token = root.csrf();
    let page = root.post("/settings/users", &[("csrf", &token), ("username", "Carol"), ("password", "short")]);
    page.assert_status(422);
    assert!(
        page.body.contains("A username must be") && page.body.contains("The temporary password must be at least 8")
    );
    assert!(
        page.body.contains("value=\"Carol\"") && !page.body.contains("value=\"short\""),
        "the password is not echoed"
    );
    root.post(
        "/settings/users",
        &[("csrf", &token), ("username", "carol"), ("password", PASSWORD), ("is_admin", "on")],
    )
    .assert_redirect("/settings/users?notice=user_added");
    let taken = root.post("/settings/users", &[("csrf", &token), ("username", "carol"), ("password", PASSWORD)]);
    assert!(taken.status == 422 && taken.body.contains("already exists"), "{}", taken.body);
    let carol = signed_in(&server, "carol");
    carol.get("/settings/users").assert_status(200);
}

#[test]
fn a_form_that_is_not_utf8_is_refused_and_changes_nothing() {
    let (_dir, server) = root_and_bob();
    let browser = signed_in(&server, "bob");
    let before = browser.get("/settings/keys").body;
    let body = format!("csrf={}&name=%FF%FE&expires=never", browser.csrf());
    let request = browser
        .client
        .post(format!("{}/settings/keys/new", browser.base))
        .header("Origin", browser.base.clone())
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body);
    let page = browser.send(request);
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(page.body.contains("not valid UTF-8"), "{}", page.body);
    assert_eq!(browser.get("/settings/keys").body, before, "no key was made");
}

#[test]
fn guessing_the_current_password_is_throttled_like_a_sign_in_and_audited() {
    let (_dir, server) = root_and_bob();
    let browser = signed_in(&server, "bob");
    let token = browser.csrf();
    let change = |current: &str| {
        browser.post(
            "/settings/profile/password",
            &[
                ("csrf", &token),
                ("current_password", current),
                ("new_password", "x".repeat(12).as_str()),
                ("repeat_password", "x".repeat(12).as_str()),
            ],
        )
    };
    for guess in 0..5 {
        let page = change(&format!("guess {guess}"));
        assert!(page.status == 422 && page.body.contains("That is not your current password."), "{}", page.body);
    }
    // A session holder cannot go on guessing, not even with the right password.
    let page = change(PASSWORD);
    assert_eq!(page.status, 429, "{}", page.body);
    assert!(page.header("retry-after").is_some_and(|s| s.parse::<u64>().is_ok_and(|s| s > 0)), "Retry-After");
    assert!(page.body.contains("Too many wrong passwords"), "{}", page.body);
    // It is the same secret a sign-in guesses: that is paused too.
    let login = Browser::new(&server);
    let form = login.get("/login");
    let refused = login.post("/login", &[("csrf", &form.csrf()), ("username", "bob"), ("password", PASSWORD)]);
    assert_eq!(refused.status, 429, "{}", refused.body);
    // And each wrong guess is in bob's audit log.
    let audit = browser.get("/settings/audit");
    assert_eq!(audit.body.matches("Failed sign-in").count(), 5, "{}", audit.body);
}

#[test]
fn changing_the_password_starts_a_fresh_session_and_ends_the_others() {
    let (_dir, server) = root_and_bob();
    let browser = signed_in(&server, "bob");
    let elsewhere = signed_in(&server, "bob");
    let old_cookie = browser.cookie("ibp_session").expect("session");
    let token = browser.csrf();
    let new_password = "a brand new passphrase";

    let change = |current: &str, new: &str, repeat: &str| {
        browser.post(
            "/settings/profile/password",
            &[("csrf", &token), ("current_password", current), ("new_password", new), ("repeat_password", repeat)],
        )
    };
    let page = change("wrong", new_password, new_password);
    assert!(page.status == 422 && page.body.contains("That is not your current password."), "{}", page.body);
    let page = change(PASSWORD, new_password, "different");
    assert!(page.status == 422 && page.body.contains("The two new passwords do not match."));
    let page = change(PASSWORD, "short", "short");
    assert!(page.status == 422 && page.body.contains("The new password must be at least 8"), "{}", page.body);

    change(PASSWORD, new_password, new_password).assert_redirect("/settings/profile?notice=password_changed");
    let fresh = browser.cookie("ibp_session").expect("a new session cookie");
    assert_ne!(fresh, old_cookie);
    assert!(browser.get("/settings/profile?notice=password_changed").body.contains("Your password was changed."));
    elsewhere.get("/settings/keys").assert_redirect("/login");
    let replay = Browser::new(&server);
    replay.set_cookie("ibp_session", &old_cookie);
    replay.get("/settings/keys").assert_redirect("/login");
    Browser::new(&server).sign_in("bob", new_password);
}
