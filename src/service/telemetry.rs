//! Traces of the service's requests over OTLP, when the standard environment asks for
//! them (`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`; the
//! service's name from `OTEL_SERVICE_NAME`, `spamscope` otherwise; the protocol from
//! `OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL`: `http/protobuf`, the default, or `http/json`).
//! Off otherwise, and then free: the spans are `tracing` spans of the target
//! [`TARGET`], which no other layer records.
//!
//! Each request is a server span (route, method, status, the model version that
//! answered) with child spans for scoring, explaining and store access. Spans go
//! through a bounded queue to one exporting thread: a request never waits for the
//! collector; when the queue is full a span is dropped and counted
//! (`spamscope_traces_dropped_total` in `/metrics`).

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter, SpanProcessor};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// The `tracing` target of the spans exported (and of nothing else).
pub const TARGET: &str = crate::util::TRACE_TARGET;

/// Spans waiting for the exporting thread at most; more are dropped.
const QUEUE: usize = 8_192;
/// Spans sent in one request to the collector at most.
const BATCH: usize = 512;
/// How long the exporting thread waits to fill a batch.
const BATCH_WAIT: Duration = Duration::from_millis(500);

/// What became of the spans.
#[derive(Debug, Default)]
pub struct SpanCounts {
    pub exported: AtomicU64,
    /// Dropped because the queue was full.
    pub dropped: AtomicU64,
    /// In batches the collector did not take.
    pub failed: AtomicU64,
}

static COUNTS: OnceLock<Arc<SpanCounts>> = OnceLock::new();

/// The counts of this process's exporter, when tracing is on.
pub fn counts() -> Option<&'static SpanCounts> {
    COUNTS.get().map(|c| c.as_ref())
}

/// Tracing to a collector; dropping it sends what is queued, then stops.
pub struct Telemetry {
    provider: SdkTracerProvider,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Tracing as the environment asks: None when no OTLP endpoint is set; an error (one
/// line) for a protocol this build does not speak.
pub fn from_env() -> Result<Option<Telemetry>, String> {
    if env("OTEL_EXPORTER_OTLP_ENDPOINT").is_none()
        && env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_none()
    {
        return Ok(None);
    }
    if env("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Ok(None);
    }
    use opentelemetry_otlp::{Protocol, WithExportConfig};
    let protocol = env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|| env("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .unwrap_or_else(|| "http/protobuf".into());
    let protocol = match protocol.trim() {
        "http/protobuf" => Protocol::HttpBinary,
        "http/json" => Protocol::HttpJson,
        other => {
            return Err(format!(
                "OTEL_EXPORTER_OTLP_PROTOCOL {} is not supported: use http/protobuf or http/json",
                crate::util::text::quote(other)
            ));
        }
    };
    let mut exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(protocol)
        .build()
        .map_err(|e| format!("OTLP exporter: {e}"))?;
    let name = env("OTEL_SERVICE_NAME").unwrap_or_else(|| "spamscope".into());
    let resource = Resource::builder()
        .with_service_name(name)
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build();
    exporter.set_resource(&resource);
    let counts = COUNTS.get_or_init(Default::default).clone();
    let processor = Exporting::start(exporter, counts).map_err(|e| format!("tracing: {e}"))?;
    let provider = SdkTracerProvider::builder()
        .with_resource(resource)
        .with_span_processor(processor)
        .build();
    Ok(Some(Telemetry { provider }))
}

impl Telemetry {
    /// The `tracing` layer that turns this crate's trace spans into exported spans.
    pub fn layer<S>(&self) -> impl tracing_subscriber::Layer<S> + use<S>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        use tracing_subscriber::Layer;
        let tracer = self.provider.tracer("spamscope");
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(
                tracing_subscriber::filter::Targets::new()
                    .with_target(TARGET, tracing::Level::TRACE),
            )
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        let _ = self.provider.shutdown();
    }
}

enum Msg {
    Span(Box<SpanData>),
    Flush(SyncSender<()>),
}

/// A span processor that never blocks: spans go to a bounded queue (full: dropped and
/// counted), one thread sends them in batches.
#[derive(Debug)]
struct Exporting {
    tx: Mutex<Option<SyncSender<Msg>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    counts: Arc<SpanCounts>,
}

impl Exporting {
    fn start<E: SpanExporter + 'static>(
        exporter: E,
        counts: Arc<SpanCounts>,
    ) -> std::io::Result<Exporting> {
        let (tx, rx) = sync_channel(QUEUE);
        let c = counts.clone();
        let thread = std::thread::Builder::new()
            .name("otlp-export".into())
            .spawn(move || export_loop(exporter, rx, &c))?;
        Ok(Exporting {
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            counts,
        })
    }

    fn sender(&self) -> Option<SyncSender<Msg>> {
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

fn export_loop<E: SpanExporter>(exporter: E, rx: Receiver<Msg>, counts: &SpanCounts) {
    let mut batch: Vec<SpanData> = Vec::with_capacity(BATCH);
    let send = |batch: &mut Vec<SpanData>| {
        if batch.is_empty() {
            return;
        }
        let n = batch.len() as u64;
        match futures_executor::block_on(exporter.export(std::mem::take(batch))) {
            Ok(()) => counts.exported.fetch_add(n, Ordering::Relaxed),
            Err(e) => {
                tracing::warn!("traces: {n} spans not taken by the collector: {e}");
                counts.failed.fetch_add(n, Ordering::Relaxed)
            }
        };
    };
    loop {
        match rx.recv_timeout(BATCH_WAIT) {
            Ok(Msg::Span(s)) => {
                batch.push(*s);
                if batch.len() >= BATCH {
                    send(&mut batch);
                }
            }
            Ok(Msg::Flush(done)) => {
                send(&mut batch);
                let _ = done.send(());
            }
            Err(RecvTimeoutError::Timeout) => send(&mut batch),
            Err(RecvTimeoutError::Disconnected) => {
                send(&mut batch);
                let _ = exporter.shutdown();
                return;
            }
        }
    }
}

impl SpanProcessor for Exporting {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &opentelemetry::Context) {}

    fn on_end(&self, span: SpanData) {
        let sent = self
            .sender()
            .map(|tx| tx.try_send(Msg::Span(Box::new(span))));
        // Full queue, or the thread already shut down: dropped, counted.
        if !matches!(sent, Some(Ok(()))) {
            self.counts.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        let Some(tx) = self.sender() else {
            return Ok(());
        };
        let (done, wait) = sync_channel(1);
        tx.send(Msg::Flush(done))
            .map_err(|_| OTelSdkError::AlreadyShutdown)?;
        wait.recv_timeout(Duration::from_secs(10))
            .map_err(|_| OTelSdkError::Timeout(Duration::from_secs(10)))
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        // Closing the queue ends the thread after it sent what is queued.
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
        Ok(())
    }
}
