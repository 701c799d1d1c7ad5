//! Offline bundles: a file carrying automerge changes (or a replica's heads) from one
//! replica to another, by USB stick or messaging app, and the provisioning bundle a new
//! device is created from. Format version 2 (docs/protocol.md):
//!
//! ```text
//! magic "FSBUNDLE" | u16 version | u32 header length | header JSON
//! | entries: u8 kind | u16 id length | id | u32 data length | data
//!            | u32 summary length | summary JSON (length 0: none)
//! | u8 0xFF (end of entries) | SHA-256 of everything before
//! ```
//!
//! Version 1 (no summaries, no end marker) is still read. A [`BundleReader`] reads a bundle
//! from a stream one entry at a time, so a new phone never holds the whole bundle; the
//! checksum is checked at the end, before anything is committed.

use std::io::{Read, Write};

use automerge::ChangeHash;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::store::documents::DocKind;
use crate::store::read_model::ClientRows;
use crate::wire::{Reader, Writer};
use crate::{Error, Result};

const MAGIC: &[u8; 8] = b"FSBUNDLE";
/// The bundle format version this build writes (it also reads version 1).
pub const BUNDLE_VERSION: u16 = 2;
/// Largest bundle this build reads (guards memory on a hostile file).
pub const MAX_BUNDLE_BYTES: usize = 512 * 1024 * 1024;
/// The byte that ends the entries of a version 2 bundle.
const END: u8 = 0xFF;

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

/// What a provisioning bundle says about a client document besides its bytes, so that a
/// new replica stores the document without loading it (ADR 0006): its heads, the actors
/// that wrote it, and its read-model rows as the provisioning replica folded them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DocSummary {
    /// Heads of the document.
    pub heads: Vec<ChangeHash>,
    /// Automerge actors (hex) that wrote it.
    pub actors: Vec<String>,
    /// Its rows in the read model.
    pub rows: ClientRows,
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
    /// Present on a provisioning bundle's client documents.
    pub summary: Option<Box<DocSummary>>,
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
        let mut out = Vec::new();
        // Writing to a buffer cannot fail.
        if let Ok(mut w) = BundleWriter::new(&self.header, &mut out) {
            for e in &self.entries {
                let _ = w.entry(e.kind, &e.doc_id, &e.data, e.summary.as_deref());
            }
            let _ = w.finish();
        }
        out
    }

    /// Decodes a bundle, refusing anything truncated, altered or of another format.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        if bytes.len() > MAX_BUNDLE_BYTES {
            return Err(Error::BadBundle("larger than the 512 MiB limit".into()));
        }
        // With the whole bundle at hand, the checksum is checked first: an altered byte is
        // reported as such, not as whatever it broke.
        if bytes.len() > MAGIC.len() + 2 + 32
            && bytes[MAGIC.len()..MAGIC.len() + 2] == BUNDLE_VERSION.to_be_bytes()
        {
            let (body, digest) = bytes.split_at(bytes.len() - 32);
            if Sha256::digest(body).as_slice() != digest {
                return Err(bad("checksum mismatch: the file is truncated or corrupt"));
            }
        }
        let mut reader = BundleReader::new(bytes)?;
        let mut entries = Vec::new();
        while let Some(entry) = reader.next_entry()? {
            entries.push(entry);
        }
        Ok(Bundle {
            header: reader.header,
            entries,
        })
    }
}

/// Writes a bundle entry by entry into `W` (a buffer, or a response body that is sent
/// while the rest is still being written), hashing as it goes.
#[derive(Debug)]
pub struct BundleWriter<W: Write> {
    out: W,
    hasher: Sha256,
}

fn write_error(e: std::io::Error) -> Error {
    Error::Network(format!("writing the bundle: {e}"))
}

impl<W: Write> BundleWriter<W> {
    /// Starts a bundle with its header.
    pub fn new(header: &BundleHeader, out: W) -> Result<Self> {
        let mut w = BundleWriter {
            out,
            hasher: Sha256::new(),
        };
        let mut start = Writer::default();
        start.bytes(MAGIC);
        start.u16(BUNDLE_VERSION);
        start.blob(&serde_json::to_vec(header).unwrap_or_default());
        w.put(&start.buf)?;
        Ok(w)
    }

    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        self.hasher.update(bytes);
        self.out.write_all(bytes).map_err(write_error)
    }

    /// Appends one document.
    pub fn entry(
        &mut self,
        kind: DocKind,
        doc_id: &str,
        data: &[u8],
        summary: Option<&DocSummary>,
    ) -> Result<()> {
        let mut w = Writer::default();
        w.u8(kind_byte(kind));
        w.short_str(doc_id);
        w.u32(data.len() as u32);
        self.put(&w.buf)?;
        self.put(data)?;
        let summary = summary
            .map(|s| serde_json::to_vec(s).unwrap_or_default())
            .unwrap_or_default();
        self.put(&(summary.len() as u32).to_be_bytes())?;
        self.put(&summary)
    }

    /// Ends the entries, appends the checksum and flushes. A bundle dropped before this
    /// has no checksum: a reader refuses it.
    pub fn finish(mut self) -> Result<W> {
        self.put(&[END])?;
        let digest = self.hasher.clone().finalize();
        self.out.write_all(&digest).map_err(write_error)?;
        self.out.flush().map_err(write_error)?;
        Ok(self.out)
    }
}

