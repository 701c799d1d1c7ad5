//! Client operations on a replica: the pipeline rules of DESIGN.md §1 enforced offline, and reads.

use super::*;

impl Replica {
    // ----- clients ----------------------------------------------------------------------

    pub(super) fn load_client(&self, id: &ClientId) -> Result<(ClientDoc, Vec<ChangeHash>)> {
        let mut doc = documents::load(self.store.conn(), &id.to_string())?
            .ok_or(Error::UnknownClient(*id))?;
        let heads = doc.get_heads();
        doc.set_actor(self.actor.clone());
        Ok((
            ClientDoc::from_doc(doc, Some((*id, self.team.id()?)))?,
            heads,
        ))
    }

    pub(super) fn save_client(
        &mut self,
        id: &ClientId,
        doc: &mut ClientDoc,
        before: Option<&[ChangeHash]>,
        message: &str,
    ) -> Result<ClientView> {
        let now = self.now();
        commit(doc.doc_mut(), message, now);
        let view = fold(doc, &self.team, now)?;
        let team = &self.team;
        let doc_id = id.to_string();
        self.store.write(|tx| {
            documents::save(tx, &doc_id, DocKind::Client, doc.doc_mut(), before, now)?;
            read_model::upsert_client(tx, &view, &team.team().pipeline)?;
            documents::outbox_add(tx, &doc_id, now)
        })?;
        Ok(view)
    }

    /// Loads a client, checks the acting user may edit it, applies `f`, saves.
    pub(super) fn edit_client_with(
        &mut self,
        id: &ClientId,
        message: &str,
        f: impl FnOnce(&mut ClientDoc, &ClientView, &Replica) -> Result<()>,
    ) -> Result<ClientView> {
        self.require_active()?;
        let (mut doc, heads) = self.load_client(id)?;
        let view = fold(&doc, &self.team, self.now())?;
        let me = self.me.to_string();
        let role = self.my_role();
        let allowed = role == Role::Admin
            || view.owner == me
            || view.collaborators.contains(&me)
            || view.supervisor.as_deref() == Some(&me)
            || (role == Role::Manager
                && view
                    .owner
                    .parse()
                    .is_ok_and(|o| self.team.is_in_subtree(&self.me, &o)));
        if !allowed {
            return Err(Error::NotPermitted(format!(
                "client {id} belongs to another rep; ask their manager to add you as a collaborator"
            )));
        }
        f(&mut doc, &view, self)?;
        self.save_client(id, &mut doc, Some(&heads), message)
    }

    /// Creates a client in the pipeline's first stage. Refuses a likely duplicate with
    /// [`Error::Duplicate`] unless `allow_duplicate` is set.
    pub fn create_client(&mut self, new: NewClient) -> Result<ClientId> {
        self.require_active()?;
        let mut profile = BTreeMap::new();
        for (k, v) in new.profile {
            validate_field(&k)?;
            if !v.trim().is_empty() {
                profile.insert(k, v.trim().to_string());
            }
        }
        if !profile.contains_key("name") {
            return Err(Error::invalid("name", "a client needs a name"));
        }
        if let Some(grade) = profile.get("grade") {
            validate_grade(grade)?;
        }
        let owner = new.owner.unwrap_or(self.me);
        if owner != self.me {
            self.require_role(
                &[Role::Admin, Role::Manager],
                "creating a client for someone else",
            )?;
        }
        match self.team.member(&owner) {
            None => return Err(Error::UnknownUser(owner.to_string())),
            Some(m) if m.departed => return Err(Error::Departed(owner)),
            Some(_) => {}
        }
        if !new.allow_duplicate {
            let get = |k: &str| profile.get(k).map(String::as_str);
            let matches = read_model::duplicates_of(
                self.store.conn(),
                get("phone"),
                get("email"),
                get("company"),
                None,
            )?;
            if !matches.is_empty() {
                return Err(Error::Duplicate { matches });
            }
        }
        let id = ClientId::random();
        let now = self.now();
        let mut doc = ClientDoc::create(
            AutoCommit::new().with_actor(self.actor.clone()),
            id,
            self.team.id()?,
            self.me,
            owner,
            &self.team().pipeline.initial().key,
            profile,
            &new.tags,
            now,
        )?;
        self.save_client(&id, &mut doc, None, "create client")?;
        Ok(id)
    }

