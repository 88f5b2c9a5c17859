//! `spamscope serve`: the HTTP service.

use super::ServeArgs;
use spamscope::ops::error::Result;
use spamscope::util::progress::StderrProgress;

/// `spamscope serve`: runs the service until it is stopped.
pub fn run(args: ServeArgs) -> Result<()> {
    let ServeArgs {
        registry: reg,
        addr,
        workers,
        log,
        webhook,
        wait_for_store,
    } = args;
    let wait_for_store = match wait_for_store {
        None => None,
        Some(s @ 1..=3600) => Some(std::time::Duration::from_secs(s)),
        Some(s) => {
            return Err(spamscope::Error::Invalid(format!(
                "--wait-for-store must be 1 to 3600 seconds (got {s})"
            )));
        }
    };
    // Traces over OTLP when the standard environment asks for them (kept until the
    // service stops: dropping it sends what is queued).
    let telemetry = spamscope::service::telemetry::from_env().map_err(spamscope::Error::Invalid)?;
    {
        use spamscope::service::telemetry::TARGET;
        use tracing_subscriber::filter::{LevelFilter, Targets};
        use tracing_subscriber::prelude::*;
        // The log lines: the trace spans are not theirs.
        let fmt = tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .with_filter(
                Targets::new()
                    .with_default(log)
                    .with_target(TARGET, LevelFilter::OFF),
            );
        let _ = tracing_subscriber::registry()
            .with(fmt)
            .with(telemetry.as_ref().map(|t| t.layer()))
            .try_init();
    }
    if telemetry.is_some() {
        tracing::info!("traces go to the OTLP collector set in OTEL_EXPORTER_OTLP_*");
    }
    let workers = workers
        .filter(|&w| (1..=1024).contains(&w))
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let result = spamscope::service::run(
        spamscope::service::ServeConfig {
            store: super::input::location(reg)?,
            addr,
            workers,
            limits: Default::default(),
            retention: Default::default(),
            webhook,
            wait_for_store,
            mlflow: super::input::mlflow(),
        },
        &StderrProgress::new(),
    )
    .map_err(|e| match e {
        spamscope::service::ServeError::Ops(e) => e,
        e => spamscope::Error::Invalid(e.to_string()),
    });
    drop(telemetry);
    result
}
