//! The device side of sync (docs/protocol.md, "HTTP sync"), sans-IO: build a request,
//! let the caller send it, apply the response. A document leaves the outbox only when
//! the server's acknowledged heads equal the device's, i.e. the server committed every
//! local change and the device has every server change.

use automerge::ChangeHash;

use super::*;
use crate::sync::{SyncDoc, SyncRequest, SyncResponse, DOCS_PER_REQUEST};

/// What one sync round did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncProgress {
    /// Documents sent.
    pub sent: usize,
    /// Documents received with changes.
    pub received: usize,
    /// Clients that changed here (for change listeners).
    pub changed_clients: Vec<String>,
    /// Documents still waiting in the outbox.
    pub pending: usize,
    /// The server has more changed documents: send another request at once.
    pub more: bool,
}

impl SyncProgress {
    /// Nothing more to send or fetch.
    pub fn is_quiet(&self) -> bool {
        !self.more && self.pending == 0
    }
}

fn kind_of(doc_id: &str) -> DocKind {
    if doc_id.starts_with("team:") {
        DocKind::Team
    } else {
        DocKind::Client
    }
}

fn same_heads(a: &[ChangeHash], b: &[ChangeHash]) -> bool {
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort();
    b.sort();
    a == b
}

impl Replica {
    /// The server change sequence this replica has seen everything up to.
    pub fn sync_cursor(&self) -> Result<u64> {
        Ok(meta_get(self.store.conn(), "sync_cursor")?
            .and_then(|c| c.parse().ok())
            .unwrap_or(0))
    }

    /// Remembers the sync server and this device's token.
    pub fn set_server(&mut self, server: &str, token: &str) -> Result<()> {
        self.store.write(|tx| {
            meta_set(tx, "server_url", server)?;
            meta_set(tx, "device_token", token)
        })
    }

    /// The remembered sync server and device token, if this replica joined one.
    pub fn server(&self) -> Result<Option<(String, String)>> {
        let url = meta_get(self.store.conn(), "server_url")?;
        let token = meta_get(self.store.conn(), "device_token")?;
        Ok(url.zip(token))
    }

    /// Forgets the server's acknowledgement of the documents of `request`, so that the next
    /// request carries them whole.
    pub fn forget_acknowledged(&mut self, request: &SyncRequest) -> Result<()> {
        self.store.write(|tx| {
            for d in &request.docs {
                documents::set_peer_heads(tx, &d.doc_id, &[])?;
            }
            Ok(())
        })
    }

    fn load_any(&self, doc_id: &str) -> Result<Option<AutoCommit>> {
        if kind_of(doc_id) == DocKind::Team {
            return Ok(Some(self.team.doc().clone()));
        }
        documents::load(self.store.conn(), doc_id)
    }

    /// A document's heads here: stored with it, or read by loading it (rows written
    /// before schema 4); empty if it is not here.
    fn local_heads(&self, doc_id: &str) -> Result<Vec<ChangeHash>> {
        if kind_of(doc_id) != DocKind::Team {
            if let Some(heads) = documents::stored_heads(self.store.conn(), doc_id)? {
                return Ok(heads);
            }
        }
        Ok(self
            .load_any(doc_id)?
            .map(|mut doc| doc.get_heads())
            .unwrap_or_default())
    }

    /// A document's heads and what it gained since `since`, from what is stored and
    /// without loading it: nothing when it is still at `since` (the usual case for a
    /// document just uploaded), else the incremental chunks saved from `since` on. `None`
    /// when the stored chunks do not start there: the caller loads the document.
    fn stored_changes_since(
        &self,
        doc_id: &str,
        since: &[ChangeHash],
    ) -> Result<Option<(Vec<ChangeHash>, Vec<u8>)>> {
        let conn = self.store.conn();
        let Some(heads) = documents::stored_heads(conn, doc_id)? else {
            return Ok(None);
        };
        if same_heads(&heads, since) {
            return Ok(Some((heads, Vec::new())));
        }
        Ok(documents::changes_since(conn, doc_id, since)?.map(|changes| (heads, changes)))
    }

    /// The next request: the outbox's documents (at most [`DOCS_PER_REQUEST`]) with the
    /// changes the server has not acknowledged, and the cursor.
    pub fn sync_request(&self) -> Result<SyncRequest> {
        let mut docs = Vec::new();
        for doc_id in documents::outbox(self.store.conn())?
            .into_iter()
            .take(DOCS_PER_REQUEST)
        {
            let acked = documents::peer_heads(self.store.conn(), &doc_id)?;
            if let Some((heads, changes)) = self.stored_changes_since(&doc_id, &acked)? {
                docs.push(SyncDoc {
                    kind: kind_of(&doc_id),
                    heads,
                    doc_id,
                    changes,
                });
                continue;
            }
            let Some(mut doc) = self.load_any(&doc_id)? else {
                continue;
            };
            let acked: Vec<ChangeHash> = acked
                .into_iter()
                .filter(|h| doc.get_change_by_hash(h).is_some())
                .collect();
            let changes = if acked.is_empty() {
                doc.save()
            } else if doc.get_changes(&acked).is_empty() {
                Vec::new()
            } else {
                doc.save_after(&acked)
            };
            docs.push(SyncDoc {
                kind: kind_of(&doc_id),
                heads: doc.get_heads(),
                doc_id,
                changes,
            });
        }
        Ok(SyncRequest {
            cursor: self.sync_cursor()?,
            docs,
        })
    }

