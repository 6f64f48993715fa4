//! Client-side encryption: every SST sealed before it leaves the node, in
//! segments that restore can fetch and open independently.
//!
//! Envelope encryption: each file gets a random 256-bit data key; the data
//! key is wrapped (AES-256-GCM) with a key-encryption key (KEK) from the
//! operator's [`Keyring`], and the wrapped key travels in the file's entry
//! of `metadata.json` with the KEK's id. The file itself is sealed in
//! segments of [`SEGMENT_SIZE`] bytes, each with AES-256-GCM under the data
//! key: the nonce is the segment's index (never repeated under one key,
//! which is used for one file only), and the associated data binds the
//! segment to its file, its index and whether it is the last, so segments
//! cannot be altered, reordered, dropped or moved between files without
//! failing authentication. The file's first and last user keys, which the
//! metadata needs for the import, are sealed the same way under reserved
//! indices. `FORMAT.md` documents the scheme byte by byte.
//!
//! The cipher is `ring`'s; nothing here is hand-rolled but the framing.

use std::fmt;
use std::path::Path;

use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

use crate::format::FileEncryption;

/// Plaintext bytes per segment; each stored segment is this plus [`TAG_LEN`].
pub const SEGMENT_SIZE: usize = 64 * 1024;
/// Bytes of authentication tag after each segment.
pub const TAG_LEN: usize = 16;
/// The scheme's name, written in `metadata.json`.
pub const SCHEME: &str = "rocksnap-aes256gcm-seg64k-v1";
/// The environment variable a keyring may be given in.
pub const KEYRING_ENV: &str = "ROCKSNAP_KEYRING";

const SEGMENT_AAD: &[u8] = b"rocksnap segment v1";
const USER_KEY_AAD: &[u8] = b"rocksnap user key v1";
const DATA_KEY_AAD: &[u8] = b"rocksnap data key v1";
/// Reserved segment indices for the sealed first and last user keys.
const START_KEY_INDEX: u64 = u64::MAX;
const END_KEY_INDEX: u64 = u64::MAX - 1;

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// Why encryption or decryption failed.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The keyring's text is not one this build reads.
    #[error("keyring line {line}: {reason}")]
    Keyring {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// The keyring holds no key.
    #[error("the keyring holds no key")]
    EmptyKeyring,
    /// The keyring file cannot be read.
    #[error("cannot read the keyring {}: {source}", path.display())]
    KeyringFile {
        /// Its path.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file was sealed under a key-encryption key the keyring lacks.
    #[error("{file} was encrypted under key {kek_id:?}, which the keyring does not hold (it holds {held})")]
    UnknownKey {
        /// The file.
        file: String,
        /// The key id its entry names.
        kek_id: String,
        /// The ids the keyring holds.
        held: String,
    },
    /// A data key did not unwrap: the keyring's key of that id is not the
    /// one it was wrapped with, or the entry was altered.
    #[error("the data key of {file} does not unwrap with key {kek_id:?}: a wrong key, or an altered metadata.json")]
    WrongKey {
        /// The file.
        file: String,
        /// The key id.
        kek_id: String,
    },
    /// A segment failed authentication.
    #[error("{file}: segment {segment} failed authentication (altered, reordered, truncated or from another file)")]
    Segment {
        /// The file (its key in the repository).
        file: String,
        /// The segment's index.
        segment: u64,
    },
    /// A field of an entry is not what the scheme writes.
    #[error("{file}: {reason}")]
    Entry {
        /// The file.
        file: String,
        /// What is wrong.
        reason: String,
    },
}

/// The operator's key-encryption keys, by id; the first is the current
/// one, which new snapshots use. Text form, one key per line:
/// `<id> <base64 of 32 bytes>`, `#` starting a comment.
pub struct Keyring {
    keys: Vec<(String, LessSafeKey)>,
}

/// Key material never reaches a log line.
impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring").field("ids", &self.ids()).finish()
    }
}

