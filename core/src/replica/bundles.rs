//! Offline bundles on a replica: export, heads, and the all-or-nothing import.

use std::collections::BTreeSet;

use crate::client::ClientRecord;
use crate::fold::fold_record;

use super::*;

/// `(document id, heads)` of several documents.
pub(super) type DocHeads = Vec<(String, Vec<ChangeHash>)>;

impl Replica {
    // ----- bundles ----------------------------------------------------------------------

    /// A bundle of the team document and `client_ids`, each whole or, with `have`, only
    /// what that replica lacks; also the heads of every document included.
    pub(super) fn bundle_of(
        &self,
        client_ids: &[String],
        have: Option<&HashMap<String, Vec<ChangeHash>>>,
    ) -> Result<(Bundle, DocHeads)> {
        let mut entries = Vec::new();
        let mut heads_of = Vec::new();
        let mut add = |kind: DocKind, doc_id: &str, mut doc: AutoCommit| {
            heads_of.push((doc_id.to_string(), doc.get_heads()));
            let data = match have.and_then(|h| h.get(doc_id)) {
                Some(heads) => {
                    let known: Vec<ChangeHash> = heads
                        .iter()
                        .copied()
                        .filter(|h| doc.get_change_by_hash(h).is_some())
                        .collect();
                    if doc.get_changes(&known).is_empty() {
                        return;
                    }
                    doc.save_after(&known)
                }
                None => doc.save(),
            };
            entries.push(BundleEntry {
                kind,
                doc_id: doc_id.to_string(),
                data,
                summary: None,
            });
        };
        let team_id = team_doc_id(self.team());
        add(DocKind::Team, &team_id, self.team.doc().clone());
        for id in client_ids {
            if let Some(doc) = documents::load(self.store.conn(), id)? {
                add(DocKind::Client, id, doc);
            }
        }
        let bundle = Bundle {
            header: BundleHeader {
                kind: BundleKind::Changes,
                team: self.team().id.clone(),
                founder: self.team.founder().to_string(),
                from_user: self.me.to_string(),
                created_at: self.now(),
                provision: None,
            },
            entries,
        };
        Ok((bundle, heads_of))
    }

    /// This replica's heads per document, for another replica's [`Replica::export`].
    pub fn heads(&self) -> Result<Vec<u8>> {
        let mut entries = Vec::new();
        let mut push = |kind, doc_id: String, mut doc: AutoCommit| {
            let data = doc.get_heads().iter().flat_map(|h| h.0).collect();
            entries.push(BundleEntry {
                kind,
                doc_id,
                data,
                summary: None,
            });
        };
        push(
            DocKind::Team,
            team_doc_id(self.team()),
            self.team.doc().clone(),
        );
        for id in documents::ids(self.store.conn(), DocKind::Client)? {
            if let Some(doc) = documents::load(self.store.conn(), &id)? {
                push(DocKind::Client, id, doc);
            }
        }
        Ok(Bundle {
            header: BundleHeader {
                kind: BundleKind::Heads,
                team: self.team().id.clone(),
                founder: self.team.founder().to_string(),
                from_user: self.me.to_string(),
                created_at: self.now(),
                provision: None,
            },
            entries,
        }
        .encode())
    }

    /// Exports every document as a bundle; given another replica's heads file, only the
    /// changes that replica lacks.
    pub fn export(&self, have: Option<&[u8]>) -> Result<Vec<u8>> {
        let have = match have {
            None => None,
            Some(bytes) => {
                let bundle = Bundle::decode(bytes)?;
                if bundle.header.kind != BundleKind::Heads {
                    return Err(Error::BadBundle(
                        "expected a heads file (`fieldsync heads`)".into(),
                    ));
                }
                self.check_team(&bundle.header)?;
                let mut map = HashMap::new();
                for e in bundle.entries {
                    if e.data.len() % 32 != 0 {
                        return Err(Error::BadBundle(format!(
                            "heads of {} are malformed",
                            e.doc_id
                        )));
                    }
                    let hashes = e
                        .data
                        .chunks(32)
                        .map(|c| ChangeHash(c.try_into().unwrap_or([0; 32])))
                        .collect();
                    map.insert(e.doc_id, hashes);
                }
                Some(map)
            }
        };
        let ids = documents::ids(self.store.conn(), DocKind::Client)?;
        Ok(self.bundle_of(&ids, have.as_ref())?.0.encode())
    }

    pub(super) fn check_team(&self, header: &BundleHeader) -> Result<()> {
        if header.team != self.team().id {
            return Err(Error::BadBundle(format!(
                "it belongs to team {}, this replica is team {} ({})",
                header.team,
                self.team().id,
                self.team().name
            )));
        }
        Ok(())
    }

    /// Merges a bundle. Idempotent; all or nothing: a corrupt or foreign bundle changes
    /// nothing.
    pub fn import(&mut self, bytes: &[u8]) -> Result<ImportSummary> {
        let bundle = Bundle::decode(bytes)?;
        if bundle.header.kind != BundleKind::Changes {
            return Err(Error::BadBundle(
                "this is a heads file, not a bundle of changes".into(),
            ));
        }
        self.check_team(&bundle.header)?;
        self.import_bundle(bundle, false)
    }

