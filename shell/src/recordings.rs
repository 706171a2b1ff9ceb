//! Getting recordings (`-record-traces DIR`) off a cluster whose image has no shell and no `tar`,
//! so `kubectl cp` cannot: the operator serves them read-only over HTTP on a listener of its own,
//! `-recordings-address` (loopback by default), and `flagger recordings` prints them for
//! `kubectl exec`.
//!
//! - `GET /recordings` lists them as JSON (file, namespace, name, bytes, modified);
//! - `GET /recordings/<namespace>.<name>.jsonl` sends one.
//!
//! Only names the recorder itself writes are served: `<namespace>.<name>.jsonl`, a DNS-1123 label
//! and a DNS-1123 subdomain, so no path separator, `..` or percent-escape can name anything
//! outside the directory; only regular files in the directory itself, never through a symlink.
//!
//! A recording contains the Canary specs and every metric and webhook answer. The listener is
//! bound to 127.0.0.1 by default, off the pod network: reaching it takes `kubectl port-forward`
//! (or `kubectl exec` for the subcommand), which the API server authorizes. The `-port` listener
//! answers `/recordings` with a 404 that says where they are (or that recording is off).
//!
//! The recorder appends whole lines while a file is being sent; what is sent ends at the last
//! complete line present when the request arrived, so a fetched file always parses.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;

/// Where the chart mounts the recording volume; the default directory of `flagger recordings`.
pub const CHART_DIR: &str = "/var/lib/flagger/traces";

/// The namespace and name of the Canary whose recording `file` is, if `file` is a name the
/// recorder writes (`<namespace>.<name>.jsonl`); `None` for anything else.
pub fn parse_file_name(file: &str) -> Option<(&str, &str)> {
    let stem = file.strip_suffix(".jsonl")?;
    // A namespace has no dots, so the first one ends it; the Canary's name may have more.
    let (namespace, name) = stem.split_once('.')?;
    (is_dns1123_label(namespace) && is_dns1123_subdomain(name)).then_some((namespace, name))
}

fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

/// One recording in the directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    pub file: String,
    pub namespace: String,
    pub name: String,
    /// The file's size when listed (the recorder may append after).
    pub bytes: u64,
    /// Last modification, RFC 3339 in UTC.
    pub modified: String,
}

/// The recordings in `dir`, by file name. Anything else in it (other names, directories,
/// symlinks) is left out.
pub fn list(dir: &Path) -> std::io::Result<Vec<Entry>> {
    let mut out = Vec::new();
    for item in std::fs::read_dir(dir)? {
        let item = item?;
        let Some(file) = item.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let Some((namespace, name)) = parse_file_name(&file) else {
            continue;
        };
        // DirEntry::metadata does not follow symlinks.
        let meta = item.metadata()?;
        if !meta.file_type().is_file() {
            continue;
        }
        let modified = meta
            .modified()
            .ok()
            .and_then(|t| jiff::Timestamp::try_from(t).ok())
            .map(|t| t.to_string())
            .unwrap_or_default();
        out.push(Entry {
            namespace: namespace.into(),
            name: name.into(),
            bytes: meta.len(),
            modified,
            file,
        });
    }
    out.sort_by(|a, b| a.file.cmp(&b.file));
    Ok(out)
}

/// Why a recording cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{0:?} is not a recording's name: recordings are named <namespace>.<name>.jsonl")]
    BadName(String),
    #[error("no recording {0}")]
    NotFound(String),
    #[error("reading recording {0}: {1}")]
    Io(String, std::io::Error),
}

/// A recording opened for reading, with the length that ends at its last complete line.
#[derive(Debug)]
pub struct Opened {
    pub file: std::fs::File,
    pub len: u64,
}