impl Keyring {
    /// Parses a keyring's text.
    pub fn parse(text: &str) -> Result<Self, CryptoError> {
        let mut keys: Vec<(String, LessSafeKey)> = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let bad = |reason: &str| CryptoError::Keyring {
                line: n + 1,
                reason: reason.to_string(),
            };
            let (id, key) = line
                .split_once(char::is_whitespace)
                .ok_or_else(|| bad("expected `<id> <base64 key>`"))?;
            let key = key.trim();
            let id_ok = !id.is_empty()
                && id.len() <= 64
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
            if !id_ok {
                return Err(bad("a key id is 1 to 64 of A-Z a-z 0-9 - _ ."));
            }
            if keys.iter().any(|(k, _)| k == id) {
                return Err(bad("this key id appears twice"));
            }
            let bytes = b64()
                .decode(key)
                .map_err(|_| bad("the key is not base64"))?;
            if bytes.len() != 32 {
                return Err(bad("a key is 32 bytes (256 bits), base64-encoded"));
            }
            let key = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| bad("unusable key"))?;
            keys.push((id.to_string(), LessSafeKey::new(key)));
        }
        if keys.is_empty() {
            return Err(CryptoError::EmptyKeyring);
        }
        Ok(Keyring { keys })
    }

    /// Reads a keyring file.
    pub fn load(path: &Path) -> Result<Self, CryptoError> {
        let text = std::fs::read_to_string(path).map_err(|e| CryptoError::KeyringFile {
            path: path.to_path_buf(),
            source: e,
        })?;
        Self::parse(&text)
    }

    /// The keyring of a file if one is named, else of `ROCKSNAP_KEYRING`
    /// if it is set and not empty; `None` if neither.
    pub fn from_file_or_env(path: Option<&Path>) -> Result<Option<Self>, CryptoError> {
        match path {
            Some(path) => Self::load(path).map(Some),
            None => match std::env::var(KEYRING_ENV) {
                Ok(text) if !text.trim().is_empty() => Self::parse(&text).map(Some),
                _ => Ok(None),
            },
        }
    }

    /// A fresh random key, in the keyring's text form, for `id`.
    pub fn generate_line(id: &str) -> String {
        let mut key = [0u8; 32];
        SystemRandom::new()
            .fill(&mut key)
            .expect("system randomness");
        format!("{id} {}", b64().encode(key))
    }

    /// The key ids, the current one first.
    pub fn ids(&self) -> Vec<&str> {
        self.keys.iter().map(|(id, _)| id.as_str()).collect()
    }

    /// The id of the key new snapshots use.
    pub fn current_id(&self) -> &str {
        &self.keys[0].0
    }

    fn key(&self, id: &str) -> Option<&LessSafeKey> {
        self.keys.iter().find(|(k, _)| k == id).map(|(_, key)| key)
    }
}

/// Stored size of a file of `plain` bytes: every segment with its tag, and
/// at least one segment, so that even an empty file is authenticated.
pub fn stored_size(plain: u64) -> u64 {
    let segments = plain.div_ceil(SEGMENT_SIZE as u64).max(1);
    plain + segments * TAG_LEN as u64
}

/// Stored size of `size` bytes, sealed or not.
pub(crate) fn stored_len(size: u64, sealed: bool) -> u64 {
    if sealed {
        stored_size(size)
    } else {
        size
    }
}

/// One file's data key and identity: seals its segments and user keys.
pub(crate) struct FileKey {
    key: LessSafeKey,
    raw: [u8; 32],
    file_id: [u8; 16],
}

impl fmt::Debug for FileKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FileKey({})", hex::encode(self.file_id))
    }
}

fn nonce(index: u64) -> Nonce {
    let mut n = [0u8; NONCE_LEN];
    n[4..].copy_from_slice(&index.to_be_bytes());
    Nonce::assume_unique_for_key(n)
}

impl FileKey {
    /// A fresh random data key and file id.
    pub fn generate() -> Self {
        let rng = SystemRandom::new();
        let mut raw = [0u8; 32];
        let mut file_id = [0u8; 16];
        rng.fill(&mut raw).expect("system randomness");
        rng.fill(&mut file_id).expect("system randomness");
        Self::from_parts(raw, file_id)
    }