/// Reads a bundle from a stream one entry at a time, hashing as it goes. The checksum is
/// verified when the last entry has been read ([`BundleReader::next_entry`] returns
/// `None`); a caller commits nothing before that.
pub struct BundleReader<R> {
    header: BundleHeader,
    source: Source<R>,
}

enum Source<R> {
    Stream {
        inner: R,
        hasher: Sha256,
        read: usize,
        done: bool,
    },
    /// A version 1 bundle, decoded whole (it has no end marker to stream to).
    Decoded(std::vec::IntoIter<BundleEntry>),
}

fn bad(m: impl Into<String>) -> Error {
    Error::BadBundle(m.into())
}

fn io_error(e: std::io::Error) -> Error {
    match e.kind() {
        std::io::ErrorKind::UnexpectedEof => bad("truncated"),
        _ => Error::Network(format!("reading the bundle: {e}")),
    }
}

impl<R: Read> BundleReader<R> {
    /// Reads the magic bytes, the version and the header.
    pub fn new(mut inner: R) -> Result<Self> {
        let mut start = [0u8; MAGIC.len() + 2];
        inner.read_exact(&mut start).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => bad("not a FieldSync bundle (too short)"),
            _ => io_error(e),
        })?;
        if &start[..MAGIC.len()] != MAGIC {
            return Err(bad("not a FieldSync bundle (wrong magic bytes)"));
        }
        match u16::from_be_bytes([start[8], start[9]]) {
            1 => {
                let mut bytes = start.to_vec();
                inner
                    .take(MAX_BUNDLE_BYTES as u64)
                    .read_to_end(&mut bytes)
                    .map_err(io_error)?;
                let bundle = decode_v1(&bytes)?;
                Ok(BundleReader {
                    header: bundle.header,
                    source: Source::Decoded(bundle.entries.into_iter()),
                })
            }
            BUNDLE_VERSION => {
                let mut hasher = Sha256::new();
                hasher.update(start);
                let mut source = Source::Stream {
                    inner,
                    hasher,
                    read: start.len(),
                    done: false,
                };
                let len = source.u32()? as usize;
                let header: BundleHeader = serde_json::from_slice(&source.take(len)?)
                    .map_err(|e| bad(format!("header: {e}")))?;
                Ok(BundleReader { header, source })
            }
            other => Err(bad(format!(
                "bundle format {other} is not supported (this build reads 1 and {BUNDLE_VERSION})"
            ))),
        }
    }

    /// The header.
    pub fn header(&self) -> &BundleHeader {
        &self.header
    }

    /// The next document, or `None` after the last one once the checksum has been
    /// verified.
    pub fn next_entry(&mut self) -> Result<Option<BundleEntry>> {
        let source = match &mut self.source {
            Source::Decoded(entries) => return Ok(entries.next()),
            Source::Stream { done: true, .. } => return Ok(None),
            stream => stream,
        };
        let kind = source.take(1)?[0];
        if kind == END {
            source.finish()?;
            return Ok(None);
        }
        let kind = kind_of_byte(kind, Error::BadBundle)?;
        let id_len = u16::from_be_bytes(source.take(2)?.try_into().unwrap_or_default());
        let doc_id = String::from_utf8(source.take(id_len as usize)?)
            .map_err(|_| bad("a document id is not UTF-8"))?;
        let len = source.u32()? as usize;
        let data = source.take(len)?;
        let len = source.u32()? as usize;
        let summary = match len {
            0 => None,
            n => Some(Box::new(
                serde_json::from_slice::<DocSummary>(&source.take(n)?)
                    .map_err(|e| bad(format!("summary of {doc_id}: {e}")))?,
            )),
        };
        Ok(Some(BundleEntry {
            kind,
            doc_id,
            data,
            summary,
        }))
    }
}

