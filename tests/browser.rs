//! End-to-end test of the settings page in a real headless Chromium (Debian's `chromium`,
//! driven through `chromedriver` by the WebDriver client in `browser/webdriver.rs`) against
//! the real binary: first-run setup, keys created, shown once, revoked and rotated through
//! the page, users added, and what a member may not open.
//!
//! Without `chromium` and `chromedriver` the test prints a notice and passes, so `cargo
//! test` works on a fresh laptop; with `CI` set it fails instead (`.ci/run` installs them).
//!
//! With `SCREENSHOTS_DIR` set, the same flow also saves a PNG of each page there
//! (`tests/browser/screenshots.sh OUTDIR` does this), and the browser must be present.

#[path = "api/helpers.rs"]
mod helpers;
#[path = "browser/webdriver.rs"]
mod webdriver;

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use serde_json::Value;

use helpers::{PASSWORD, TestDir, TestServer};
use webdriver::{Binaries, Browser};

/// The browser and its driver, or `None` (after a loud notice) when they are missing
/// outside CI. In CI, or when screenshots were asked for, missing ones fail the test.
fn browser_binaries() -> Option<Binaries> {
    match Binaries::find() {
        Ok(binaries) => Some(binaries),
        Err(missing) => {
            let install = "install them with `apt-get install chromium chromium-driver` (Debian), \
                           or point $CHROMIUM and $CHROMEDRIVER at them";
            if std::env::var_os("CI").is_some() || screenshots_dir().is_some() {
                panic!("the browser tests need Chromium and chromedriver: {missing}; {install}");
            }
            // Straight to stderr, not through `eprintln!`, which the test harness captures
            // and hides for a passing test.
            let bar = "!".repeat(88);
            let _ = writeln!(
                std::io::stderr().lock(),
                "\n{bar}\n!! SKIPPED: the end-to-end browser test did not run: {missing}.\n\
                 !! To run it, {install}.\n!! (With CI set, this is a failure.)\n{bar}\n"
            );
            None
        }
    }
}

fn screenshots_dir() -> Option<PathBuf> {
    std::env::var_os("SCREENSHOTS_DIR").filter(|d| !d.is_empty()).map(PathBuf::from)
}

/// Saves numbered full-page PNGs when `SCREENSHOTS_DIR` is set; does nothing otherwise.
struct Shots {
    dir: Option<PathBuf>,
    taken: usize,
}

impl Shots {
    fn from_env() -> Shots {
        let dir = screenshots_dir();
        if let Some(dir) = &dir {
            std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        }
        Shots { dir, taken: 0 }
    }

    fn take(&mut self, browser: &Browser, name: &str) {
        if let Some(dir) = &self.dir {
            self.taken += 1;
            let path = dir.join(format!("{:02}-{name}.png", self.taken));
            browser.save_screenshot(&path);
            eprintln!("screenshot: {}", path.display());
        }
    }
}