    pub(super) fn import_bundle(&mut self, bundle: Bundle, first: bool) -> Result<ImportSummary> {
        let prepared = self.prepare_import(&bundle.entries, first)?;
        self.commit_import(prepared, |_| Ok(()))
    }

    /// Merges documents received from elsewhere (a bundle, a sync response, a device's
    /// upload) in memory and validates them: schema, ids, team, immutable events, and
    /// team changes by admins only. Nothing is written; see [`Replica::commit_import`].
    pub fn prepare_import(&self, entries: &[BundleEntry], first: bool) -> Result<PreparedImport> {
        let team_id = self.team.id()?;
        let team_doc_key = team_doc_id(self.team());
        let mut team_doc = self.team.doc().clone();
        let team_before = if first {
            None
        } else {
            Some(team_doc.get_heads())
        };
        let mut clients: Vec<PreparedClient> = Vec::new();
        for entry in entries {
            let corrupt = |e: automerge::AutomergeError| Error::CorruptDocument {
                doc: entry.doc_id.clone(),
                reason: e.to_string(),
            };

            match entry.kind {
                DocKind::Team => {
                    if entry.doc_id != team_doc_key {
                        return Err(Error::BadBundle(format!(
                            "foreign team document {}",
                            entry.doc_id
                        )));
                    }
                    team_doc.load_incremental(&entry.data).map_err(corrupt)?;
                }
                DocKind::Client => {
                    let id: ClientId = entry.doc_id.parse().map_err(|_| {
                        Error::BadBundle(format!("{:?} is not a client id", entry.doc_id))
                    })?;
                    // The same document twice merges into one entry.
                    if let Some(c) = clients.iter_mut().find(|c| c.id == id) {
                        c.doc
                            .doc_mut()
                            .load_incremental(&entry.data)
                            .map_err(corrupt)?;
                        continue;
                    }
                    let existing = documents::load(self.store.conn(), &entry.doc_id)?;
                    let known = existing.is_some();
                    let mut doc = existing.unwrap_or_default();
                    let before = known.then(|| doc.get_heads());
                    doc.load_incremental(&entry.data).map_err(corrupt)?;
                    clients.push(PreparedClient {
                        id,
                        doc: ClientDoc::from_doc(doc, None)?,
                        before,
                        new_actors: BTreeSet::new(),
                        heads: Vec::new(),
                        record: None,
                    });
                }
            }
        }
        for c in clients.iter_mut() {
            let with_id = |e: Error| match e {
                Error::CorruptDocument { reason, .. } => Error::CorruptDocument {
                    doc: c.id.to_string(),
                    reason,
                },
                other => other,
            };
            // A document whose creating change has not arrived (a delta for a replica
            // that lacks the document) has nothing to check yet.
            if c.before.is_none() && c.doc.doc_mut().get_heads().is_empty() {
                return Err(Error::CorruptDocument {
                    doc: c.id.to_string(),
                    reason: "the changes build on history this replica does not have".into(),
                });
            }
            let check = ClientDoc::from_doc(c.doc.doc().clone(), Some((c.id, team_id)));
            check.map_err(with_id)?;
            let received = c
                .doc
                .doc_mut()
                .get_changes(c.before.as_deref().unwrap_or_default());
            c.doc
                .check_received(&received, c.before.is_some())
                .map_err(with_id)?;
            c.new_actors = received
                .iter()
                .map(|ch| ch.actor_id().to_hex_string())
                .collect();
            c.heads = c.doc.doc_mut().get_heads();
            // A document that gains changes is read once here: the caller's checks and the
            // fold use that.
            if c.before.as_deref() != Some(&c.heads[..]) {
                c.record = Some(c.doc.record().map_err(with_id)?);
            }
        }
        if !first && entries.iter().all(|e| e.kind != DocKind::Team) {
            // The usual sync: no team changes, nothing to re-read or check.
            let mut team = self.team.clone();
            return Ok(PreparedImport {
                team_heads: team.doc_mut().get_heads(),
                entries: entries.len(),
                team_actors: BTreeSet::new(),
                team,
                team_before,
                team_changed: false,
                clients,
            });
        }
        let team_new_changes = team_doc.get_changes(team_before.as_deref().unwrap_or_default());
        let mut team = TeamDoc::from_doc(team_doc, self.team.founder())?;
        // Only the founder and admins write the team document (ADR 0004): changes that
        // carry anyone else's team changes are refused whole.
        let trusted = team.trusted_actors();
        if let Some(change) = team_new_changes
            .iter()
            .find(|c| !trusted.contains(&c.actor_id().to_hex_string()))
        {
            return Err(Error::BadBundle(format!(
                "the team document carries a change by actor {} that is not a team admin",
                change.actor_id().to_hex_string()
            )));
        }
        let team_heads = team.doc_mut().get_heads();
        let team_changed = team_before.as_deref() != Some(&team_heads[..]);
        Ok(PreparedImport {
            team_heads,
            entries: entries.len(),
            team_actors: team_new_changes
                .iter()
                .map(|c| c.actor_id().to_hex_string())
                .collect(),
            team,
            team_before,
            team_changed,
            clients,
        })
    }

