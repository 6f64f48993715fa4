//! Snapshot ids, in both encodings found in repositories.
//!
//! rocksnap writes `snap_` followed by a ULID in Crockford base32 (26
//! characters). Restate writes `snap_1` followed by the same 128 bits in
//! base62 (22 characters, alphabet `0-9a-zA-Z`, padded with `0`), the `1`
//! being its id scheme's version, and the number being the ULID's `u128`
//! with its bytes reversed (Restate encodes `to_be()` of it on a
//! little-endian machine). An id remembers the encoding it was read in, so
//! that the folder and document names built from it are the ones in the
//! bucket; two ids are equal when their ULIDs are.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use ulid::Ulid;

use super::FormatError;

/// How an id is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IdEncoding {
    /// `snap_<ULID>`, rocksnap's own.
    #[default]
    Ulid,
    /// `snap_1<base62>`, Restate's.
    Restate,
}

/// `snap_` followed by a ULID: two nodes that snapshot the same partition at
/// the same LSN never pick the same folder.
#[derive(Debug, Clone, Copy)]
pub struct SnapshotId {
    ulid: Ulid,
    encoding: IdEncoding,
}

impl SnapshotId {
    /// A fresh id from a new ULID (current time plus randomness).
    pub fn new() -> Self {
        SnapshotId {
            ulid: Ulid::new(),
            encoding: IdEncoding::Ulid,
        }
    }

    /// The same id, written in `encoding`.
    pub fn encoded(self, encoding: IdEncoding) -> Self {
        SnapshotId { encoding, ..self }
    }

    /// The encoding the id was read in (or is written in).
    pub fn encoding(&self) -> IdEncoding {
        self.encoding
    }

    /// The ULID behind the id.
    pub fn ulid(&self) -> Ulid {
        self.ulid
    }
}

impl Default for SnapshotId {
    fn default() -> Self {
        Self::new()
    }
}

impl PartialEq for SnapshotId {
    fn eq(&self, other: &Self) -> bool {
        self.ulid == other.ulid
    }
}

impl Eq for SnapshotId {}

impl Hash for SnapshotId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.ulid.hash(state)
    }
}

impl PartialOrd for SnapshotId {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SnapshotId {
    fn cmp(&self, other: &Self) -> Ordering {
        self.ulid.cmp(&other.ulid)
    }
}

const BASE62: &[u8; 62] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
/// Base62 digits of a `u128`, fixed width.
const BASE62_WIDTH: usize = 22;

fn base62(mut n: u128) -> String {
    let mut digits = [b'0'; BASE62_WIDTH];
    for d in digits.iter_mut().rev() {
        *d = BASE62[(n % 62) as usize];
        n /= 62;
    }
    String::from_utf8(digits.to_vec()).expect("ASCII")
}

fn from_base62(s: &str) -> Option<u128> {
    if s.len() != BASE62_WIDTH {
        return None;
    }
    s.bytes().try_fold(0u128, |n, c| {
        let d = BASE62.iter().position(|&b| b == c)? as u128;
        n.checked_mul(62)?.checked_add(d)
    })
}

impl fmt::Display for SnapshotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.encoding {
            IdEncoding::Ulid => write!(f, "snap_{}", self.ulid),
            IdEncoding::Restate => write!(f, "snap_1{}", base62(self.ulid.0.swap_bytes())),
        }
    }
}

impl FromStr for SnapshotId {
    type Err = FormatError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || FormatError::BadSnapshotId(s.to_string());
        let rest = s.strip_prefix("snap_").ok_or_else(bad)?;
        if let Ok(ulid) = Ulid::from_string(rest) {
            return Ok(SnapshotId {
                ulid,
                encoding: IdEncoding::Ulid,
            });
        }
        let n = rest
            .strip_prefix('1')
            .and_then(from_base62)
            .ok_or_else(bad)?;
        Ok(SnapshotId {
            ulid: Ulid(n.swap_bytes()),
            encoding: IdEncoding::Restate,
        })
    }
}

impl Serialize for SnapshotId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SnapshotId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restate_ids_decode_to_their_ulid_and_encode_back() {
        // The seed's id, 4 ms before that snapshot's created_at.
        let id: SnapshotId = "snap_17IyaexCTaiY7ZvMJcsPdg5".parse().unwrap();
        assert_eq!(id.encoding(), IdEncoding::Restate);
        assert_eq!(id.ulid().timestamp_ms(), 1_732_216_635_751);
        assert_eq!(id.to_string(), "snap_17IyaexCTaiY7ZvMJcsPdg5");
        // The same ULID in rocksnap's encoding is the same id.
        let ours: SnapshotId = format!("snap_{}", id.ulid()).parse().unwrap();
        assert_eq!(ours, id);
        assert_eq!(
            ours.encoded(IdEncoding::Restate).to_string(),
            id.to_string()
        );
    }

    #[test]
    fn fresh_ids_round_trip_in_both_encodings() {
        for _ in 0..100 {
            let id = SnapshotId::new();
            for encoding in [IdEncoding::Ulid, IdEncoding::Restate] {
                let text = id.encoded(encoding).to_string();
                let back: SnapshotId = text.parse().unwrap();
                assert_eq!(back, id);
                assert_eq!(back.encoding(), encoding);
                assert_eq!(back.to_string(), text);
            }
        }
        assert!("snap_1short".parse::<SnapshotId>().is_err());
        assert!("snap_2IyaexCTaiY7ZvMJcsPdg5".parse::<SnapshotId>().is_err());
        assert!("snap_1IyaexCTaiY7ZvMJcsPd!5x"
            .parse::<SnapshotId>()
            .is_err());
    }
}
