//! A team's service is another machine: the files of a version it sends are checked
//! before the app installs them. Mutated manifests and model files from a hostile or
//! broken server are refused with an error, or (when the change keeps every checksum
//! and the model intact) installed as a version that loads; never a panic, never a
//! half-written version. `FUZZ_CASES=N` runs longer (default 300).

use proptest::prelude::*;
use spamscope::data::synth::SynthParams;
use spamscope::store::Registry;
use spamscope::store::layout::{HOLDOUT_FILE, MANIFEST_FILE, MODEL_FILE};
use std::sync::OnceLock;

mod common;

/// The three files of a small version 1.
fn files() -> &'static [Vec<u8>; 3] {
    static F: OnceLock<[Vec<u8>; 3]> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(dir.path()).unwrap();
        common::train_version(
            &reg,
            SynthParams {
                rows: 1500,
                seed: 3,
            },
            3,
        );
        [MANIFEST_FILE, MODEL_FILE, HOLDOUT_FILE].map(|n| reg.version_file(1, n).unwrap())
    })
}

fn cases() -> u32 {
    std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn mutated_version_files_are_refused_or_load(
        which in 0..3usize,
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in prop::option::of(any::<prop::sample::Index>()),
    ) {
        let mut f = files().clone();
        let bytes = &mut f[which];
        for (at, b) in edits {
            let i = at.index(bytes.len());
            bytes[i] = b;
        }
        if let Some(c) = cut {
            let n = c.index(bytes.len());
            bytes.truncate(n);
        }
        let dir = tempfile::tempdir().unwrap();
        let mirror = Registry::open(dir.path()).unwrap();
        match mirror.install_version(1, &f[0], &f[1], &f[2]) {
            Ok(m) => {
                // Whatever was accepted is whole: it loads, with its holdout.
                prop_assert_eq!(m.version, 1);
                prop_assert!(mirror.load(1).is_ok());
                prop_assert!(mirror.load_holdout(1).is_ok() || which == 0);
            }
            Err(e) => {
                let text = e.to_string();
                prop_assert!(!text.contains('\n'), "{}", text);
                // Nothing half-written is left as a version.
                prop_assert!(mirror.version_numbers().unwrap().is_empty());
            }
        }
    }
}