    /// Applies the server's response in one transaction: merges its changes (validated as
    /// any received change), records the acknowledged heads, updates the outbox and the
    /// cursor. Applying the same response twice is harmless.
    pub fn apply_sync_response(
        &mut self,
        request: &SyncRequest,
        response: SyncResponse,
    ) -> Result<SyncProgress> {
        let entries: Vec<BundleEntry> = response
            .docs
            .iter()
            .filter(|d| !d.changes.is_empty())
            .map(|d| BundleEntry {
                kind: d.kind,
                doc_id: d.doc_id.clone(),
                data: d.changes.clone(),
                summary: None,
            })
            .collect();
        let prepared = self.prepare_import(&entries, false)?;
        // Heads after the merge, per document the response names.
        let mut merged: HashMap<String, Vec<ChangeHash>> = prepared
            .clients()
            .iter()
            .map(|c| (c.id.to_string(), c.heads().to_vec()))
            .collect();
        if prepared.team_changed() {
            merged.insert(team_doc_id(self.team()), prepared.team_heads().to_vec());
        }
        let mut local_heads = Vec::with_capacity(response.docs.len());
        for d in &response.docs {
            let heads = match merged.get(&d.doc_id) {
                Some(h) => h.clone(),
                None => self.local_heads(&d.doc_id)?,
            };
            local_heads.push(heads);
        }
        // Clients handed away from this user: dropped here, unless local changes made
        // since the request still have to go up (they stay in the outbox until then).
        let outbox: Vec<String> = documents::outbox(self.store.conn())?;
        let mut dropped = Vec::new();
        for id in &response.revoked {
            let sent = request.docs.iter().find(|d| &d.doc_id == id);
            let keep = match sent {
                Some(d) => {
                    let now_heads = self.load_any(id)?.map(|mut doc| doc.get_heads());
                    now_heads.is_some_and(|h| !same_heads(&h, &d.heads))
                }
                None => outbox.contains(id),
            };
            if !keep && kind_of(id) == DocKind::Client {
                dropped.push(id.clone());
            }
        }
        let now = self.now();
        let summary = self.commit_import(prepared, |tx| {
            for id in &dropped {
                read_model::delete_client(tx, id)?;
                documents::delete(tx, id)?;
            }
            for (d, local) in response.docs.iter().zip(&local_heads) {
                documents::set_peer_heads(tx, &d.doc_id, &d.heads)?;
                if same_heads(local, &d.heads) {
                    documents::outbox_remove(tx, &d.doc_id)?;
                } else {
                    // The server lacks some of ours or we lack some of its: talk again.
                    documents::outbox_add(tx, &d.doc_id, now)?;
                }
            }
            meta_set(tx, "sync_cursor", &response.cursor.to_string())
        })?;
        let mut changed_clients = summary.changed_clients;
        changed_clients.extend(dropped);
        Ok(SyncProgress {
            sent: request.docs.len(),
            received: entries.len(),
            changed_clients,
            pending: documents::outbox(self.store.conn())?.len(),
            more: response.more,
        })
    }

    // ----- the hub side, used by a sync server -------------------------------------------

    /// This replica's latest change sequence number.
    pub fn change_seq(&self) -> Result<u64> {
        documents::current_seq(self.store.conn())
    }

    /// Documents changed after `cursor`, oldest first, at most `limit`: `(id, kind, seq)`.
    pub fn changed_since(&self, cursor: u64, limit: usize) -> Result<Vec<(String, DocKind, u64)>> {
        documents::changed_since(self.store.conn(), cursor, limit)
    }

    /// A document's heads here and the changes a peer that has `their_heads` lacks
    /// (`None` if the document is not stored).
    pub fn changes_for_peer(
        &self,
        doc_id: &str,
        their_heads: &[ChangeHash],
    ) -> Result<Option<(Vec<ChangeHash>, Vec<u8>)>> {
        if let Some(answer) = self.stored_changes_since(doc_id, their_heads)? {
            return Ok(Some(answer));
        }
        let Some(mut doc) = self.load_any(doc_id)? else {
            return Ok(None);
        };
        let known: Vec<ChangeHash> = their_heads
            .iter()
            .copied()
            .filter(|h| doc.get_change_by_hash(h).is_some())
            .collect();
        let changes = if known.is_empty() {
            doc.save()
        } else if doc.get_changes(&known).is_empty() {
            Vec::new()
        } else {
            doc.save_after(&known)
        };
        Ok(Some((doc.get_heads(), changes)))
    }
}
