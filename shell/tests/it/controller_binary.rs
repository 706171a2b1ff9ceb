//! The `flagger` binary's command line: Flagger's single-dash flags, `-version`, and a one-line
//! cause with a non-zero exit for anything it cannot run with.

use std::process::Command;

fn flagger(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_flagger"))
        .args(args)
        .env_remove("KUBECONFIG")
        .env("HOME", std::env::temp_dir())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn version_prints_the_version() {
    for flag in ["-version", "--version"] {
        let (code, out, _) = flagger(&[flag]);
        assert_eq!(code, 0);
        assert_eq!(out.trim(), env!("CARGO_PKG_VERSION"));
    }
}

#[test]
fn unknown_or_invalid_flags_fail_with_one_line() {
    for args in [
        &["-no-such-flag=1"][..],
        &["-log-level=loud"][..],
        &["-mesh-provider=linkerdd"][..],
        &["run", "-port=notanumber"][..],
    ] {
        let (code, _, err) = flagger(args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("flagger: "), "{err}");
    }
}

#[test]
fn run_is_the_default_and_reports_a_missing_cluster() {
    // Valid Go-style flags, but no kubeconfig and no in-cluster environment: a clean failure.
    let (code, _, err) = flagger(&[
        "-metrics-server=http://127.0.0.1:9",
        "-enable-config-tracking=false",
        "-port=0",
        "-kubeconfig=/nonexistent/kubeconfig",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("kubeconfig"), "{err}");
}

#[test]
fn crd_prints_the_three_crds() {
    let (code, out, _) = flagger(&["crd"]);
    assert_eq!(code, 0);
    for name in [
        "canaries.flagger.app",
        "metrictemplates.flagger.app",
        "alertproviders.flagger.app",
    ] {
        assert!(out.contains(&format!("name: {name}")), "{name}");
    }
}

/// Every request to the API server names the operator (`flagger/<version>`), so audit logs and
/// priority-and-fairness rules can tell it apart.
#[test]
fn requests_carry_the_flagger_user_agent() {
    use std::io::{BufRead, BufReader};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let dir = std::env::temp_dir().join(format!("flagger-ua-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:{port}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\nusers:\n- name: u\n  user: {{}}\n"
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_flagger"))
        .arg(format!("-kubeconfig={}", kubeconfig.display()))
        .args(["-port=0", "-listen-address=127.0.0.1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (stream, _) = listener.accept().unwrap();
    let mut headers = Vec::new();
    for line in BufReader::new(stream).lines() {
        let line = line.unwrap();
        if line.is_empty() {
            break;
        }
        headers.push(line.to_ascii_lowercase());
    }
    let _ = child.kill();
    let _ = child.wait();
    let expected = format!("user-agent: flagger/{}", env!("CARGO_PKG_VERSION"));
    assert!(headers.contains(&expected), "{headers:?}");
}