    fn from_parts(raw: [u8; 32], file_id: [u8; 16]) -> Self {
        let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &raw).expect("32 bytes"));
        FileKey { key, raw, file_id }
    }

    fn segment_aad(&self, index: u64, last: bool) -> Vec<u8> {
        let mut aad = Vec::with_capacity(SEGMENT_AAD.len() + 16 + 9);
        aad.extend_from_slice(SEGMENT_AAD);
        aad.extend_from_slice(&self.file_id);
        aad.extend_from_slice(&index.to_be_bytes());
        aad.push(last as u8);
        aad
    }

    /// Seals, in place, the plaintext in `buf` (whole segments, but for the
    /// file's last one), whose first segment has index `first`; `last`:
    /// the buffer ends the file. The buffer grows by a tag per segment.
    pub fn seal_segments(&self, first: u64, buf: &mut Vec<u8>, last: bool) {
        let plain = buf.len();
        let count = plain.div_ceil(SEGMENT_SIZE).max(1);
        buf.resize(plain + count * TAG_LEN, 0);
        // From the last segment back, so that each moves right over bytes
        // already moved.
        for j in (0..count).rev() {
            let from = j * SEGMENT_SIZE;
            let len = (plain - from).min(SEGMENT_SIZE);
            let to = j * (SEGMENT_SIZE + TAG_LEN);
            buf.copy_within(from..from + len, to);
            let index = first + j as u64;
            let aad = self.segment_aad(index, last && j == count - 1);
            let tag = self
                .key
                .seal_in_place_separate_tag(nonce(index), Aad::from(aad), &mut buf[to..to + len])
                .expect("sealing does not fail");
            buf[to + len..to + len + TAG_LEN].copy_from_slice(tag.as_ref());
        }
    }

    /// Opens, in place, stored segments `stored` (whole stored segments but
    /// for the file's last), the first of index `first`, of a file with
    /// `segments` segments in all; returns the plaintext length, which is
    /// at the front of `stored` after this.
    pub fn open_segments(
        &self,
        file: &str,
        first: u64,
        segments: u64,
        stored: &mut [u8],
    ) -> Result<usize, CryptoError> {
        let mut written = 0;
        let mut at = 0;
        let mut index = first;
        while at < stored.len() {
            let len = (stored.len() - at).min(SEGMENT_SIZE + TAG_LEN);
            let bad = || CryptoError::Segment {
                file: file.to_string(),
                segment: index,
            };
            if len < TAG_LEN {
                return Err(bad());
            }
            let aad = self.segment_aad(index, index + 1 == segments);
            let plain = self
                .key
                .open_in_place(nonce(index), Aad::from(aad), &mut stored[at..at + len])
                .map_err(|_| bad())?
                .len();
            stored.copy_within(at..at + plain, written);
            written += plain;
            at += len;
            index += 1;
        }
        Ok(written)
    }

    fn user_key_aad(&self, which: u64) -> Vec<u8> {
        let mut aad = USER_KEY_AAD.to_vec();
        aad.extend_from_slice(&self.file_id);
        aad.extend_from_slice(&which.to_be_bytes());
        aad
    }

    fn seal_user_key(&self, which: u64, key: &[u8]) -> String {
        let mut buf = key.to_vec();
        self.key
            .seal_in_place_append_tag(nonce(which), Aad::from(self.user_key_aad(which)), &mut buf)
            .expect("sealing does not fail");
        b64().encode(buf)
    }

    fn open_user_key(&self, file: &str, which: u64, sealed: &str) -> Result<Vec<u8>, CryptoError> {
        let bad = || CryptoError::Entry {
            file: file.to_string(),
            reason: "its sealed user key does not open (altered metadata.json)".into(),
        };
        let mut buf = b64().decode(sealed).map_err(|_| bad())?;
        let plain = self
            .key
            .open_in_place(nonce(which), Aad::from(self.user_key_aad(which)), &mut buf)
            .map_err(|_| bad())?
            .len();
        buf.truncate(plain);
        Ok(buf)
    }

    /// The entry fields that let a holder of the keyring open this file:
    /// the data key wrapped with the current KEK, the file's first and last
    /// user keys sealed.
    pub fn entry(
        &self,
        keyring: &Keyring,
        plaintext_size: u64,
        start_key: &[u8],
        end_key: &[u8],
    ) -> FileEncryption {
        let (kek_id, wrapped_key) = self.wrap(keyring);
        FileEncryption {
            kek_id,
            wrapped_key,
            file_id: hex::encode(self.file_id),
            segment_size: SEGMENT_SIZE as u32,
            plaintext_size,
            start_key: self.seal_user_key(START_KEY_INDEX, start_key),
            end_key: self.seal_user_key(END_KEY_INDEX, end_key),
        }
    }

    /// The data key wrapped with the keyring's current key: its id, and
    /// base64 of nonce ‖ ciphertext ‖ tag.
    fn wrap(&self, keyring: &Keyring) -> (String, String) {
        let kek_id = keyring.current_id();
        let kek = keyring.key(kek_id).expect("the current key is held");
        let mut wrap_nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut wrap_nonce)
            .expect("system randomness");
        let mut wrapped = self.raw.to_vec();
        kek.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(wrap_nonce),
            Aad::from(data_key_aad(kek_id, &self.file_id)),
            &mut wrapped,
        )
        .expect("sealing does not fail");
        let mut stored = wrap_nonce.to_vec();
        stored.extend_from_slice(&wrapped);
        (kek_id.to_string(), b64().encode(stored))
    }

    /// The data key of an entry, unwrapped with the keyring.
    pub fn unwrap(
        file: &str,
        entry: &FileEncryption,
        keyring: &Keyring,
    ) -> Result<Self, CryptoError> {
        let bad = |reason: &str| CryptoError::Entry {
            file: file.to_string(),
            reason: reason.to_string(),
        };
        if entry.segment_size as usize != SEGMENT_SIZE {
            return Err(bad("unknown segment size"));
        }
        let kek = keyring
            .key(&entry.kek_id)
            .ok_or_else(|| CryptoError::UnknownKey {
                file: file.to_string(),
                kek_id: entry.kek_id.clone(),
                held: keyring.ids().join(", "),
            })?;
        let file_id: [u8; 16] = hex::decode(&entry.file_id)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| bad("file_id is not 16 hex bytes"))?;
        let stored = b64()
            .decode(&entry.wrapped_key)
            .map_err(|_| bad("wrapped_key is not base64"))?;
        if stored.len() != NONCE_LEN + 32 + TAG_LEN {
            return Err(bad("wrapped_key has the wrong length"));
        }
        let (wrap_nonce, wrapped) = stored.split_at(NONCE_LEN);
        let mut wrapped = wrapped.to_vec();
        let raw = kek
            .open_in_place(
                Nonce::try_assume_unique_for_key(wrap_nonce).expect("12 bytes"),
                Aad::from(data_key_aad(&entry.kek_id, &file_id)),
                &mut wrapped,
            )
            .map_err(|_| CryptoError::WrongKey {
                file: file.to_string(),
                kek_id: entry.kek_id.clone(),
            })?;
        let raw: [u8; 32] = raw.try_into().expect("32 bytes");
        Ok(Self::from_parts(raw, file_id))
    }

    /// The same envelope with the data key wrapped again, under the
    /// keyring's current key; the sealed user keys (under the data key)
    /// are unchanged.
    pub fn rewrap(&self, keyring: &Keyring, entry: &FileEncryption) -> FileEncryption {
        let (kek_id, wrapped_key) = self.wrap(keyring);
        FileEncryption {
            kek_id,
            wrapped_key,
            ..entry.clone()
        }
    }

    /// The file's first and last user keys.
    pub fn user_keys(
        &self,
        file: &str,
        entry: &FileEncryption,
    ) -> Result<(Vec<u8>, Vec<u8>), CryptoError> {
        Ok((
            self.open_user_key(file, START_KEY_INDEX, &entry.start_key)?,
            self.open_user_key(file, END_KEY_INDEX, &entry.end_key)?,
        ))
    }
}

