//! Traces of the service's requests over OTLP, when the standard environment asks for
//! them (`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`; the
//! service's name from `OTEL_SERVICE_NAME`, `spamscope` otherwise; the protocol from
//! `OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL`: `http/protobuf`, the default, or `http/json`).
//! Off otherwise, and then free: the spans are `tracing` spans of the target
//! [`TARGET`], which no other layer records.
//!
//! Each request is a server span (route, method, status, the model version that
//! answered) with child spans for scoring, explaining and store access.
//!
//! The spans are made by [`SpanLayer`], a `tracing` layer of our own: on the request
//! path it only notes ids, times and fields in the span's extensions and, when the span
//! closes, hands a small record to a bounded queue (full: dropped and counted,
//! `spamscope_traces_spans_total{outcome="dropped"}`); one thread that naps and then
//! takes what is queued turns the records into OpenTelemetry spans and sends them in
//! batches with opentelemetry-otlp's exporter. Measured with benches/tracing.sh: the
//! SDK's tracer through tracing-opentelemetry cost 29% of the requests/s (12.5% with
//! its optional attributes off and this queue), which is why the request path does not
//! build SDK spans.

use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue, Value};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// The `tracing` target of the spans exported (and of nothing else).
pub const TARGET: &str = crate::util::TRACE_TARGET;

/// Spans waiting for the exporting thread at most; more are dropped (at 20,000 spans a
/// second, a nap's worth is 4,000).
const QUEUE: usize = 16_384;
/// Spans sent in one request to the collector at most.
const BATCH: usize = 512;
/// How long the exporting thread naps between looks at the queue.
const NAP: Duration = Duration::from_millis(200);

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

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Tracing to a collector: its layer, and the exporting thread (dropping it sends what
/// is queued, then stops the thread).
pub struct Telemetry {
    tx: SyncSender<Msg>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// Tracing as the environment asks: None when no OTLP endpoint is set (or
/// `OTEL_SDK_DISABLED=true`); an error (one line) for a protocol this build does not
/// speak.
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
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    exporter.set_resource(&resource);
    let counts = COUNTS.get_or_init(Default::default).clone();
    let (tx, rx) = sync_channel(QUEUE);
    let thread = std::thread::Builder::new()
        .name("otlp-export".into())
        .spawn(move || export_loop(exporter, rx, &counts))
        .map_err(|e| format!("tracing: {e}"))?;
    Ok(Some(Telemetry {
        tx,
        thread: Mutex::new(Some(thread)),
    }))
}

impl Telemetry {
    /// The `tracing` layer that records this crate's trace spans for export.
    pub fn layer<S>(&self) -> impl tracing_subscriber::Layer<S> + use<S>
    where
        S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    {
        use tracing_subscriber::Layer;
        SpanLayer {
            tx: self.tx.clone(),
            counts: COUNTS.get_or_init(Default::default).clone(),
        }
        .with_filter(
            tracing_subscriber::filter::Targets::new().with_target(TARGET, tracing::Level::TRACE),
        )
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        let _ = self.tx.send(Msg::Shutdown);
        if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
    }
}

/// A closed span, as the request path leaves it for the exporting thread.
struct Finished {
    span: Open,
    end: SystemTime,
}

enum Msg {
    Span(Box<Finished>),
    Shutdown,
}

/// A span being recorded: kept in the span's extensions until it closes.
struct Open {
    name: Cow<'static, str>,
    kind: SpanKind,
    trace_id: u128,
    span_id: u64,
    parent_id: u64,
    start: SystemTime,
    attributes: Vec<KeyValue>,
    error: bool,
}

/// Turns fields into attributes; `otel.name`, `otel.kind` and `otel.status_code` name,
/// classify and mark the span instead.
struct Fields<'a>(&'a mut Open);

impl Fields<'_> {
    fn put(&mut self, field: &Field, value: Value) {
        match field.name() {
            "otel.name" => self.0.name = Cow::Owned(value.as_str().into_owned()),
            "otel.kind" => {
                self.0.kind = match value.as_str().as_ref() {
                    "server" => SpanKind::Server,
                    "client" => SpanKind::Client,
                    _ => SpanKind::Internal,
                }
            }
            "otel.status_code" => self.0.error = value.as_str() == "ERROR",
            name => self.0.attributes.push(KeyValue::new(name, value)),
        }
    }
}

