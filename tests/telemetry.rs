//! Traces over OTLP: `spamscope serve` started with the standard OpenTelemetry
//! environment sends its requests' spans to a receiver in this test, which decodes
//! them as a collector does (OTLP/HTTP, protobuf: `ExportTraceServiceRequest`). Each
//! request is a server span with its route, method, status and the version that
//! answered; scoring, explaining and store access are its children in the same trace.

mod common;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// An OTLP/HTTP receiver on 127.0.0.1: each POST to /v1/traces decoded, its resource's
/// service name and spans sent to the channel. Returns its base URL.
fn otlp_receiver() -> (String, mpsc::Receiver<(String, Vec<Span>)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    assert!(line.starts_with("POST /v1/traces "), "{line}");
                    let (mut length, mut kind) = (0usize, String::new());
                    loop {
                        let mut h = String::new();
                        reader.read_line(&mut h).unwrap();
                        let h = h.trim_end();
                        if h.is_empty() {
                            break;
                        }
                        if let Some((k, v)) = h.split_once(':') {
                            match k.to_ascii_lowercase().as_str() {
                                "content-length" => length = v.trim().parse().unwrap(),
                                "content-type" => kind = v.trim().to_string(),
                                _ => {}
                            }
                        }
                    }
                    let mut body = vec![0u8; length];
                    reader.read_exact(&mut body).unwrap();
                    assert_eq!(kind, "application/x-protobuf");
                    let req = ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
                    for rs in req.resource_spans {
                        let service = rs
                            .resource
                            .iter()
                            .flat_map(|r| &r.attributes)
                            .find(|a| a.key == "service.name")
                            .and_then(|a| a.value.as_ref())
                            .and_then(|v| match &v.value {
                                Some(Any::StringValue(s)) => Some(s.clone()),
                                _ => None,
                            })
                            .unwrap_or_default();
                        let spans = rs.scope_spans.into_iter().flat_map(|s| s.spans).collect();
                        let _ = tx.send((service, spans));
                    }
                    let _ = write!(
                        stream,
                        "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n"
                    );
                    let _ = stream.flush();
                }
            });
        }
    });
    (url, rx)
}

fn attr<'a>(s: &'a Span, key: &str) -> Option<&'a Any> {
    s.attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn int_attr(s: &Span, key: &str) -> Option<i64> {
    match attr(s, key)? {
        Any::IntValue(i) => Some(*i),
        Any::StringValue(t) => t.parse().ok(),
        _ => None,
    }
}

fn str_attr(s: &Span, key: &str) -> Option<String> {
    match attr(s, key)? {
        Any::StringValue(t) => Some(t.clone()),
        other => Some(format!("{other:?}")),
    }
}