fn data_key_aad(kek_id: &str, file_id: &[u8]) -> Vec<u8> {
    let mut aad = DATA_KEY_AAD.to_vec();
    aad.extend_from_slice(&(kek_id.len() as u32).to_be_bytes());
    aad.extend_from_slice(kek_id.as_bytes());
    aad.extend_from_slice(file_id);
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyring() -> Keyring {
        Keyring::parse(&format!(
            "# test keys\n{}\n{}\n",
            Keyring::generate_line("new"),
            Keyring::generate_line("old")
        ))
        .unwrap()
    }

    fn sealed(key: &FileKey, plain: &[u8], part: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let parts = plain.len().div_ceil(part).max(1);
        for p in 0..parts {
            let chunk = &plain[p * part..((p + 1) * part).min(plain.len())];
            let mut buf = chunk.to_vec();
            key.seal_segments((p * part / SEGMENT_SIZE) as u64, &mut buf, p == parts - 1);
            out.extend_from_slice(&buf);
        }
        out
    }

    #[test]
    fn segments_round_trip_in_any_part_size_and_catch_tampering() {
        let key = FileKey::generate();
        for len in [0, 1, SEGMENT_SIZE - 1, SEGMENT_SIZE, 3 * SEGMENT_SIZE + 17] {
            let plain: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let stored = sealed(&key, &plain, 2 * SEGMENT_SIZE);
            assert_eq!(stored.len() as u64, stored_size(len as u64));
            assert_eq!(
                stored,
                sealed(&key, &plain, SEGMENT_SIZE),
                "parts change nothing"
            );
            let segments = (len as u64).div_ceil(SEGMENT_SIZE as u64).max(1);
            let mut open = stored.clone();
            let n = key.open_segments("f", 0, segments, &mut open).unwrap();
            assert_eq!(&open[..n], &plain[..]);
            // One flipped bit.
            let mut bad = stored.clone();
            bad[stored.len() / 2] ^= 1;
            assert!(key.open_segments("f", 0, segments, &mut bad).is_err());
            // Truncated to whole segments: the last is missing its flag.
            if segments > 1 {
                let mut cut = stored[..SEGMENT_SIZE + TAG_LEN].to_vec();
                let err = key.open_segments("f", 0, 1, &mut cut).unwrap_err();
                assert!(err.to_string().contains("segment 0"), "{err}");
            }
        }
        // Two segments swapped.
        let plain = vec![1u8; 2 * SEGMENT_SIZE + 5];
        let stored = sealed(&key, &plain, SEGMENT_SIZE);
        let s = SEGMENT_SIZE + TAG_LEN;
        let mut swapped = [&stored[s..2 * s], &stored[..s], &stored[2 * s..]].concat();
        let err = key.open_segments("f", 0, 3, &mut swapped).unwrap_err();
        assert!(err.to_string().contains("segment 0"), "{err}");
        // Another file's key.
        let mut other = stored.clone();
        assert!(FileKey::generate()
            .open_segments("f", 0, 3, &mut other)
            .is_err());
    }

    #[test]
    fn data_keys_wrap_under_the_current_key_and_unwrap_with_the_right_one() {
        let ring = keyring();
        let key = FileKey::generate();
        let entry = key.entry(&ring, 10, b"first", b"last");
        assert_eq!(entry.kek_id, "new");
        assert!(!entry.start_key.contains("first"));
        let back = FileKey::unwrap("f", &entry, &ring).unwrap();
        assert_eq!(
            back.user_keys("f", &entry).unwrap(),
            (b"first".to_vec(), b"last".to_vec())
        );
        // A keyring without that id, and one with a different key under it.
        let other = Keyring::parse(&Keyring::generate_line("old")).unwrap();
        let err = FileKey::unwrap("f", &entry, &other).unwrap_err();
        assert!(matches!(err, CryptoError::UnknownKey { .. }), "{err}");
        let wrong = Keyring::parse(&Keyring::generate_line("new")).unwrap();
        let err = FileKey::unwrap("f", &entry, &wrong).unwrap_err();
        assert!(matches!(err, CryptoError::WrongKey { .. }), "{err}");
        // The entry moved to another file id does not unwrap.
        let mut moved = entry.clone();
        moved.file_id = hex::encode([9u8; 16]);
        assert!(FileKey::unwrap("f", &moved, &ring).is_err());
    }

    #[test]
    fn keyrings_are_checked_and_never_printed() {
        for (bad, why) in [
            ("", "no key"),
            ("k1", "expected"),
            ("k1 not-base64!", "base64"),
            ("k1 AAAA", "32 bytes"),
            ("bad/id AAAA", "key id"),
        ] {
            let err = Keyring::parse(bad).unwrap_err();
            assert!(err.to_string().contains(why), "{bad:?}: {err}");
        }
        let line = Keyring::generate_line("a");
        let twice = format!("{line}\n{line}");
        assert!(Keyring::parse(&twice)
            .unwrap_err()
            .to_string()
            .contains("twice"));
        let ring = Keyring::parse(&line).unwrap();
        let shown = format!("{ring:?}");
        assert!(!shown.contains(line.split(' ').nth(1).unwrap()), "{shown}");
    }
}