    /// Sets (`Some`) or clears (`None`) profile fields. Also resolves a conflict: the
    /// value written replaces every concurrent one.
    pub fn edit_client(
        &mut self,
        id: &ClientId,
        fields: &[(String, Option<String>)],
    ) -> Result<ClientView> {
        for (k, v) in fields {
            validate_field(k)?;
            if k == "name" && v.as_deref().is_none_or(|v| v.trim().is_empty()) {
                return Err(Error::invalid("name", "a client needs a name"));
            }
            if let (true, Some(v)) = (k == "grade", v) {
                validate_grade(v)?;
            }
        }
        self.edit_client_with(id, "edit profile", |doc, _, _| {
            for (k, v) in fields {
                doc.set_field(k, v.as_deref().map(str::trim).filter(|v| !v.is_empty()))?;
            }
            Ok(())
        })
    }

    /// Adds and removes tags.
    pub fn tag_client(
        &mut self,
        id: &ClientId,
        add: &[String],
        remove: &[String],
    ) -> Result<ClientView> {
        self.edit_client_with(id, "tags", |doc, _, _| {
            for t in add {
                doc.set_tag(t, true)?;
            }
            for t in remove {
                doc.set_tag(t, false)?;
            }
            Ok(())
        })
    }

    /// Adds or removes a collaborator (协作者).
    pub fn set_collaborator(
        &mut self,
        id: &ClientId,
        user: UserId,
        present: bool,
    ) -> Result<ClientView> {
        if self.team.member(&user).is_none() {
            return Err(Error::UnknownUser(user.to_string()));
        }
        self.edit_client_with(id, "collaborators", |doc, _, _| {
            doc.set_collaborator(&user, present)
        })
    }

    /// Sets the supervisor (监督者); `None` falls back to the owner's manager.
    pub fn set_supervisor(&mut self, id: &ClientId, user: Option<UserId>) -> Result<ClientView> {
        if let Some(u) = user {
            if self.team.member(&u).is_none() {
                return Err(Error::UnknownUser(u.to_string()));
            }
        }
        self.edit_client_with(id, "supervisor", |doc, _, _| {
            doc.set_supervisor(user.as_ref())
        })
    }

    /// Appends a note, call or visit. A call or visit meets the stage's contact SLA.
    pub fn add_note(&mut self, id: &ClientId, kind: NoteKind, text: &str) -> Result<ClientView> {
        if text.trim().is_empty() {
            return Err(Error::invalid("text", "a note needs text"));
        }
        let note = Note {
            id: uuid::Uuid::new_v4().to_string(),
            kind: kind.as_str().into(),
            text: text.trim().to_string(),
            by: self.me.to_string(),
            at: self.now(),
        };
        self.edit_client_with(id, &format!("{} logged", kind.as_str()), |doc, _, _| {
            doc.append(EventList::Notes, &note)
        })
    }

    /// Moves a client to another stage, enforcing the lead-quality gate, the exception
    /// (green) channel and loss reasons.
    pub fn move_stage(&mut self, id: &ClientId, to: &str, opts: MoveOptions) -> Result<ClientView> {
        let pipeline = self.team().pipeline.clone();
        let rules = self.team().rules.clone();
        let target = pipeline.require(to)?.clone();
        let now = self.now();
        let me = self.me.to_string();
        self.edit_client_with(id, &format!("move to {}", target.key), |doc, view, _| {
            let from = view.stage.clone();
            if from == target.key {
                return Err(Error::invalid(
                    "stage",
                    format!("client is already in {}", target.name),
                ));
            }
            // Lead-quality gate: disqualifying (a move to lost) is always allowed.
            if from == pipeline.initial().key && target.kind() != StageKind::Lost {
                let missing: Vec<String> = rules
                    .required_lead_fields
                    .iter()
                    .filter(|f| view.profile.get(*f).is_none_or(|v| v.trim().is_empty()))
                    .cloned()
                    .collect();
                if !missing.is_empty() {
                    return Err(Error::GateRefused { missing });
                }
            }
            let reason = opts
                .reason
                .as_deref()
                .map(str::trim)
                .filter(|r| !r.is_empty());
            let on_edge = pipeline.is_edge(&from, &target.key);
            let green_channel = opts.skip && reason.is_some();
            if !on_edge && !green_channel {
                return Err(Error::ExceptionNeedsReason {
                    from,
                    to: target.key.clone(),
                });
            }
            let loss_reason = if target.kind() == StageKind::Lost {
                let given = opts.loss_reason.as_deref().map(str::trim).unwrap_or("");
                let found = match_loss_reason(&rules.loss_reasons, given);
                match found {
                    Some(r) => Some(r.clone()),
                    None => {
                        return Err(Error::LossReasonRequired {
                            stage: target.key.clone(),
                            allowed: rules.loss_reasons.clone(),
                        })
                    }
                }
            } else {
                None
            };
            let after = view.current_transition.clone();
            doc.append(
                EventList::Transitions,
                &StageTransition {
                    id: uuid::Uuid::new_v4().to_string(),
                    from,
                    to: target.key.clone(),
                    by: me.clone(),
                    at: now,
                    reason: reason.map(str::to_string),
                    skipped: !on_edge,
                    loss_reason,
                    after,
                },
            )?;
            if target.kind() == StageKind::Won {
                for item in &rules.onboarding {
                    if view.onboarding.iter().all(|t| t.key != item.key) {
                        doc.append(
                            EventList::Onboarding,
                            &OnboardingTask {
                                key: item.key.clone(),
                                title: item.title.clone(),
                                at: now,
                            },
                        )?;
                    }
                }
            }
            Ok(())
        })
    }

