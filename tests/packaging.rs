//! The shipped packaging (SPEC §10) as far as it can run without root or systemd: the
//! production config starts the real server, the nightly backup script makes dated backups
//! beside a running server and keeps the newest N, and the units, the `.deb` recipe and the
//! files they name agree with each other. `packaging/check.sh` covers the rest (building
//! the .deb, `systemd-analyze verify`, the bundle, the offline vendored build).

#[path = "api/helpers.rs"]
mod helpers;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use time::OffsetDateTime;
use time::macros::format_description;

use helpers::*;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

#[track_caller]
fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "expected success, got {:?}; stdout: {}; stderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------------------
// packaging/iblueprint.toml
// ---------------------------------------------------------------------------------------

/// The production config has the documented values, and `serve` accepts every key in it:
/// it starts, answers, logs JSON lines, and stops cleanly.
#[test]
fn production_config_is_valid_and_serve_starts_with_it() {
    let config: toml::Table = read("packaging/iblueprint.toml").parse().expect("packaging/iblueprint.toml is TOML");
    let keys: Vec<&str> = config.keys().map(String::as_str).collect();
    assert_eq!(keys, ["data", "listen", "log_format"], "only these are set; the rest stay defaults");
    assert_eq!(config["listen"].as_str(), Some("127.0.0.1:8080"));
    assert_eq!(config["data"].as_str(), Some("/var/lib/iblueprint/iblueprint.redb"));
    assert_eq!(config["log_format"].as_str(), Some("json"));

    // The real file; --listen and --data override its two machine-specific values.
    let dir = TestDir::new();
    let config_path = repo("packaging/iblueprint.toml");
    let server = dir.start_with(&["--config", config_path.to_str().expect("UTF-8 path")], &[]);
    let health = server.get("/v1/health", None);
    assert_eq!(health.status(), 200);
    let log = server.log();
    assert!(server.stop().success(), "clean stop");
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "the server logged nothing");
    for line in lines {
        let parsed: Result<serde_json::Value, _> = serde_json::from_str(line);
        assert!(parsed.is_ok_and(|v| v.is_object()), "log_format = \"json\" but this line is not JSON: {line}");
    }
}

// ---------------------------------------------------------------------------------------
// packaging/systemd/iblueprint-backup.sh
// ---------------------------------------------------------------------------------------

fn run_backup_script(data: &Path, backups: &Path, keep: &str) -> Output {
    Command::new("sh")
        .arg(repo("packaging/systemd/iblueprint-backup.sh"))
        .env("IBLUEPRINT_BIN", binary())
        .env("IBLUEPRINT_DATA", data)
        .env("IBLUEPRINT_BACKUP_DIR", backups)
        .env("IBLUEPRINT_BACKUP_KEEP", keep)
        .output()
        .expect("run sh")
}

