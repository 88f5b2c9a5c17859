//! SHA-256 fingerprints of data sources and model files.

use sha2::{Digest, Sha256};

pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut s = String::with_capacity(64);
    for b in digest.iter() {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// A fingerprint of a set of records that does not depend on the order they are read
/// in: how many there are and the wrapping sum of each one's SHA-256 (its first 128
/// bits). Two stores that keep the same rows in a different order (rowid against a
/// sequence, binary against locale collation) give the same tally; a row missing,
/// added or changed changes it. Records are fed as canonical bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tally {
    pub rows: u64,
    sum: u128,
}

impl Tally {
    pub fn add(&mut self, record: &[u8]) {
        let d = Sha256::digest(record);
        let mut first = [0u8; 16];
        first.copy_from_slice(&d[..16]);
        self.rows += 1;
        self.sum = self.sum.wrapping_add(u128::from_le_bytes(first));
    }

    /// The sum as 32 hex digits (what a report shows beside the row count).
    pub fn hex(&self) -> String {
        format!("{:032x}", self.sum)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_tally_ignores_order_and_sees_a_changed_row() {
        let mut a = super::Tally::default();
        let mut b = super::Tally::default();
        for r in [&b"one"[..], b"two", b"three"] {
            a.add(r);
        }
        for r in [&b"three"[..], b"one", b"two"] {
            b.add(r);
        }
        assert_eq!(a, b);
        assert_eq!(a.rows, 3);
        let mut c = super::Tally::default();
        for r in [&b"one"[..], b"two", b"thref"] {
            c.add(r);
        }
        assert_ne!(a, c);
        assert_ne!(a.hex(), c.hex());
    }

    #[test]
    fn known_digest() {
        assert_eq!(
            super::sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