/// The status `GET /v1/me` answers with `secret` as the bearer key, and its body.
fn bearer(server: &TestServer, secret: &str) -> (u16, Value) {
    let response = server.get("/v1/me", Some(secret));
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

#[track_caller]
fn assert_bearer(server: &TestServer, secret: &str, status: u16, what: &str) {
    assert_eq!(bearer(server, secret).0, status, "GET /v1/me with {what}");
}

/// The row of key `id` in the keys table.
fn row(id: &str) -> String {
    format!("tr.key-row[data-key-id=\"{id}\"]")
}

/// On the secret page: the key id from the URL (`/settings/keys/{id}/secret`) and the secret.
#[track_caller]
fn read_secret_page(b: &Browser) -> (String, String) {
    let input = b.wait_for("input#new-secret");
    let path = b.path();
    let id = path
        .strip_prefix("/settings/keys/")
        .and_then(|rest| rest.strip_suffix("/secret"))
        .unwrap_or_else(|| panic!("the secret page is at {path}"))
        .to_owned();
    assert!(id.starts_with("key_"), "key id {id}");
    assert_eq!(input.attribute("readonly").as_deref(), Some("true"), "the secret field is read-only");
    let secret = input.value();
    assert!(secret.starts_with("ibp_") && secret.len() > 30, "a secret in #new-secret, got {secret:?}");
    let warning = b.find("#secret-warning").text();
    assert!(warning.contains("will not be shown again"), "warning: {warning:?}");
    // copy.js runs (CSP allows same-origin scripts) and reveals the copy button.
    b.wait_until("the copy button is shown by copy.js", |b| {
        b.find("#copy-secret").property("hidden") == Some(false.into())
    });
    (id, secret)
}

/// From the keys list: "Create API key", fill the form with `fill`, submit; returns the new
/// key's id and secret, and goes back to the list through "Done".
fn create_key(b: &Browser, name: &str, fill: impl FnOnce(&Browser)) -> (String, String) {
    b.click("#new-key-link");
    b.wait_for("form#create-key-form");
    b.fill("#name", name);
    fill(b);
    b.click("button#create-key");
    let (id, secret) = read_secret_page(b);
    assert_eq!(b.find("h1").text(), "API key created");
    assert!(b.find(".lede").text().contains(name), "the secret page names the key");
    b.click("a#secret-done");
    b.wait_for(&row(&id));
    (id, secret)
}

/// Asserts that the table and every cell of it lie inside its bordered container (the
/// window is 1280 px wide): nothing sticks out past the right border.
#[track_caller]
fn assert_table_fits(b: &Browser, table: &str) {
    let overflow = b.execute(
        "const table = document.querySelector(arguments[0]);
         const wrap = table.closest('.table-wrap').getBoundingClientRect();
         const out = [];
         for (const el of [table, ...table.querySelectorAll('th, td')]) {
           const r = el.getBoundingClientRect();
           if (r.right > wrap.right - 0.5 || r.left < wrap.left + 0.5) {
             out.push(`${el.tagName}.${el.className}: ${r.left}..${r.right} outside ${wrap.left}..${wrap.right}`);
           }
         }
         return out;",
        &[table.into()],
    );
    assert_eq!(overflow, Value::Array(vec![]), "{table} sticks out of its container");
}

/// Opens the "…" menu of key `id` on the keys list.
fn open_key_menu(b: &Browser, id: &str) {
    let menu = format!("{} details.key-menu", row(id));
    assert!(b.try_find(&format!("{menu}[open]")).is_none(), "the menu starts closed");
    b.click(&format!("{menu} > summary"));
    b.wait_for(&format!("{menu}[open]"));
}

/// Rotates key `id` through its "…" menu with the grace period `grace` (seconds), and
/// returns the new key's id and secret from the secret page.
fn rotate(b: &Browser, shots: &mut Shots, id: &str, grace: &str, shot: &str) -> (String, String) {
    open_key_menu(b, id);
    let form = format!("{} form.rotate-form", row(id));
    b.click(&format!("{form} select[name=grace_seconds] option[value=\"{grace}\"]"));
    assert_eq!(b.find(&format!("{form} select[name=grace_seconds]")).value(), grace);
    b.click(&format!("{form} button.rotate-button"));
    let (new_id, secret) = read_secret_page(b);
    assert_ne!(new_id, id, "rotation makes a new key");
    assert_eq!(b.find("h1").text(), "Key rotated");
    shots.take(b, shot);
    (new_id, secret)
}

#[test]
fn the_settings_page_works_end_to_end_in_a_real_browser() {
    let Some(binaries) = browser_binaries() else { return };
    let started = Instant::now();
    let dir = TestDir::new();
    // Usage is written behind every 50 ms, so "last used" shows up on the list promptly.
    let mut server = dir.start_with(&[], &[("IBLUEPRINT_FLUSH_INTERVAL_MS", "50")]);
    let line = server.next_stdout_line();
    assert!(line.starts_with("no users yet: open "), "expected the setup link, got {line:?}");
    let setup_url = line
        .split_whitespace()
        .find(|word| word.contains("/setup/"))
        .unwrap_or_else(|| panic!("no setup link in {line:?}"))
        .to_owned();
    assert!(setup_url.starts_with(&format!("{}/setup/", server.base)), "{setup_url}");

    let b = Browser::start(&binaries);
    let mut shots = Shots::from_env();

    // ----- first run: the setup link creates the admin and signs them in -----
    b.goto(&setup_url);
    b.wait_for("form#setup-form");
    assert_eq!(b.title(), "Create the first admin · iblueprint");
    shots.take(&b, "setup");
    b.fill("#username", "admin");
    b.fill("#password", PASSWORD);
    b.fill("#repeat", PASSWORD);
    b.click("button#create-admin");
    b.wait_for("#keys-empty");
    assert_eq!(b.path(), "/settings/keys?notice=welcome");
    assert!(b.find(".flash-notice").text().contains("you are signed in"));
    assert_eq!(b.find("summary.avatar").text(), "A");
    assert_eq!(b.find("summary.avatar").attribute("title").as_deref(), Some("admin"));
    assert_eq!(b.find("#nav-keys").attribute("aria-current").as_deref(), Some("page"));
    assert!(b.try_find("a#nav-users").is_some(), "the first user is an admin");
    shots.take(&b, "keys-empty");

    // ----- the create form refuses bad input in words, keeping what was typed -----
    b.click("#new-key-link");
    b.wait_for("form#create-key-form");
    shots.take(&b, "create-form");
    b.fill("#per_hour", "lots");
    b.fill("#scopes", "orders:read Bad Scope!");
    b.click("button#create-key");
    b.wait_for("#name[aria-invalid=\"true\"]");
    assert!(b.path().starts_with("/settings/keys/new"), "still on the form: {}", b.path());
    assert!(!b.find("#name-error").text().is_empty(), "the name error is in words");
    assert!(!b.find("#per_hour-error").text().is_empty(), "the limit error is in words");
    assert!(!b.find("#scopes-error").text().is_empty(), "the scopes error is in words");
    assert_eq!(b.find("#per_hour").attribute("aria-invalid").as_deref(), Some("true"));
    assert_eq!(b.find("#per_hour").value(), "lots", "what was typed is kept");
    shots.take(&b, "create-form-errors");

    // ----- a valid key: its secret is shown once, and works -----
    b.fill("#name", "deploy-bot");
    b.fill("#per_hour", "1000");
    b.fill("#scopes", "");
    b.click("button#create-key");
    let (deploy_id, deploy_secret) = read_secret_page(&b);
    assert_eq!(b.find("h1").text(), "API key created");
    shots.take(&b, "secret");
    let (status, me) = bearer(&server, &deploy_secret);
    assert_eq!(status, 200, "the new secret works as a bearer key: {me}");
    assert_eq!(me["key"]["id"], deploy_id.as_str(), "{me}");
    assert_eq!(me["user"]["username"], "admin", "{me}");

    // Reloading never shows it again: not on the page, not in its source.
    b.refresh();
    b.wait_for("#secret-gone");
    assert!(b.try_find("#new-secret").is_none());
    assert!(!b.source().contains(&deploy_secret), "the secret is gone from the page source");
    shots.take(&b, "secret-gone");
    b.click("#secret-gone a.btn");
    b.wait_for(&row(&deploy_id));
    assert!(!b.source().contains(&deploy_secret), "the list never shows the secret");
    assert_eq!(b.find(&format!("{} td.key-limits", row(&deploy_id))).text(), "1,000/h");

    // More keys, so the list has limits, scopes, an expiry and statuses to show.
    let (billing_id, billing_secret) = create_key(&b, "billing-service", |b| {
        b.click("#scope-keys-read");
        b.click("#scope-keys-write");
        b.fill("#per_day", "50000");
    });
    let (ci_id, ci_secret) = create_key(&b, "ci-pipeline", |b| {
        b.click("#expires option[value=\"30d\"]");
        b.fill("#scopes", "orders:read, orders:write");
        b.fill("#per_hour", "100");
        b.fill("#per_day", "2000");
    });
    let (export_id, export_secret) = create_key(&b, "analytics-export", |_| {});
    create_key(&b, "nightly-finance-reports-exporter", |b| {
        b.click("#expires option[value=\"7d\"]");
        b.fill("#scopes", "reports:read invoices:read customers:read reports:read-all-regions-including-archived");
        b.fill("#per_hour", "1000000");
        b.fill("#per_day", "25000000");
    });
    let ci_row = row(&ci_id);
    assert_eq!(b.find(&format!("{ci_row} td.key-limits")).text(), "100/h · 2,000/d");
    let scopes: Vec<String> = b.find_all(&format!("{ci_row} code.scope")).iter().map(|s| s.text()).collect();
    assert_eq!(scopes, ["orders:read", "orders:write"]);
    assert_ne!(b.find(&format!("{ci_row} td.key-expires")).text(), "Never", "ci-pipeline expires");
    let billing_scopes: Vec<String> =
        b.find_all(&format!("{} code.scope", row(&billing_id))).iter().map(|s| s.text()).collect();
    assert_eq!(billing_scopes, ["keys:read", "keys:write"]);

    // A key used once says so, in the singular.
    assert_bearer(&server, &ci_secret, 200, "ci-pipeline");
    b.wait_until("ci-pipeline's last use is on the list", |b| {
        b.refresh();
        b.find(&format!("{ci_row} td.key-last-used")).text().contains("request")
    });
    let last_used = b.find(&format!("{ci_row} td.key-last-used")).text();
    assert!(last_used.ends_with("1 request"), "last used: {last_used:?}");

    // ----- revoke through the "…" menu, with a confirmation -----
    open_key_menu(&b, &deploy_id);
    shots.take(&b, "key-menu-open");
    b.click(&format!("{} a.revoke-link", row(&deploy_id)));
    b.wait_for("form#revoke-form");
    assert_eq!(b.path(), format!("/settings/keys/{deploy_id}/revoke"));
    shots.take(&b, "revoke-confirm");
    assert_bearer(&server, &deploy_secret, 200, "deploy-bot before confirming");
    b.click("button#confirm-revoke");
    b.wait_for(&format!("{}[data-status=\"revoked\"]", row(&deploy_id)));
    assert!(b.find(".flash-notice").text().contains("revoked"));
    assert!(b.try_find(&format!("{} details.key-menu", row(&deploy_id))).is_none(), "no menu on a revoked key");
    assert_bearer(&server, &deploy_secret, 403, "the revoked deploy-bot key");

    // ----- rotate now: the new secret is shown once and works, the old one is refused -----
    let (billing2_id, billing2_secret) = rotate(&b, &mut shots, &billing_id, "0", "secret-rotated");
    assert_ne!(billing2_secret, billing_secret);
    let note = b.find(".rotation-note").text();
    assert!(note.contains("has stopped working") && note.contains(&billing_id), "rotation note: {note:?}");
    assert_bearer(&server, &billing2_secret, 200, "the rotated billing-service key");
    assert_bearer(&server, &billing_secret, 403, "billing-service's old secret");
    b.refresh();
    b.wait_for("#secret-gone");
    assert!(!b.source().contains(&billing2_secret));
    b.click("#nav-keys");
    b.wait_for(&row(&billing2_id));
    assert_eq!(b.find(&row(&billing_id)).attribute("data-status").as_deref(), Some("revoked"));

    // Rotate with a day's grace: both secrets work, the old key shows as rotating.
    let (export2_id, export2_secret) = rotate(&b, &mut shots, &export_id, "86400", "secret-rotated-grace");
    assert!(b.find(".rotation-note").text().contains("keeps working until"));
    assert_bearer(&server, &export2_secret, 200, "the rotated analytics-export key");
    assert_bearer(&server, &export_secret, 200, "analytics-export's old secret during the grace period");
    b.click("a#secret-done");
    b.wait_for(&row(&export2_id));
    assert_eq!(b.find(&row(&export_id)).attribute("data-status").as_deref(), Some("rotating"));
    assert_eq!(b.find_all("tr.key-row").len(), 7, "five keys made, two rotated");
    // Both analytics-export secrets were used once; wait for the usage to be written behind.
    b.wait_until("both analytics-export keys show their one request", |b| {
        b.refresh();
        [&export_id, &export2_id]
            .iter()
            .all(|id| b.find(&format!("{} td.key-last-used", row(id))).text().ends_with("1 request"))
    });
    shots.take(&b, "keys-list");
    assert_table_fits(&b, "table#keys-table");

    // ----- the admin adds a member -----
    b.click("a#nav-users");
    b.wait_for("form#add-user-form");
    b.fill("#new-username", "bob");
    b.fill("#new-password", PASSWORD);
    b.click("button#add-user-button");
    b.wait_for("tr.user-row[data-username=\"bob\"]");
    assert_eq!(b.find("tr.user-row[data-username=\"bob\"]").attribute("data-status").as_deref(), Some("active"));
    assert!(b.find(".flash-notice").text().contains("The user was added"));
    shots.take(&b, "users");

    b.click("a#nav-audit");
    b.wait_for("table#audit-table");
    for action in ["login", "key.created", "key.revoked", "key.rotated", "user.created"] {
        assert!(b.try_find(&format!("tr[data-action=\"{action}\"]")).is_some(), "audit log has {action}");
    }
    shots.take(&b, "audit");

    b.click("a#nav-profile");
    b.wait_for("#profile-username");
    assert_eq!(b.find("#profile-username").text(), "admin");
    shots.take(&b, "profile");

    // ----- sign out through the avatar menu -----
    b.click("details#avatar-menu > summary");
    b.wait_for("details#avatar-menu[open]");
    assert!(b.find("#avatar-menu .menu-header").text().contains("admin"));
    shots.take(&b, "avatar-menu-open");
    b.click("button#sign-out");
    b.wait_for("form#login-form");
    assert!(b.try_find("#avatar-menu").is_none(), "signed out");
    b.goto(&server.url("/settings/keys"));
    b.wait_for("form#login-form");
    assert_eq!(b.path(), "/login", "signed-out visitors are sent to sign in");
    shots.take(&b, "login");

    // ----- the member signs in, and cannot open Users or the admin's keys -----
    b.fill("#username", "bob");
    b.fill("#password", PASSWORD);
    b.click("button#sign-in");
    b.wait_for("#keys-empty");
    assert_eq!(b.path(), "/settings/keys");
    assert_eq!(b.find("summary.avatar").attribute("title").as_deref(), Some("bob"));
    assert!(b.try_find("a#nav-users").is_none(), "no Users link for a member");
    assert!(!b.source().contains(&ci_id), "the member does not see the admin's keys");

    b.goto(&server.url("/settings/users"));
    b.wait_for("#not-found");
    shots.take(&b, "member-not-found");
    for path in [
        format!("/settings/keys/{ci_id}/revoke"),
        format!("/settings/keys/{deploy_id}/revoke"),
        format!("/settings/keys/{ci_id}/secret"),
    ] {
        b.goto(&server.url(&path));
        b.wait_for("#not-found");
        assert!(b.try_find("form#revoke-form").is_none(), "{path}");
        assert!(!b.source().contains("ci-pipeline"), "{path} shows nothing of the admin's key");
    }
    assert_bearer(&server, &ci_secret, 200, "the admin's key, untouched by the member");

    drop(b);
    eprintln!("browser flow took {:.1?}", started.elapsed());
}