    /// Marks an onboarding task done.
    pub fn complete_task(&mut self, id: &ClientId, key: &str) -> Result<ClientView> {
        let done = TaskDone {
            key: key.to_string(),
            by: self.me.to_string(),
            at: self.now(),
        };
        self.edit_client_with(id, "onboarding task done", |doc, view, _| {
            if view.onboarding.iter().all(|t| t.key != done.key) {
                return Err(Error::invalid(
                    "task",
                    format!("no onboarding task {:?}", done.key),
                ));
            }
            doc.append(EventList::TasksDone, &done)
        })
    }

    /// Requests approval of a quote. Within the discount band no approval is needed;
    /// beyond it every configured approval role must approve, in any order.
    pub fn request_quote(
        &mut self,
        id: &ClientId,
        amount_cents: i64,
        discount_pct: f64,
    ) -> Result<(String, ClientView)> {
        if amount_cents <= 0 {
            return Err(Error::invalid("amount", "must be positive"));
        }
        if !(0.0..=100.0).contains(&discount_pct) {
            return Err(Error::invalid(
                "discount",
                "must be between 0 and 100 percent",
            ));
        }
        let rules = &self.team().rules;
        let required_roles = if discount_pct <= rules.discount_band_pct {
            vec![]
        } else {
            rules.approval_roles.clone()
        };
        let quote = Quote {
            id: uuid::Uuid::new_v4().to_string(),
            amount_cents,
            discount_pct,
            by: self.me.to_string(),
            at: self.now(),
            required_roles,
        };
        let quote_id = quote.id.clone();
        let view = self.edit_client_with(id, "quote requested", |doc, _, _| {
            doc.append(EventList::Quotes, &quote)
        })?;
        Ok((quote_id, view))
    }

    /// Records one approver's decision for one role on a quote.
    pub fn decide_quote(
        &mut self,
        id: &ClientId,
        quote_id: &str,
        role: &str,
        approve: bool,
        comment: Option<&str>,
    ) -> Result<ClientView> {
        self.require_active()?;
        let member = self
            .team
            .member(&self.me)
            .cloned()
            .ok_or(Error::UnknownUser(self.me.to_string()))?;
        let my_role = self.my_role();
        let entitled = member.approves.iter().any(|r| r == role)
            || my_role == Role::Admin
            || (role == "manager" && my_role == Role::Manager);
        if !entitled {
            return Err(Error::NotPermitted(format!(
                "you do not sign for the approval role {role:?}"
            )));
        }
        let approval = Approval {
            id: uuid::Uuid::new_v4().to_string(),
            quote: quote_id.to_string(),
            role: role.to_string(),
            decision: if approve { "approved" } else { "rejected" }.into(),
            by: self.me.to_string(),
            at: self.now(),
            comment: comment.map(str::to_string),
        };
        // Approvers decide on clients they may not own: no ownership check here.
        let (mut doc, heads) = self.load_client(id)?;
        let view = fold(&doc, &self.team, self.now())?;
        let quote = view
            .quotes
            .iter()
            .find(|q| q.quote.id == quote_id)
            .ok_or_else(|| Error::UnknownQuote(quote_id.to_string()))?;
        if !quote.quote.required_roles.iter().any(|r| r == role) {
            return Err(Error::invalid(
                "role",
                format!("quote {quote_id} does not need {role:?} approval"),
            ));
        }
        doc.append(EventList::Approvals, &approval)?;
        self.save_client(id, &mut doc, Some(&heads), "quote decision")
    }

