//! `spamscope gen-data`: the synthetic dataset as a CSV file.

use super::GenDataArgs;
use spamscope::data::synth::{SynthParams, generate};
use spamscope::ops::error::{Error, Result};

/// `spamscope gen-data`: writes the synthetic dataset.
pub fn gen_data(args: GenDataArgs) -> Result<()> {
    let GenDataArgs { out, rows, seed } = args;
    if rows == 0 {
        return Err(Error::Invalid("rows must be at least 1".into()));
    }
    let p = SynthParams { rows, seed };
    let t = generate(p);
    let tmp = out.with_extension("csv.partial");
    let f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    t.write_csv(f).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, &out).map_err(|e| Error::io(&out, e))?;
    let pos: usize = t.labels.iter().map(|&l| l as usize).sum();
    eprintln!(
        "wrote {} ({} rows, {} spammers, {} missing values)",
        out.display(),
        t.rows(),
        pos,
        t.missing_x13.len()
    );
    Ok(())
}