/// Opens `dir/file` if `file` is a recording's name and a regular file (not a symlink).
pub fn open(dir: &Path, file: &str) -> Result<Opened, OpenError> {
    if parse_file_name(file).is_none() {
        return Err(OpenError::BadName(file.to_string()));
    }
    let path: PathBuf = dir.join(file);
    let io = |e: std::io::Error| OpenError::Io(file.to_string(), e);
    match std::fs::symlink_metadata(&path) {
        Ok(m) if m.file_type().is_file() => {}
        Ok(_) => return Err(OpenError::NotFound(file.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(OpenError::NotFound(file.to_string()));
        }
        Err(e) => return Err(io(e)),
    }
    let mut f = std::fs::File::open(&path).map_err(io)?;
    let meta = f.metadata().map_err(io)?;
    if !meta.file_type().is_file() {
        return Err(OpenError::NotFound(file.to_string()));
    }
    let len = complete_len(&mut f, meta.len()).map_err(io)?;
    f.seek(SeekFrom::Start(0)).map_err(io)?;
    Ok(Opened { file: f, len })
}

/// The length of the first `len` bytes of `f` up to and including their last newline: a line
/// the recorder is still writing is left out.
pub fn complete_len(f: &mut (impl Read + Seek), len: u64) -> std::io::Result<u64> {
    const BLOCK: u64 = 64 * 1024;
    let mut end = len;
    let mut buf = vec![0u8; BLOCK as usize];
    while end > 0 {
        let start = end.saturating_sub(BLOCK);
        let chunk = &mut buf[..(end - start) as usize];
        f.seek(SeekFrom::Start(start))?;
        f.read_exact(chunk)?;
        if let Some(i) = chunk.iter().rposition(|&c| c == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// Copies the complete lines of the recording `file` in `dir` to `out`; the number of bytes.
pub fn copy_to(dir: &Path, file: &str, out: &mut impl std::io::Write) -> Result<u64, OpenError> {
    let opened = open(dir, file)?;
    let io = |e: std::io::Error| OpenError::Io(file.to_string(), e);
    let n = std::io::copy(&mut opened.file.take(opened.len), out).map_err(io)?;
    out.flush().map_err(io)?;
    Ok(n)
}

/// The recordings listener: `GET /recordings` and `GET /recordings/<file>` from `dir`.
pub fn router(dir: PathBuf) -> Router {
    Router::new()
        .route("/recordings", get(serve_list))
        .route("/recordings/", get(serve_list))
        .route("/recordings/{file}", get(serve_file))
        .fallback(|| async {
            text(
                StatusCode::NOT_FOUND,
                "not found: GET /recordings lists the recordings, GET /recordings/<namespace>.<name>.jsonl sends one\n".into(),
            )
        })
        .with_state(dir)
}

/// What the `-port` listener answers under `/recordings`: where they are served instead, or
/// that recording is off.
pub fn hint_router(hint: String) -> Router {
    let answer = move || {
        let hint = hint.clone();
        async move { text(StatusCode::NOT_FOUND, hint) }
    };
    Router::new()
        .route("/recordings", get(answer.clone()))
        .route("/recordings/{*rest}", get(answer))
}

/// The body of [`hint_router`]'s answers.
pub fn hint(recordings_address: Option<&str>) -> String {
    match recordings_address {
        None => "trace recording is off: run the operator with -record-traces DIR (chart: --set recordTraces.enabled=true)\n".into(),
        Some(address) => format!(
            "recordings are served on {address} only, not on this port: kubectl port-forward to that port, or kubectl exec ... -- /flagger recordings\n"
        ),
    }
}

fn text(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

#[derive(Serialize)]
struct Listing {
    recordings: Vec<Entry>,
}

async fn serve_list(State(dir): State<PathBuf>) -> Response {
    match tokio::task::spawn_blocking(move || list(&dir)).await {
        Ok(Ok(recordings)) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::to_string_pretty(&Listing { recordings }).unwrap_or_default() + "\n",
        )
            .into_response(),
        Ok(Err(e)) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("listing the recordings failed: {e}\n"),
        ),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("listing the recordings failed: {e}\n"),
        ),
    }
}

async fn serve_file(State(dir): State<PathBuf>, UrlPath(file): UrlPath<String>) -> Response {
    let name = file.clone();
    let opened = match tokio::task::spawn_blocking(move || open(&dir, &name)).await {
        Ok(r) => r,
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    };
    let Opened { file: f, len } = match opened {
        Ok(o) => o,
        Err(e @ OpenError::BadName(_)) => return text(StatusCode::BAD_REQUEST, format!("{e}\n")),
        Err(e @ OpenError::NotFound(_)) => {
            return text(
                StatusCode::NOT_FOUND,
                format!("{e} (GET /recordings lists them)\n"),
            );
        }
        Err(e) => {
            tracing::warn!(error = %e, "serving a recording failed");
            return text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n"));
        }
    };
    // Reads in blocking tasks, 64 KiB at a time, exactly `len` bytes.
    let chunks = futures::stream::try_unfold(f.take(len), |reader| async move {
        let (reader, chunk) = tokio::task::spawn_blocking(move || {
            let mut reader = reader;
            let mut buf = vec![0u8; 64 * 1024];
            let n = reader.read(&mut buf)?;
            buf.truncate(n);
            Ok::<_, std::io::Error>((reader, buf))
        })
        .await
        .map_err(std::io::Error::other)??;
        if chunk.is_empty() {
            return Ok::<_, std::io::Error>(None);
        }
        Ok(Some((Bytes::from(chunk), reader)))
    });
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/jsonl".to_string()),
            (header::CONTENT_LENGTH, len.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file}\""),
            ),
        ],
        Body::from_stream(chunks),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;

    struct Dir(PathBuf);

    impl Dir {
        fn new(name: &str) -> Dir {
            let d = std::env::temp_dir()
                .join(format!("flagger-recordings-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(&d).unwrap();
            Dir(d)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    async fn get(app: &Router, uri: &str) -> (StatusCode, Option<String>, Vec<u8>) {
        let resp = app
            .clone()
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let ctype = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_string());
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, ctype, body.to_vec())
    }

    #[test]
    fn only_names_the_recorder_writes_are_recordings() {
        assert_eq!(
            parse_file_name("test.podinfo.jsonl"),
            Some(("test", "podinfo"))
        );
        assert_eq!(
            parse_file_name("team-a.api.v2.jsonl"),
            Some(("team-a", "api.v2"))
        );
        for bad in [
            "",
            ".jsonl",
            "podinfo.jsonl",
            "test.podinfo",
            "test.podinfo.json",
            "test..jsonl",
            "Test.podinfo.jsonl",
            "test.Podinfo.jsonl",
            "-test.podinfo.jsonl",
            "test.podinfo-.jsonl",
            "test..podinfo.jsonl",
            "test.pod..info.jsonl",
            "..jsonl",
            "...jsonl",
            "../test.podinfo.jsonl",
            "test/../../etc.passwd.jsonl",
            "test.podinfo.jsonl/",
            "/etc/passwd",
            "..%2f..%2fetc.passwd.jsonl",
            "test.pod info.jsonl",
            "test.pod_info.jsonl",
            "test.podinfo\n.jsonl",
            "test.pödinfo.jsonl",
        ] {
            assert_eq!(parse_file_name(bad), None, "{bad:?}");
        }
        let long_ns = format!("{}.podinfo.jsonl", "a".repeat(64));
        assert_eq!(parse_file_name(&long_ns), None);
        let max_ns = format!("{}.podinfo.jsonl", "a".repeat(63));
        assert!(parse_file_name(&max_ns).is_some());
    }

    #[test]
    fn a_line_still_being_written_is_left_out() {
        let mut c = std::io::Cursor::new(b"{\"a\":1}\n{\"b\":2}\n{\"c\":".to_vec());
        assert_eq!(complete_len(&mut c, 21).unwrap(), 16);
        assert_eq!(complete_len(&mut c, 16).unwrap(), 16);
        assert_eq!(complete_len(&mut c, 15).unwrap(), 8);
        assert_eq!(complete_len(&mut c, 7).unwrap(), 0);
        assert_eq!(complete_len(&mut c, 0).unwrap(), 0);
        // A line longer than the block read backwards at a time.
        let mut long = b"x\n".to_vec();
        long.extend(std::iter::repeat_n(b'y', 200_000));
        long.push(b'\n');
        long.extend(std::iter::repeat_n(b'z', 150_000));
        let mut c = std::io::Cursor::new(long);
        assert_eq!(complete_len(&mut c, 350_003).unwrap(), 200_003);
        assert_eq!(complete_len(&mut c, 200_002).unwrap(), 2);
    }

    #[tokio::test]
    async fn recordings_are_listed_and_sent_byte_for_byte() {
        let dir = Dir::new("serve");
        let line = "{\"snapshot\":1}\n";
        let body = line.repeat(10_000); // several chunks of the stream
        std::fs::write(dir.0.join("test.podinfo.jsonl"), &body).unwrap();
        std::fs::write(dir.0.join("prod.api.v2.jsonl"), "{}\n{\"half").unwrap();
        // Not recordings: never listed, never sent.
        std::fs::write(dir.0.join("notes.txt"), "secret").unwrap();
        std::fs::create_dir(dir.0.join("sub.dir.jsonl")).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", dir.0.join("test.link.jsonl")).unwrap();
        let app = router(dir.0.clone());

        let (status, ctype, listing) = get(&app, "/recordings").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(ctype.as_deref(), Some("application/json"));
        let listing: serde_json::Value = serde_json::from_slice(&listing).unwrap();
        let files: Vec<(&str, &str, &str, u64)> = listing["recordings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["file"].as_str().unwrap(),
                    e["namespace"].as_str().unwrap(),
                    e["name"].as_str().unwrap(),
                    e["bytes"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            files,
            [
                ("prod.api.v2.jsonl", "prod", "api.v2", 9),
                ("test.podinfo.jsonl", "test", "podinfo", body.len() as u64)
            ]
        );
        assert!(
            listing["recordings"][0]["modified"]
                .as_str()
                .unwrap()
                .ends_with('Z')
        );
        assert_eq!(get(&app, "/recordings/").await.0, StatusCode::OK);

        let (status, ctype, sent) = get(&app, "/recordings/test.podinfo.jsonl").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(ctype.as_deref(), Some("application/jsonl"));
        assert_eq!(sent, body.as_bytes());
        // The unfinished last line stays behind.
        let (status, _, sent) = get(&app, "/recordings/prod.api.v2.jsonl").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(sent, b"{}\n");
    }

    #[tokio::test]
    async fn nothing_outside_the_recordings_is_sent() {
        let dir = Dir::new("traversal");
        let inner = dir.0.join("recordings");
        std::fs::create_dir(&inner).unwrap();
        std::fs::write(inner.join("test.podinfo.jsonl"), "{}\n").unwrap();
        // Beside the directory, with a recording's name: out of reach all the same.
        std::fs::write(dir.0.join("test.outside.jsonl"), "SECRET-OUTSIDE\n").unwrap();
        std::os::unix::fs::symlink(
            dir.0.join("test.outside.jsonl"),
            inner.join("test.link.jsonl"),
        )
        .unwrap();
        std::fs::create_dir(inner.join("test.sub.jsonl")).unwrap();
        let app = router(inner.clone());

        for (uri, want) in [
            (
                "/recordings/..%2ftest.outside.jsonl",
                StatusCode::BAD_REQUEST,
            ),
            (
                "/recordings/..%2F..%2Fetc%2Fpasswd",
                StatusCode::BAD_REQUEST,
            ),
            ("/recordings/%2e%2e", StatusCode::BAD_REQUEST),
            ("/recordings/..", StatusCode::BAD_REQUEST),
            ("/recordings/notes.txt", StatusCode::BAD_REQUEST),
            ("/recordings/test.podinfo", StatusCode::BAD_REQUEST),
            ("/recordings/%2fetc%2fhostname", StatusCode::BAD_REQUEST),
            ("/recordings/../test.outside.jsonl", StatusCode::NOT_FOUND),
            ("/recordings/x/../test.outside.jsonl", StatusCode::NOT_FOUND),
            ("/recordings/test.link.jsonl", StatusCode::NOT_FOUND),
            ("/recordings/test.sub.jsonl", StatusCode::NOT_FOUND),
            ("/recordings/test.missing.jsonl", StatusCode::NOT_FOUND),
            ("/etc/passwd", StatusCode::NOT_FOUND),
            ("/metrics", StatusCode::NOT_FOUND),
        ] {
            let (status, ctype, body) = get(&app, uri).await;
            let body = String::from_utf8(body).unwrap();
            assert_eq!(status, want, "{uri}: {body}");
            assert_eq!(ctype.as_deref(), Some("text/plain; charset=utf-8"), "{uri}");
            assert!(!body.contains("SECRET"), "{uri}: {body}");
            assert!(!body.contains(&*dir.0.to_string_lossy()), "{uri}: {body}");
        }
        let (_, _, body) = get(&app, "/recordings/test.missing.jsonl").await;
        assert_eq!(
            String::from_utf8(body).unwrap(),
            "no recording test.missing.jsonl (GET /recordings lists them)\n"
        );
        let (_, _, body) = get(&app, "/recordings/..%2ftest.outside.jsonl").await;
        assert_eq!(
            String::from_utf8(body).unwrap(),
            "\"../test.outside.jsonl\" is not a recording's name: recordings are named <namespace>.<name>.jsonl\n"
        );
        // The only thing reachable is the recording.
        let (status, _, body) = get(&app, "/recordings").await;
        assert_eq!(status, StatusCode::OK);
        let listing: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(listing["recordings"].as_array().unwrap().len(), 1);
        assert_eq!(get(&app, "/recordings/test.podinfo.jsonl").await.2, b"{}\n");
    }

    #[tokio::test]
    async fn the_metrics_port_says_where_recordings_are() {
        let off = hint_router(hint(None));
        for uri in [
            "/recordings",
            "/recordings/test.podinfo.jsonl",
            "/recordings/a/b",
        ] {
            let (status, _, body) = get(&off, uri).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
            assert!(
                String::from_utf8(body).unwrap().starts_with(
                    "trace recording is off: run the operator with -record-traces DIR"
                ),
                "{uri}"
            );
        }
        let on = hint_router(hint(Some("127.0.0.1:8081")));
        let (status, _, body) = get(&on, "/recordings").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(
            String::from_utf8(body)
                .unwrap()
                .starts_with("recordings are served on 127.0.0.1:8081 only"),
        );
    }

    #[test]
    fn copy_to_writes_complete_lines_and_refuses_other_names() {
        let dir = Dir::new("copy");
        std::fs::write(dir.0.join("test.podinfo.jsonl"), "{}\n{}\n{").unwrap();
        let mut out = Vec::new();
        assert_eq!(copy_to(&dir.0, "test.podinfo.jsonl", &mut out).unwrap(), 6);
        assert_eq!(out, b"{}\n{}\n");
        let err = copy_to(&dir.0, "../x.y.jsonl", &mut Vec::new()).unwrap_err();
        assert!(matches!(err, OpenError::BadName(_)), "{err}");
        let err = copy_to(&dir.0, "test.none.jsonl", &mut Vec::new()).unwrap_err();
        assert_eq!(err.to_string(), "no recording test.none.jsonl");
    }
}