    /// Hands clients to a new owner (manager or admin). History stays with the client.
    pub fn handover(
        &mut self,
        ids: &[ClientId],
        to: UserId,
        reason: Option<&str>,
    ) -> Result<Vec<ClientView>> {
        self.require_role(&[Role::Admin, Role::Manager], "a handover")?;
        match self.team.member(&to) {
            None => return Err(Error::UnknownUser(to.to_string())),
            Some(m) if m.departed => return Err(Error::Departed(to)),
            Some(_) => {}
        }
        let manager_scope = (self.my_role() == Role::Manager).then_some(self.me);
        if let Some(m) = manager_scope {
            if !self.team.is_in_subtree(&m, &to) {
                return Err(Error::NotPermitted(format!(
                    "{to} is not in your team; a manager hands clients over within their subtree"
                )));
            }
        }
        // Check every client before writing any, so a refused handover changes nothing.
        for id in ids {
            let row = read_model::get(self.store.conn(), &id.to_string())?
                .ok_or(Error::UnknownClient(*id))?;
            if let Some(m) = manager_scope {
                if !row
                    .owner
                    .parse()
                    .is_ok_and(|o| self.team.is_in_subtree(&m, &o))
                {
                    return Err(Error::NotPermitted(format!(
                        "client {id} is owned outside your team"
                    )));
                }
            }
        }
        // Every handover is written in one transaction: all of them or none.
        let now = self.now();
        let mut out = Vec::with_capacity(ids.len());
        let mut batch = Vec::with_capacity(ids.len());
        for id in ids {
            let (mut doc, heads) = self.load_client(id)?;
            let view = fold(&doc, &self.team, now)?;
            if view.owner == to.to_string() {
                out.push(view);
                continue;
            }
            let after = view.current_handover.clone();
            doc.append(
                EventList::Handovers,
                &Handover {
                    id: uuid::Uuid::new_v4().to_string(),
                    from: view.owner.clone(),
                    to: to.to_string(),
                    by: self.me.to_string(),
                    at: now,
                    reason: reason.map(str::to_string),
                    after,
                },
            )?;
            commit(doc.doc_mut(), "handover", now);
            let view = fold(&doc, &self.team, now)?;
            batch.push((id.to_string(), doc, heads, view));
        }
        let team = &self.team;
        self.store.write(|tx| {
            for (doc_id, doc, heads, view) in batch.iter_mut() {
                documents::save(tx, doc_id, DocKind::Client, doc.doc_mut(), Some(heads), now)?;
                read_model::upsert_client(tx, view, &team.team().pipeline)?;
                documents::outbox_add(tx, doc_id, now)?;
            }
            Ok(())
        })?;
        out.extend(batch.into_iter().map(|(_, _, _, view)| view));
        Ok(out)
    }

    /// Hands every client currently owned by `from` to `to` (离职继承).
    pub fn handover_all(
        &mut self,
        from: UserId,
        to: UserId,
        reason: Option<&str>,
    ) -> Result<Vec<ClientView>> {
        let ids: Vec<ClientId> = read_model::list(
            self.store.conn(),
            &ClientFilter {
                owner: Some(from.to_string()),
                ..Default::default()
            },
        )?
        .into_iter()
        .map(|r| r.id.parse())
        .collect::<Result<_>>()?;
        self.handover(&ids, to, reason)
    }

    // ----- reading ----------------------------------------------------------------------

    /// One client's full derived state (loads its document).
    pub fn client(&self, id: &ClientId) -> Result<ClientView> {
        let (doc, _) = self.load_client(id)?;
        fold(&doc, &self.team, self.now())
    }

