//! What the flags switch on: static files, CORS, and the loopback rule for anonymous access.

mod common;

use std::process::Command;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use logfold_server::{Config, Tokens};

#[tokio::test]
async fn static_files_are_served_beside_the_api() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.html"), "<h1>demo</h1>").unwrap();
    let app = test_app(
        Kind::Memory,
        Config {
            static_dir: Some(dir.path().to_owned()),
            ..Config::default()
        },
    );
    let page = app.get("/index.html", None).await;
    assert_eq!(
        (page.status, page.text()),
        (StatusCode::OK, "<h1>demo</h1>".to_owned())
    );
    assert_eq!(app.get("/", None).await.text(), "<h1>demo</h1>");
    assert_eq!(
        app.get("/v1/logs/demo/events", None).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn cors_allows_only_the_configured_origin() {
    let app = test_app(
        Kind::Memory,
        Config {
            cors_origins: vec!["http://localhost:5173".into()],
            ..Config::default()
        },
    );
    let preflight = |origin: &str| {
        Request::options("/v1/logs/demo/push")
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type",
            )
            .body(Body::empty())
            .unwrap()
    };
    let ok = app.request(preflight("http://localhost:5173")).await;
    assert_eq!(
        ok.headers["access-control-allow-origin"],
        "http://localhost:5173"
    );
    let other = app.request(preflight("http://evil.example")).await;
    assert!(other.headers.get("access-control-allow-origin").is_none());
}

#[test]
fn anonymous_access_is_refused_off_loopback() {
    let out = Command::new(env!("CARGO_BIN_EXE_logfold-server"))
        .args(["--listen", "0.0.0.0:0", "--database", ":memory:"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("without --tokens"), "{err}");
}

#[test]
fn a_bad_token_file_stops_the_server_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.txt");
    std::fs::write(&path, "good-token-1 demo:write\nbad-token-22 demo:admin\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_logfold-server"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--database",
            ":memory:",
            "--tokens",
        ])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 2"));
    assert!(Tokens::parse("good-token-1 demo:write\n").is_ok());
}