/// `spamscope serve` in a child process, killed when dropped.
struct Serve(std::process::Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(registry: &std::path::Path, env: &[(&str, &str)]) -> (Serve, String) {
    let port = common::pg::free_port();
    let mut c = Command::new(env!("CARGO_BIN_EXE_spamscope"));
    c.args(["serve", "--registry"])
        .arg(registry)
        .args(["--addr", &format!("127.0.0.1:{port}")])
        .env_remove("SPAMSCOPE_STORE")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    let child = Serve(c.spawn().unwrap());
    let url = format!("http://127.0.0.1:{port}");
    let start = Instant::now();
    while ureq::get(format!("{url}/health")).call().is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "serve did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (child, url)
}

#[test]
fn requests_are_traced_to_an_otlp_receiver() {
    let dir = tempfile::tempdir().unwrap();
    let reg = spamscope::store::Registry::open(dir.path()).unwrap();
    common::train_version(
        &reg,
        spamscope::data::synth::SynthParams {
            rows: 1500,
            seed: 3,
        },
        4,
    );
    let (otlp, spans) = otlp_receiver();
    let (_serve, url) = serve(
        dir.path(),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.as_str()),
            ("OTEL_SERVICE_NAME", "spamscope-test"),
        ],
    );
    let body = serde_json::json!({"features": {"X1": 3, "X6": 2}, "user_id": "u1"});
    let r = ureq::post(format!("{url}/predict"))
        .send_json(&body)
        .unwrap()
        .body_mut()
        .read_json::<serde_json::Value>()
        .unwrap();
    assert_eq!(r["model_version"], 1);
    ureq::get(format!("{url}/model/feedback/stats"))
        .call()
        .unwrap();
    let missing = ureq::get(format!("{url}/nowhere"))
        .config()
        .http_status_as_error(false)
        .build()
        .call()
        .unwrap();
    assert_eq!(missing.status(), 404);

    // Collect until the three requests' spans and their children are in.
    let mut all: Vec<Span> = Vec::new();
    let start = Instant::now();
    let named = |all: &[Span], n: &str| all.iter().filter(|s| s.name == n).count();
    while named(&all, "POST /predict") == 0
        || named(&all, "GET /model/feedback/stats") == 0
        || named(&all, "GET unmatched") == 0
        || named(&all, "store") == 0
        || named(&all, "score_and_explain") == 0
    {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "spans so far: {:?}",
            all.iter().map(|s| &s.name).collect::<Vec<_>>()
        );
        if let Ok((service, batch)) = spans.recv_timeout(Duration::from_millis(200)) {
            assert_eq!(service, "spamscope-test");
            all.extend(batch);
        }
    }
    let predict = all.iter().find(|s| s.name == "POST /predict").unwrap();
    assert_eq!(predict.kind, 2, "a server span");
    assert_eq!(str_attr(predict, "http.route").as_deref(), Some("/predict"));
    assert_eq!(
        str_attr(predict, "http.request.method").as_deref(),
        Some("POST")
    );
    assert_eq!(int_attr(predict, "http.response.status_code"), Some(200));
    assert_eq!(int_attr(predict, "spamscope.model_version"), Some(1));
    assert!(str_attr(predict, "spamscope.explanation").is_some());
    let child = all.iter().find(|s| s.name == "score_and_explain").unwrap();
    assert_eq!(child.trace_id, predict.trace_id, "one trace");
    assert_eq!(
        child.parent_span_id, predict.span_id,
        "a child of the request"
    );
    assert!(child.end_time_unix_nano <= predict.end_time_unix_nano);
    let stats = all
        .iter()
        .find(|s| s.name == "GET /model/feedback/stats")
        .unwrap();
    let store = all
        .iter()
        .find(|s| s.name == "store" && s.trace_id == stats.trace_id)
        .expect("the statistics' store access is in their trace");
    assert_eq!(store.parent_span_id, stats.span_id);
    // The exporter's own counts are in /metrics. It counts a batch once the receiver
    // has answered it, a moment after the receiver handed the spans to this test: read
    // until they are counted.
    let start = Instant::now();
    let metrics = loop {
        let metrics = ureq::get(format!("{url}/metrics"))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap();
        let exported: u64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix("spamscope_traces_spans_total{outcome=\"exported\"} "))
            .unwrap_or_else(|| panic!("no exported count:\n{metrics}"))
            .parse()
            .unwrap();
        if exported >= 5 {
            break metrics;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{exported} spans counted as exported"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(metrics.contains("spamscope_traces_spans_total{outcome=\"dropped\"} 0"));
    let unmatched = all.iter().find(|s| s.name == "GET unmatched").unwrap();
    assert_eq!(int_attr(unmatched, "http.response.status_code"), Some(404));
    assert_ne!(unmatched.trace_id, predict.trace_id, "a trace per request");
}

/// A protocol this build does not speak is one line and exit 1, not a silent
/// service without traces.
#[test]
fn an_unsupported_otlp_protocol_is_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_spamscope"))
        .args(["serve", "--registry"])
        .arg(dir.path())
        .args(["--addr", "127.0.0.1:0"])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "carrier-pigeon")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("OTEL_EXPORTER_OTLP_PROTOCOL \"carrier-pigeon\" is not supported")
            && err.trim().lines().count() == 1,
        "{err}"
    );
}