    /// Stores a prepared import in one transaction, together with `extra` writes of the
    /// caller (sync bookkeeping), and re-folds the read model.
    pub fn commit_import(
        &mut self,
        mut prepared: PreparedImport,
        extra: impl FnOnce(&rusqlite::Transaction) -> Result<()>,
    ) -> Result<ImportSummary> {
        let now = self.now();
        let team_doc_key = team_doc_id(prepared.team.team());
        let mut summary = ImportSummary {
            documents: prepared.entries,
            ..Default::default()
        };
        for c in prepared.clients.iter_mut() {
            if c.before.is_none() {
                summary.new_clients += 1;
            }
            if c.before.as_deref() != Some(&c.doc.doc_mut().get_heads()[..]) {
                summary.changed += 1;
                summary.changed_clients.push(c.id.to_string());
            }
        }
        let team_changed = prepared.team_changed;
        if team_changed {
            summary.changed += 1;
        }
        // A new team document can change what the fold believes (roles, registry).
        let refold = if team_changed {
            clients_to_refold(self.store.conn(), &self.team, &prepared.team)?
        } else {
            Vec::new()
        };
        let mut others: Vec<String> = refold
            .iter()
            .filter(|id| prepared.clients.iter().all(|c| c.id.to_string() != **id))
            .cloned()
            .collect();
        read_model::in_row_order(self.store.conn(), &mut prepared.clients, |c| {
            c.id.to_string()
        })?;
        read_model::in_row_order(self.store.conn(), &mut others, String::clone)?;
        let team = &mut prepared.team;
        let team_before = prepared.team_before.as_deref();
        let clients = &mut prepared.clients;
        self.store.write(|tx| {
            if team_changed {
                documents::save(
                    tx,
                    &team_doc_key,
                    DocKind::Team,
                    team.doc_mut(),
                    team_before,
                    now,
                )?;
            }
            for c in clients.iter_mut() {
                let changed = documents::save(
                    tx,
                    &c.id.to_string(),
                    DocKind::Client,
                    c.doc.doc_mut(),
                    c.before.as_deref(),
                    now,
                )?;
                if changed || refold.contains(&c.id.to_string()) {
                    let view = match c.record.take() {
                        Some(record) => fold_record(record, &c.doc, team, now)?,
                        None => fold(&c.doc, team, now)?,
                    };
                    read_model::upsert_client(tx, &view, &team.team().pipeline)?;
                }
            }
            refresh_clients(tx, team, &others, now)?;
            extra(tx)
        })?;
        self.team = prepared.team;
        Ok(summary)
    }
}

/// One client document of a [`PreparedImport`].
pub struct PreparedClient {
    /// The client.
    pub id: ClientId,
    doc: ClientDoc,
    before: Option<Vec<ChangeHash>>,
    new_actors: BTreeSet<String>,
    heads: Vec<ChangeHash>,
    record: Option<ClientRecord>,
}

impl PreparedClient {
    /// Whether this replica had the client before.
    pub fn existed(&self) -> bool {
        self.before.is_some()
    }

    /// Automerge actors (hex) that wrote the changes this import adds.
    pub fn new_actors(&self) -> &BTreeSet<String> {
        &self.new_actors
    }

    /// The merged document.
    pub fn doc(&self) -> &ClientDoc {
        &self.doc
    }

    /// Heads of the merged document.
    pub fn heads(&self) -> &[ChangeHash] {
        &self.heads
    }

    /// The merged document's record, read once when it was prepared.
    pub fn record(&self) -> Result<ClientRecord> {
        match &self.record {
            Some(record) => Ok(record.clone()),
            None => self.doc.record(),
        }
    }
}

/// Received documents merged in memory and validated, not yet stored.
pub struct PreparedImport {
    entries: usize,
    team: TeamDoc,
    team_before: Option<Vec<ChangeHash>>,
    team_changed: bool,
    team_actors: BTreeSet<String>,
    team_heads: Vec<ChangeHash>,
    clients: Vec<PreparedClient>,
}

impl PreparedImport {
    /// The client documents, merged.
    pub fn clients(&self) -> &[PreparedClient] {
        &self.clients
    }

    /// Whether the team document gains changes.
    pub fn team_changed(&self) -> bool {
        self.team_changed
    }

    /// Actors (hex) that wrote the team changes this import adds.
    pub fn team_actors(&self) -> &BTreeSet<String> {
        &self.team_actors
    }

    /// The merged team document.
    pub fn team(&self) -> &TeamDoc {
        &self.team
    }

    /// Heads of the merged team document.
    pub fn team_heads(&self) -> &[ChangeHash] {
        &self.team_heads
    }
}
