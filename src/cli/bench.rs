//! `spamscope bench`: our forest against the Python peers.

use super::BenchArgs;
use spamscope::ops::error::Result;

/// `spamscope bench`: runs the benchmark.
pub fn run(args: BenchArgs) -> Result<()> {
    let BenchArgs {
        data,
        rows,
        trees,
        no_peers,
        python,
        json,
    } = args;
    spamscope::ops::bench::run(spamscope::ops::bench::BenchArgs {
        data,
        rows,
        trees,
        peers: !no_peers,
        python,
        json,
    })
}
