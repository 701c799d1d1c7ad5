//! Offline bundles: a file carrying automerge changes (or a replica's heads) from one
//! replica to another, by USB stick or messaging app. Format (docs/bundle.md):
//!
//! ```text
//! magic "FSBUNDLE" | u16 version | u32 header length | header JSON
//! | entries: u8 kind | u16 id length | id | u32 data length | data
//! | SHA-256 of everything before
//! ```

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::store::documents::DocKind;
use crate::wire::{Reader, Writer};
use crate::{Error, Result};

const MAGIC: &[u8; 8] = b"FSBUNDLE";
/// The bundle format version this build writes and reads.
pub const BUNDLE_VERSION: u16 = 1;
/// Largest bundle this build reads (guards memory on a hostile file).
pub const MAX_BUNDLE_BYTES: usize = 512 * 1024 * 1024;

/// What a bundle carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BundleKind {
    /// Automerge changes to merge.
    Changes,
    /// The heads a replica has, so another can export only what it lacks.
    Heads,
}

/// A device provisioned by an admin: the replica created from this bundle acts for `user`
/// with the registered automerge `actor`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provision {
    /// The user the new replica acts for.
    pub user: String,
    /// The automerge actor id (hex) registered for the device.
    pub actor: String,
    /// Set by a sync server: the change sequence the bundle is current up to. The new
    /// replica starts syncing from there, and treats the bundle's documents as
    /// acknowledged by the server.
    #[serde(default)]
    pub cursor: Option<u64>,
}

/// Bundle header.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BundleHeader {
    /// What the entries are.
    pub kind: BundleKind,
    /// The team the documents belong to; other teams' replicas refuse the bundle.
    pub team: String,
    /// The team's founding actor (hex), recorded by a replica created from this bundle.
    pub founder: String,
    /// Who exported it.
    pub from_user: String,
    /// When, ms since the epoch.
    pub created_at: i64,
    /// Present on a device-provisioning bundle.
    pub provision: Option<Provision>,
}

/// One document's data in a bundle.
#[derive(Clone, Debug, PartialEq)]
pub struct BundleEntry {
    /// Document kind.
    pub kind: DocKind,
    /// Document id.
    pub doc_id: String,
    /// Automerge changes, or concatenated 32-byte change hashes for a heads bundle.
    pub data: Vec<u8>,
}

/// A decoded bundle.
#[derive(Clone, Debug, PartialEq)]
pub struct Bundle {
    /// Header.
    pub header: BundleHeader,
    /// Documents.
    pub entries: Vec<BundleEntry>,
}

impl Bundle {
    /// Encodes the bundle.
    pub fn encode(&self) -> Vec<u8> {
        let header = serde_json::to_vec(&self.header).unwrap_or_default();
        let mut w = Writer::default();
        w.bytes(MAGIC);
        w.u16(BUNDLE_VERSION);
        w.blob(&header);
        for e in &self.entries {
            w.u8(kind_byte(e.kind));
            w.short_str(&e.doc_id);
            w.blob(&e.data);
        }
        let digest = Sha256::digest(&w.buf);
        w.bytes(&digest);
        w.buf
    }

    /// Decodes a bundle, refusing anything truncated, altered or of another format.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let bad = |m: &str| Error::BadBundle(m.to_string());
        if bytes.len() > MAX_BUNDLE_BYTES {
            return Err(bad("larger than the 512 MiB limit"));
        }
        if bytes.len() < MAGIC.len() + 2 + 4 + 32 || &bytes[..8] != MAGIC {
            return Err(bad("not a FieldSync bundle (wrong magic bytes)"));
        }
        let (body, digest) = bytes.split_at(bytes.len() - 32);
        if Sha256::digest(body).as_slice() != digest {
            return Err(bad("checksum mismatch: the file is truncated or corrupt"));
        }
        let mut r = Reader::new(&body[8..], Error::BadBundle);
        let version = r.u16()?;
        if version != BUNDLE_VERSION {
            return Err(Error::BadBundle(format!(
                "bundle format {version} is not supported (this build reads {BUNDLE_VERSION})"
            )));
        }
        let header: BundleHeader = serde_json::from_slice(r.blob()?)
            .map_err(|e| Error::BadBundle(format!("header: {e}")))?;
        let mut entries = Vec::new();
        while !r.is_empty() {
            let kind = kind_of_byte(r.u8()?, Error::BadBundle)?;
            let doc_id = r.short_str()?;
            let data = r.blob()?.to_vec();
            entries.push(BundleEntry { kind, doc_id, data });
        }
        Ok(Bundle { header, entries })
    }
}

/// The byte that names a document kind on the wire.
pub(crate) fn kind_byte(kind: DocKind) -> u8 {
    match kind {
        DocKind::Team => 0,
        DocKind::Client => 1,
    }
}

/// The document kind a wire byte names.
pub(crate) fn kind_of_byte(b: u8, bad: fn(String) -> Error) -> Result<DocKind> {
    match b {
        0 => Ok(DocKind::Team),
        1 => Ok(DocKind::Client),
        other => Err(bad(format!("unknown document kind {other}"))),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sample() -> Bundle {
        Bundle {
            header: BundleHeader {
                kind: BundleKind::Changes,
                team: "t".into(),
                founder: "aa".into(),
                from_user: "u".into(),
                created_at: 1,
                provision: None,
            },
            entries: vec![BundleEntry {
                kind: DocKind::Client,
                doc_id: "c1".into(),
                data: vec![1, 2, 3],
            }],
        }
    }

    #[test]
    fn a_bundle_round_trips() {
        let b = sample();
        assert_eq!(Bundle::decode(&b.encode()).unwrap(), b);
    }

    #[test]
    fn a_flipped_byte_is_reported_as_corrupt() {
        let mut bytes = sample().encode();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        let err = Bundle::decode(&bytes).unwrap_err().to_string();
        assert!(err.contains("checksum"), "{err}");
    }

    #[test]
    fn a_truncated_bundle_is_refused() {
        let bytes = sample().encode();
        assert!(Bundle::decode(&bytes[..bytes.len() - 5]).is_err());
        assert!(Bundle::decode(b"hello").is_err());
    }
}
