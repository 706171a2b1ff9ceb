//! `flagger replay --output html` rendered by a real browser (headless Debian Chromium): the
//! page's own report of what the browser laid out (`<pre id="drawn">`) must show every series
//! drawn with a real size and every axis labelled. Ignored by a plain `cargo test` (it needs
//! Chromium); `tests/run.sh` runs it, and `.ci/run` installs Chromium.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn chromium() -> String {
    std::env::var("FLAGGER_CHROMIUM").unwrap_or_else(|_| "chromium".to_string())
}

/// Runs `flagger replay ARGS --output html` as a user would, into a file.
fn render(name: &str, args: &[&str]) -> PathBuf {
    let out = Command::new(env!("CARGO_BIN_EXE_flagger"))
        .arg("replay")
        .args(args)
        .args(["--output", "html"])
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(out.status.code().is_some_and(|c| c < 2), "{out:?}");
    let dir = std::env::temp_dir().join(format!("flagger-chart-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(name);
    std::fs::write(&file, &out.stdout).unwrap();
    file
}

/// What the browser drew, as the page reports it.
fn drawn(page: &Path) -> Value {
    let profile = page.with_extension("profile");
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1000,1400",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap_or_else(|e| panic!("{}: {e} (install Debian's chromium)", chromium()));
    let dom = String::from_utf8_lossy(&out.stdout);
    let start = dom
        .find("<pre id=\"drawn\"")
        .and_then(|i| dom[i..].find('>').map(|j| i + j + 1))
        .unwrap_or_else(|| panic!("no report in the rendered page: {dom}"));
    let end = start + dom[start..].find("</pre>").unwrap();
    serde_json::from_str(&dom[start..end].replace("&quot;", "\""))
        .unwrap_or_else(|e| panic!("{e}: {}", &dom[start..end]))
}

fn series<'a>(d: &'a Value, id: &str) -> &'a Value {
    d["series"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("no series {id} drawn: {d}"))
}

fn labels(d: &Value) -> Vec<String> {
    d["labels"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["width"].as_f64().unwrap() > 10.0)
        .map(|l| l["text"].as_str().unwrap().to_string())
        .collect()
}

#[test]
#[ignore = "needs headless Chromium; tests/run.sh runs it"]
fn a_rollback_is_drawn_with_weights_metrics_events_and_failed_checks() {
    let page = render("rollback.html", &["fixtures/traces/rollback-errors.json"]);
    let d = drawn(&page);
    let name = "rollback-errors.json";
    let weight = series(&d, &format!("weight:{name}"));
    assert!(weight["width"].as_f64().unwrap() > 500.0, "{d}");
    assert!(weight["height"].as_f64().unwrap() > 5.0, "{d}");
    // Every event of the run is a marker.
    let run = flagger_sim::replay(
        &flagger_sim::Trace::load(&repo().join("fixtures/traces/rollback-errors.json")).unwrap(),
        &flagger_sim::Options::default(),
    );
    assert_eq!(
        series(&d, &format!("events:{name}"))["marks"],
        run.world.events.len(),
        "{d}"
    );
    // Five analysis steps measured the success rate, each a dot.
    assert_eq!(
        series(&d, &format!("metric request-success-rate:{name}"))["marks"],
        5,
        "{d}"
    );
    let failed = series(&d, &format!("failed checks:{name}"));
    assert!(failed["height"].as_f64().unwrap() > 50.0, "{d}");
    assert!(series(&d, "threshold")["width"].as_f64().unwrap() > 500.0);
    assert!(series(&d, "band")["height"].as_f64().unwrap() > 5.0);
    let l = labels(&d);
    for label in [
        "canary weight (%)",
        "time since start",
        "request-success-rate",
        "request-duration",
        "failed checks",
    ] {
        assert!(l.iter().any(|x| x == label), "{label} not drawn: {l:?}");
    }
}

#[test]
#[ignore = "needs headless Chromium; tests/run.sh runs it"]
fn compare_mode_overlays_both_runs() {
    let canary = std::env::temp_dir().join(format!("flagger-chart-{}-t1.yaml", std::process::id()));
    let spec =
        std::fs::read_to_string(repo().join("fixtures/traces/rollback-errors.json")).unwrap();
    let trace: Value = serde_json::from_str(&spec).unwrap();
    let mut c = trace["canary"].clone();
    c["spec"]["analysis"]["threshold"] = 2.into();
    std::fs::write(&canary, c.to_string()).unwrap();
    let page = render(
        "compare.html",
        &[
            "fixtures/traces/rollback-errors.json",
            "--compare",
            "--canary",
            canary.to_str().unwrap(),
            "--missing-inputs",
            "pass",
        ],
    );
    let d = drawn(&page);
    let right = format!("with {}", canary.display());
    for run in ["original", right.as_str()] {
        assert!(
            series(&d, &format!("weight:{run}"))["width"]
                .as_f64()
                .unwrap()
                > 200.0
        );
        assert!(
            series(&d, &format!("failed checks:{run}"))["height"]
                .as_f64()
                .unwrap()
                > 5.0
        );
    }
    // The re-tuned run stops after two failed checks: fewer measurements than the original.
    let marks = |run: &str| {
        series(&d, &format!("metric request-success-rate:{run}"))["marks"]
            .as_u64()
            .unwrap()
    };
    assert!(marks(&right) < marks("original"), "{d}");
}
