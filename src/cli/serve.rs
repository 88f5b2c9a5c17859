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
    let _ = tracing_subscriber::fmt()
        .with_max_level(log)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
    let workers = workers
        .filter(|&w| (1..=1024).contains(&w))
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    spamscope::service::run(
        spamscope::service::ServeConfig {
            store: super::input::location(reg)?,
            addr,
            workers,
            limits: Default::default(),
            retention: Default::default(),
            webhook,
            wait_for_store,
        },
        &StderrProgress::new(),
    )
    .map_err(|e| match e {
        spamscope::service::ServeError::Ops(e) => e,
        e => spamscope::Error::Invalid(e.to_string()),
    })
}
