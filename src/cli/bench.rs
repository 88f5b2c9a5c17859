//! `spamscope bench`: our forest against the Python peers, or (`--table`) every model
//! of the comparison beside its reference implementation.

use super::BenchArgs;
use spamscope::ops::error::Result;
use spamscope::util::progress::StderrProgress;

/// `spamscope bench`: runs the benchmark.
pub fn run(args: BenchArgs) -> Result<()> {
    let BenchArgs {
        data,
        rows,
        trees,
        no_peers,
        python,
        table,
        only,
        json,
    } = args;
    if table {
        let t = spamscope::ops::table::run(
            &spamscope::ops::table::TableArgs {
                data,
                rows,
                only: super::compare::names(only.as_deref()),
                seed: 42,
                python,
            },
            &StderrProgress::new(),
        )?;
        if json {
            super::output::print_json(&serde_json::to_value(&t).expect("a table serialises"));
        } else {
            println!("{}", t.markdown());
        }
        return Ok(());
    }
    spamscope::ops::bench::run(spamscope::ops::bench::BenchArgs {
        data,
        rows,
        trees,
        peers: !no_peers,
        python,
        json,
    })
}