impl Visit for Fields<'_> {
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::I64(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::I64(i64::try_from(value).unwrap_or(i64::MAX)));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, Value::F64(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::Bool(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::String(value.to_string().into()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, Value::String(format!("{value:?}").into()));
    }
}

/// Random ids from a per-thread generator seeded by the operating system (xorshift:
/// ids must be unique, not secret).
fn random_u64() -> u64 {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new({
            let mut b = [0u8; 8];
            let _ = getrandom::fill(&mut b);
            u64::from_le_bytes(b) | 1
        });
    }
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        x
    })
}

/// The layer of [`Telemetry::layer`].
struct SpanLayer {
    tx: SyncSender<Msg>,
    counts: Arc<SpanCounts>,
}

impl<S> tracing_subscriber::Layer<S> for SpanLayer
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        // The nearest enclosing trace span (this layer sees no other).
        let parent = span.parent().and_then(|p| {
            p.extensions()
                .get::<Open>()
                .map(|o| (o.trace_id, o.span_id))
        });
        let (trace_id, parent_id) = match parent {
            Some(p) => p,
            None => (
                (u128::from(random_u64()) << 64) | u128::from(random_u64()),
                0,
            ),
        };
        let mut open = Open {
            name: Cow::Borrowed(attrs.metadata().name()),
            kind: SpanKind::Internal,
            trace_id,
            span_id: random_u64(),
            parent_id,
            start: SystemTime::now(),
            attributes: Vec::with_capacity(attrs.fields().len()),
            error: false,
        };
        attrs.record(&mut Fields(&mut open));
        span.extensions_mut().insert(open);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(open) = span.extensions_mut().get_mut::<Open>()
        {
            values.record(&mut Fields(open));
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(o) = span.extensions_mut().remove::<Open>() else {
            return;
        };
        let done = Finished {
            span: o,
            end: SystemTime::now(),
        };
        // Full queue, or the thread gone: dropped, counted.
        if self.tx.try_send(Msg::Span(Box::new(done))).is_err() {
            self.counts.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn span_data(done: Finished, scope: &InstrumentationScope) -> SpanData {
    let (f, end) = (done.span, done.end);
    SpanData {
        span_context: SpanContext::new(
            TraceId::from(f.trace_id),
            SpanId::from(f.span_id),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        ),
        parent_span_id: if f.parent_id == 0 {
            SpanId::INVALID
        } else {
            SpanId::from(f.parent_id)
        },
        parent_span_is_remote: false,
        span_kind: f.kind,
        name: f.name,
        start_time: f.start,
        end_time: end,
        attributes: f.attributes,
        dropped_attributes_count: 0,
        events: Default::default(),
        links: Default::default(),
        status: if f.error {
            Status::error("")
        } else {
            Status::Unset
        },
        instrumentation_scope: scope.clone(),
    }
}

/// The exporting thread. It naps and then takes what is queued, rather than waiting on
/// the queue: a waiting receiver is woken by every span sent, and those wake-ups (two
/// thread switches a span) cost the request threads more than making the spans did.
fn export_loop<E: SpanExporter>(exporter: E, rx: Receiver<Msg>, counts: &SpanCounts) {
    let scope = InstrumentationScope::builder("spamscope")
        .with_version(env!("CARGO_PKG_VERSION"))
        .build();
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
        std::thread::sleep(NAP);
        loop {
            match rx.try_recv() {
                Ok(Msg::Span(f)) => {
                    batch.push(span_data(*f, &scope));
                    if batch.len() >= BATCH {
                        send(&mut batch);
                    }
                }
                Err(TryRecvError::Empty) => {
                    send(&mut batch);
                    break;
                }
                Ok(Msg::Shutdown) | Err(TryRecvError::Disconnected) => {
                    send(&mut batch);
                    let _ = exporter.shutdown();
                    return;
                }
            }
        }
    }
}