impl<R: Read> Source<R> {
    /// `n` bytes, hashed.
    fn take(&mut self, n: usize) -> Result<Vec<u8>> {
        let Source::Stream {
            inner,
            hasher,
            read,
            ..
        } = self
        else {
            return Err(bad("not a stream"));
        };
        *read = read.saturating_add(n);
        if *read > MAX_BUNDLE_BYTES {
            return Err(bad("larger than the 512 MiB limit"));
        }
        // Grows with what arrives: a hostile length cannot allocate ahead of the data.
        let mut buf = Vec::with_capacity(n.min(1 << 20));
        inner
            .take(n as u64)
            .read_to_end(&mut buf)
            .map_err(io_error)?;
        if buf.len() < n {
            return Err(bad("truncated"));
        }
        hasher.update(&buf);
        Ok(buf)
    }

    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Reads and checks the checksum, and that nothing follows it.
    fn finish(&mut self) -> Result<()> {
        let Source::Stream {
            inner,
            hasher,
            done,
            ..
        } = self
        else {
            return Ok(());
        };
        let mut digest = [0u8; 32];
        inner.read_exact(&mut digest).map_err(io_error)?;
        if hasher.clone().finalize().as_slice() != digest {
            return Err(bad("checksum mismatch: the file is truncated or corrupt"));
        }
        let mut extra = [0u8; 1];
        if inner.read(&mut extra).map_err(io_error)? != 0 {
            return Err(bad("data after the checksum"));
        }
        *done = true;
        Ok(())
    }
}

/// Decodes a version 1 bundle (no summaries, no end marker; the checksum is the last 32
/// bytes).
fn decode_v1(bytes: &[u8]) -> Result<Bundle> {
    if bytes.len() < MAGIC.len() + 2 + 4 + 32 {
        return Err(bad("truncated"));
    }
    let (body, digest) = bytes.split_at(bytes.len() - 32);
    if Sha256::digest(body).as_slice() != digest {
        return Err(bad("checksum mismatch: the file is truncated or corrupt"));
    }
    let mut r = Reader::new(&body[MAGIC.len() + 2..], Error::BadBundle);
    let header: BundleHeader =
        serde_json::from_slice(r.blob()?).map_err(|e| bad(format!("header: {e}")))?;
    let mut entries = Vec::new();
    while !r.is_empty() {
        let kind = kind_of_byte(r.u8()?, Error::BadBundle)?;
        let doc_id = r.short_str()?;
        let data = r.blob()?.to_vec();
        entries.push(BundleEntry {
            kind,
            doc_id,
            data,
            summary: None,
        });
    }
    Ok(Bundle { header, entries })
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
                summary: None,
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
        for cut in [1, 5, 32, 33, bytes.len() - 12] {
            assert!(
                Bundle::decode(&bytes[..bytes.len() - cut]).is_err(),
                "cut {cut}"
            );
        }
        assert!(Bundle::decode(b"hello").is_err());
    }

    #[test]
    fn bytes_after_the_checksum_are_refused() {
        let mut bytes = sample().encode();
        bytes.push(0);
        assert!(Bundle::decode(&bytes).is_err());
        let mut r = BundleReader::new(&bytes[..]).unwrap();
        assert!(r.next_entry().unwrap().is_some());
        let err = r.next_entry().unwrap_err().to_string();
        assert!(err.contains("after the checksum"), "{err}");
    }

    /// Version 1 as the previous release wrote it: no summaries, no end marker.
    fn encode_v1(b: &Bundle) -> Vec<u8> {
        let mut w = Writer::default();
        w.bytes(MAGIC);
        w.u16(1);
        w.blob(&serde_json::to_vec(&b.header).unwrap());
        for e in &b.entries {
            w.u8(kind_byte(e.kind));
            w.short_str(&e.doc_id);
            w.blob(&e.data);
        }
        let digest = Sha256::digest(&w.buf);
        w.bytes(&digest);
        w.buf
    }

    #[test]
    fn a_version_1_bundle_is_still_read() {
        let b = sample();
        assert_eq!(Bundle::decode(&encode_v1(&b)).unwrap(), b);
        let mut bytes = encode_v1(&b);
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        assert!(Bundle::decode(&bytes).is_err());
    }

    #[test]
    fn a_stream_is_read_entry_by_entry_and_checked_at_the_end() {
        let mut b = sample();
        b.entries.push(BundleEntry {
            kind: DocKind::Client,
            doc_id: "c2".into(),
            data: vec![9; 100],
            summary: None,
        });
        let mut bytes = b.encode();
        // Corrupt the last entry's data: the first entry still reads, the end does not.
        let at = bytes.len() - 32 - 1 - 4 - 10;
        bytes[at] ^= 1;
        let mut r = BundleReader::new(&bytes[..]).unwrap();
        assert_eq!(r.header(), &b.header);
        assert_eq!(r.next_entry().unwrap().unwrap().doc_id, "c1");
        assert_eq!(r.next_entry().unwrap().unwrap().doc_id, "c2");
        let err = r.next_entry().unwrap_err().to_string();
        assert!(err.contains("checksum"), "{err}");
    }

    #[test]
    fn an_unknown_version_is_refused_with_its_number() {
        let mut bytes = sample().encode();
        bytes[9] = 9;
        let err = Bundle::decode(&bytes).unwrap_err().to_string();
        assert!(err.contains("bundle format 9"), "{err}");
    }
}