fn today_utc() -> String {
    let format = format_description!("[year]-[month]-[day]");
    OffsetDateTime::now_utc().format(&format).expect("format today")
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read backups dir")
        .map(|e| e.expect("dir entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Beside a running server: today's dated backup appears, holds the data, and only the
/// newest `KEEP` dated files stay; files with other names are never touched; a second run
/// on the same day replaces today's file.
#[test]
fn backup_script_makes_a_dated_backup_and_keeps_the_newest() {
    let dir = TestDir::new();
    dir.add_user("alice");
    let _key = dir.issue_key("alice", &[]);
    let server = dir.start();
    let backups = dir.dir.path().join("backups");
    std::fs::create_dir(&backups).expect("mkdir backups");
    for day in 1..=5 {
        std::fs::write(backups.join(format!("iblueprint-2020-01-0{day}.redb")), "old").expect("write old backup");
    }
    std::fs::write(backups.join("before-upgrade.redb"), "mine").expect("write manual backup");

    let before = today_utc();
    let out = run_backup_script(&dir.data(), &backups, "3");
    let after = today_utc();
    assert_ok(&out);
    let today = if backups.join(format!("iblueprint-{before}.redb")).exists() { before } else { after };
    let todays = format!("iblueprint-{today}.redb");
    assert_eq!(
        names_in(&backups),
        ["before-upgrade.redb", "iblueprint-2020-01-04.redb", "iblueprint-2020-01-05.redb", todays.as_str()],
        "stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("saved 1 users, 1 keys"), "{stdout}");
    assert!(stdout.contains("removed old backup"), "{stdout}");

    // The backup is a data file: the offline commands read it.
    let listed = run_cli(&["users", "list"], Some(&backups.join(&todays)), "");
    assert_ok(&listed);
    assert!(String::from_utf8_lossy(&listed.stdout).contains("alice"));

    // Same day again: replaced, still three dated files.
    assert_ok(&run_backup_script(&dir.data(), &backups, "3"));
    assert_eq!(names_in(&backups).len(), 4);
    assert!(server.stop().success());
}

#[test]
fn backup_script_refuses_a_bad_count_and_skips_a_missing_data_file() {
    let dir = TestDir::new();
    let backups = dir.dir.path().join("backups");
    // (An empty value counts as unset, as for the server's IBLUEPRINT_* variables: 14.)
    for keep in ["0", "x", "-1", "3.5"] {
        let out = run_backup_script(&dir.data(), &backups, keep);
        assert_eq!(out.status.code(), Some(2), "KEEP={keep:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("IBLUEPRINT_BACKUP_KEEP"));
    }
    // A fresh install has no data file until the first user: nothing to do, not a failure.
    let out = run_backup_script(&dir.data(), &backups, "14");
    assert_ok(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing to back up"));
    assert!(!backups.exists());
}

// ---------------------------------------------------------------------------------------
// The units, the .deb recipe and the files they name agree
// ---------------------------------------------------------------------------------------

/// `key=value` settings of a unit file, in order (comments and sections dropped).
fn unit_settings(path: &str) -> Vec<(String, String)> {
    read(path)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

fn setting<'a>(settings: &'a [(String, String)], key: &str) -> Vec<&'a str> {
    settings.iter().filter(|(k, _)| k == key).map(|(_, v)| v.as_str()).collect()
}

#[test]
fn units_and_deb_recipe_agree() {
    let server = unit_settings("packaging/systemd/iblueprint.service");
    let backup = unit_settings("packaging/systemd/iblueprint-backup.service");
    let timer = unit_settings("packaging/systemd/iblueprint-backup.timer");

    assert_eq!(setting(&server, "ExecStart"), ["/usr/bin/iblueprint serve --config /etc/iblueprint/iblueprint.toml"]);
    assert_eq!(setting(&backup, "ExecStart"), ["/usr/lib/iblueprint/iblueprint-backup.sh"]);
    // Same user and state folder, so the backup can read the server's data file.
    for key in ["User", "Group", "StateDirectory", "StateDirectoryMode", "UMask"] {
        assert_eq!(setting(&server, key), setting(&backup, key), "{key} differs between the two services");
    }
    assert_eq!(setting(&server, "User"), ["iblueprint"]);
    assert_eq!(setting(&server, "StateDirectory"), ["iblueprint"]);
    assert_eq!(setting(&backup, "Environment").iter().filter(|e| e.starts_with("IBLUEPRINT_DATA=")).count(), 1);
    assert!(setting(&backup, "Environment").contains(&"IBLUEPRINT_DATA=/var/lib/iblueprint/iblueprint.redb"));
    assert_eq!(setting(&timer, "Persistent"), ["yes"]);
    // The hardening the issue asks for, in both services.
    for (name, unit) in [("iblueprint.service", &server), ("iblueprint-backup.service", &backup)] {
        for (key, value) in [
            ("NoNewPrivileges", "yes"),
            ("CapabilityBoundingSet", ""),
            ("ProtectSystem", "strict"),
            ("ProtectHome", "yes"),
            ("PrivateTmp", "yes"),
            ("PrivateDevices", "yes"),
            ("SystemCallFilter", "@system-service"),
            ("SystemCallArchitectures", "native"),
            ("MemoryDenyWriteExecute", "yes"),
            ("UMask", "0077"),
        ] {
            assert!(setting(unit, key).contains(&value), "{name}: {key}={value} missing");
        }
    }
    assert!(read("packaging/systemd/sysusers.d/iblueprint.conf").lines().any(|l| l.starts_with("u iblueprint ")));

    // The .deb installs what the units run, and every asset exists (target/ is built).
    let manifest: toml::Table = read("Cargo.toml").parse().expect("Cargo.toml");
    let deb = &manifest["package"]["metadata"]["deb"];
    let assets: Vec<(String, String)> = deb["assets"]
        .as_array()
        .expect("assets")
        .iter()
        .map(|a| (a[0].as_str().expect("source").to_owned(), a[1].as_str().expect("destination").to_owned()))
        .collect();
    for (source, destination) in [
        ("target/release/iblueprint", "usr/bin/"),
        ("packaging/iblueprint.toml", "etc/iblueprint/iblueprint.toml"),
        ("packaging/systemd/iblueprint-backup.sh", "usr/lib/iblueprint/iblueprint-backup.sh"),
    ] {
        assert!(assets.iter().any(|(s, d)| s == source && d == destination), "{source} -> {destination} not in assets");
    }
    for (source, _) in assets.iter().filter(|(s, _)| !s.starts_with("target/")) {
        assert!(repo(source).is_file(), "asset {source} does not exist");
    }
    assert_eq!(deb["conf-files"].as_array().and_then(|c| c[0].as_str()), Some("/etc/iblueprint/iblueprint.toml"));
}
