//! The sync wire format (docs/protocol.md, "HTTP sync"): one request carries the changes of
//! many documents, one response the server's answer for those documents plus every
//! document that changed since the device's cursor. Sans-IO: the replica builds requests
//! and applies responses; the caller moves the bytes.

use automerge::ChangeHash;

use crate::bundle::{kind_byte, kind_of_byte};
use crate::store::documents::DocKind;
use crate::wire::{Reader, Writer};
use crate::{Error, Result};

const MAGIC: &[u8; 4] = b"FSSY";
/// The sync format version this build speaks.
pub const SYNC_VERSION: u16 = 1;
/// Content type of sync requests and responses.
pub const CONTENT_TYPE: &str = "application/vnd.fieldsync.sync";
/// Documents a device puts in one request.
pub const DOCS_PER_REQUEST: usize = 200;

/// One document in a request or a response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncDoc {
    /// Team or client document.
    pub kind: DocKind,
    /// Document id.
    pub doc_id: String,
    /// The sender's heads of the document after this exchange (the device's heads in a
    /// request; in a response, the server's heads after it committed the upload).
    pub heads: Vec<ChangeHash>,
    /// Automerge changes the receiver may lack (possibly empty).
    pub changes: Vec<u8>,
}

/// A device's request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncRequest {
    /// The server change sequence the device has seen everything up to.
    pub cursor: u64,
    /// Documents the device changed or must reconcile.
    pub docs: Vec<SyncDoc>,
}

/// The server's response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncResponse {
    /// The cursor to send next time.
    pub cursor: u64,
    /// More changed documents wait: ask again at once.
    pub more: bool,
    /// The server's side of every requested document, and the documents changed since
    /// the cursor that the device may see.
    pub docs: Vec<SyncDoc>,
    /// Clients the device had and may no longer see (handed to someone else): the device
    /// drops its copy once its own changes are up.
    pub revoked: Vec<String>,
}

fn bad(m: String) -> Error {
    Error::invalid("sync message", m)
}

fn write_docs(w: &mut Writer, docs: &[SyncDoc]) {
    w.u32(docs.len() as u32);
    for d in docs {
        w.u8(kind_byte(d.kind));
        w.short_str(&d.doc_id);
        w.u16(d.heads.len() as u16);
        for h in &d.heads {
            w.bytes(&h.0);
        }
        w.blob(&d.changes);
    }
}

fn read_docs(r: &mut Reader<'_>, max_docs: usize) -> Result<Vec<SyncDoc>> {
    let count = r.u32()? as usize;
    if count > max_docs {
        return Err(bad(format!(
            "{count} documents in one message; the limit is {max_docs}"
        )));
    }
    let mut docs = Vec::with_capacity(count);
    for _ in 0..count {
        let kind = kind_of_byte(r.u8()?, bad)?;
        let doc_id = r.short_str()?;
        let n = r.u16()? as usize;
        let mut heads = Vec::with_capacity(n);
        for _ in 0..n {
            let mut h = [0u8; 32];
            h.copy_from_slice(r.take(32)?);
            heads.push(ChangeHash(h));
        }
        let changes = r.blob()?.to_vec();
        docs.push(SyncDoc {
            kind,
            doc_id,
            heads,
            changes,
        });
    }
    Ok(docs)
}

fn finish(r: &Reader<'_>) -> Result<()> {
    if r.is_empty() {
        Ok(())
    } else {
        Err(bad("trailing bytes".into()))
    }
}

fn header(w: &mut Writer, frame: u8, cursor: u64) {
    w.bytes(MAGIC);
    w.u16(SYNC_VERSION);
    w.u8(frame);
    w.u64(cursor);
}

fn read_header<'a>(bytes: &'a [u8], frame: u8) -> Result<(Reader<'a>, u64)> {
    if bytes.len() < 4 || &bytes[..4] != MAGIC {
        return Err(bad("not a FieldSync sync message".into()));
    }
    let mut r = Reader::new(&bytes[4..], bad);
    let version = r.u16()?;
    if version != SYNC_VERSION {
        return Err(bad(format!(
            "sync format {version} is not supported (this build speaks {SYNC_VERSION})"
        )));
    }
    if r.u8()? != frame {
        return Err(bad("wrong frame type".into()));
    }
    let cursor = r.u64()?;
    Ok((r, cursor))
}

impl SyncRequest {
    /// Encodes the request.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        header(&mut w, 1, self.cursor);
        write_docs(&mut w, &self.docs);
        w.buf
    }

    /// Decodes a request of at most `max_docs` documents.
    pub fn decode(bytes: &[u8], max_docs: usize) -> Result<Self> {
        let (mut r, cursor) = read_header(bytes, 1)?;
        let docs = read_docs(&mut r, max_docs)?;
        finish(&r)?;
        Ok(SyncRequest { cursor, docs })
    }
}

impl SyncResponse {
    /// Encodes the response.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        header(&mut w, 2, self.cursor);
        w.u8(self.more as u8);
        write_docs(&mut w, &self.docs);
        w.u32(self.revoked.len() as u32);
        for id in &self.revoked {
            w.short_str(id);
        }
        w.buf
    }

    /// Decodes a response.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let (mut r, cursor) = read_header(bytes, 2)?;
        let more = r.u8()? != 0;
        let docs = read_docs(&mut r, usize::MAX)?;
        let count = r.u32()? as usize;
        let mut revoked = Vec::with_capacity(count.min(4096));
        for _ in 0..count {
            revoked.push(r.short_str()?);
        }
        finish(&r)?;
        Ok(SyncResponse {
            cursor,
            more,
            docs,
            revoked,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_responses_round_trip() {
        let doc = SyncDoc {
            kind: DocKind::Client,
            doc_id: "c".into(),
            heads: vec![ChangeHash([7; 32])],
            changes: vec![1, 2, 3],
        };
        let req = SyncRequest {
            cursor: 42,
            docs: vec![doc.clone()],
        };
        assert_eq!(SyncRequest::decode(&req.encode(), 10).unwrap(), req);
        let resp = SyncResponse {
            cursor: 43,
            more: true,
            docs: vec![doc],
            revoked: vec!["gone".into()],
        };
        assert_eq!(SyncResponse::decode(&resp.encode()).unwrap(), resp);
    }

    #[test]
    fn truncated_or_oversized_messages_are_refused() {
        let req = SyncRequest {
            cursor: 1,
            docs: vec![
                SyncDoc {
                    kind: DocKind::Client,
                    doc_id: "c".into(),
                    heads: vec![],
                    changes: vec![9; 10],
                };
                3
            ],
        };
        let bytes = req.encode();
        assert!(SyncRequest::decode(&bytes[..bytes.len() - 1], 10).is_err());
        assert!(SyncRequest::decode(&bytes, 2).is_err());
        assert!(SyncRequest::decode(b"garbage", 10).is_err());
    }
}