    /// Finds a client by id or by an unambiguous id prefix.
    pub fn resolve_client(&self, id_or_prefix: &str) -> Result<ClientId> {
        let wanted = id_or_prefix.trim();
        if let Ok(id) = wanted.parse::<ClientId>() {
            return Ok(id);
        }
        let matches: Vec<ClientRow> =
            read_model::list(self.store.conn(), &ClientFilter::default())?
                .into_iter()
                .filter(|r| !wanted.is_empty() && r.id.starts_with(wanted))
                .collect();
        match matches.as_slice() {
            [one] => one.id.parse(),
            [] => Err(Error::invalid(
                "client",
                format!("no client id starts with {wanted:?}"),
            )),
            _ => Err(Error::invalid(
                "client",
                format!("{wanted:?} matches several clients"),
            )),
        }
    }

    /// One client's read-model row.
    pub fn client_row(&self, id: &str) -> Result<Option<ClientRow>> {
        read_model::get(self.store.conn(), id)
    }

    /// Lists clients from the read model.
    pub fn list(&self, filter: &ClientFilter) -> Result<Vec<ClientRow>> {
        read_model::list(self.store.conn(), filter)
    }

    /// Full-text search over profiles, tags and notes (Chinese substrings included).
    pub fn search(&self, query: &str) -> Result<Vec<ClientRow>> {
        read_model::search(self.store.conn(), query)
    }

    /// Clients with profile conflicts or concurrent moves or handovers to review.
    pub fn conflicts(&self) -> Result<Vec<ClientConflicts>> {
        let mut out = Vec::new();
        for row in read_model::list(self.store.conn(), &ClientFilter::default())? {
            if !row.needs_review {
                continue;
            }
            let view = self.client(&row.id.parse()?)?;
            out.push(ClientConflicts {
                client_id: view.id.clone(),
                name: view.name().to_string(),
                fields: view.conflicts,
                concurrent_moves: view.concurrent_moves,
                concurrent_handovers: view.concurrent_handovers,
            });
        }
        out.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        Ok(out)
    }

    /// Groups of clients that look like the same customer.
    pub fn duplicates(&self) -> Result<Vec<Vec<DuplicateMatch>>> {
        read_model::duplicate_groups(self.store.conn())
    }

    /// The pipeline board.
    pub fn board(&self) -> Result<Board> {
        report::board(self.store.conn(), self.team(), self.now())
    }

    /// The flow-health report.
    pub fn report(&self) -> Result<FlowReport> {
        report::flow_report(self.store.conn(), self.team(), self.now())
    }

    /// Overdue clients per supervisor (escalation list).
    pub fn overdue(&self) -> Result<Vec<OverdueGroup>> {
        report::overdue_by_supervisor(self.store.conn(), self.now())
    }

    /// Documents changed locally and not yet acknowledged by a server.
    pub fn outbox(&self) -> Result<Vec<String>> {
        documents::outbox(self.store.conn())
    }

    /// The store (for sync and tests).
    pub fn store(&self) -> &Store {
        &self.store
    }
}

/// Finds the configured loss reason meant by `given`: the whole configured string, its
/// Chinese part (before the first space) or its English part (after it, any case). An
/// ambiguous or unknown answer matches nothing.
fn match_loss_reason<'a>(configured: &'a [String], given: &str) -> Option<&'a String> {
    let given = given.trim();
    if given.is_empty() {
        return None;
    }
    let matches: Vec<&String> = configured
        .iter()
        .filter(|r| {
            let (zh, en) = r.split_once(' ').unwrap_or((r.as_str(), ""));
            r.as_str() == given
                || zh == given
                || (!en.is_empty() && en.trim().eq_ignore_ascii_case(given))
        })
        .collect();
    match matches.as_slice() {
        [one] => Some(one),
        _ => None,
    }
}

fn validate_field(field: &str) -> Result<()> {
    let ok = !field.is_empty()
        && field.len() <= 64
        && field
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "field",
            format!(
                "{field:?} is not a field name (letters, digits, _ and -; known: {})",
                PROFILE_FIELDS.join(", ")
            ),
        ))
    }
}

fn validate_grade(grade: &str) -> Result<()> {
    if matches!(grade, "A" | "B" | "C" | "D") {
        Ok(())
    } else {
        Err(Error::invalid(
            "grade",
            format!("{grade:?} is not a grade; use A, B, C or D"),
        ))
    }
}
