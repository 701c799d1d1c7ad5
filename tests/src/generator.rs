//! A seeded generator of a realistic sales team: reps and managers, and clients with ~20
//! profile fields, tags, stage transitions along the pipeline's edges and notes of ~90
//! characters, each client built over ~16 automerge changes. Chinese and Latin names.
//!
//! Client documents are built in memory with [`ClientDoc`] (one commit per change) and
//! loaded into a replica with one bundle import ([`import_clients`]), which writes every
//! document in one transaction: generating 10,000 clients through the replica API one
//! operation at a time would cost one SQLite transaction and one fold per operation.
//!
//! Same seed, same content (names, fields, events, times); automerge change hashes differ
//! between runs because the writing actor is the replica's.

use std::collections::BTreeMap;

use automerge::transaction::CommitOptions;
use automerge::{ActorId, AutoCommit};
use fieldsync_core::bundle::{Bundle, BundleEntry, BundleHeader, BundleKind};
use fieldsync_core::client::{ClientDoc, EventList, Note, OnboardingTask, StageTransition};
use fieldsync_core::pipeline::StageKind;
use fieldsync_core::replica::ImportSummary;
use fieldsync_core::store::documents::DocKind;
use fieldsync_core::team::{Role, Team};
use fieldsync_core::{ClientId, Replica, TeamId, UserId};

/// One hour in milliseconds.
const HOUR: i64 = 3_600_000;
/// One day in milliseconds.
const DAY: i64 = 24 * HOUR;

/// A small deterministic PRNG (SplitMix64): no dependency, same sequence everywhere.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1).max(1) as u64) as i64
    }
    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
    /// One element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
    /// A UUID-shaped string from the sequence (version 4 layout).
    pub fn uuid(&mut self) -> String {
        let a = self.next_u64();
        let b = self.next_u64();
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            0x8000 | ((b >> 48) & 0x3fff),
            b & 0xffff_ffff_ffff
        )
    }
}

const SURNAMES: &[&str] = &[
    "王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "马", "朱", "胡", "郭",
    "何", "高", "林", "罗", "郑", "梁", "谢", "宋", "唐",
];
const GIVEN: &[&str] = &[
    "伟", "芳", "娜", "秀英", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟",
    "涛", "明", "超", "秀兰", "霞", "平", "刚", "建华", "志强", "海燕", "晓明",
];
const FIRST: &[&str] = &[
    "Anna", "Ben", "Chloe", "David", "Elena", "Felix", "Grace", "Hugo", "Iris", "Jonas", "Karin",
    "Liam", "Maria", "Nils", "Olivia", "Pablo", "Quentin", "Rosa", "Sven", "Tara",
];
const LAST: &[&str] = &[
    "Müller", "Schmidt", "Dubois", "Rossi", "García", "Smith", "Johnson", "Novak", "Kowalski",
    "Jensen", "Silva", "Costa", "Nguyen", "Okafor", "Larsen", "Weber", "Moreau", "Ricci",
];
const CN_COMPANY_A: &[&str] = &[
    "华强", "蓝海", "金桥", "东方", "恒达", "天成", "瑞丰", "宏图", "新锐", "中联", "锦程", "博远",
];
const CN_COMPANY_B: &[&str] = &[
    "科技有限公司",
    "贸易有限公司",
    "物流集团",
    "电子股份有限公司",
    "医疗器械有限公司",
    "建材有限公司",
];
const LATIN_COMPANY_A: &[&str] = &[
    "Acme",
    "Northwind",
    "Globex",
    "Initech",
    "Umbrella",
    "Vandelay",
    "Stark",
    "Wayne",
    "Hooli",
    "Contoso",
];
const LATIN_COMPANY_B: &[&str] = &[
    "Logistics GmbH",
    "Trading Ltd",
    "Systems AG",
    "Medical SA",
    "Foods BV",
    "Energy Inc",
];
const CITIES: &[&str] = &[
    "上海", "北京", "深圳", "广州", "杭州", "成都", "Berlin", "Paris", "Madrid", "Milano",
];
const INDUSTRIES: &[&str] = &[
    "制造业 manufacturing",
    "零售 retail",
    "医疗 healthcare",
    "物流 logistics",
    "教育 education",
    "金融 finance",
];
const SOURCES: &[&str] = &[
    "展会",
    "官网",
    "转介绍",
    "电话营销",
    "trade fair",
    "referral",
    "web",
];
const TAGS: &[&str] = &[
    "VIP",
    "重点客户",
    "复购",
    "外贸",
    "key-account",
    "pilot",
    "tender",
    "续约",
    "SMB",
    "enterprise",
];
const NOTE_CN: &[&str] = &[
    "客户对方案整体满意，但希望在交付周期上再缩短两周，需要和项目组确认排期后再回复。",
    "电话沟通了预算情况，今年预算已经批下来，下季度初可以启动采购流程，决策人是采购总监。",
    "上门拜访，参观了生产线，对方提出需要与现有ERP系统集成，已约技术同事下周再次拜访。",
    "客户反馈竞品报价低百分之十五，但更看重售后服务和本地化支持，建议准备一份服务对比。",
];
const NOTE_EN: &[&str] = &[
    "Called the buyer: budget approved for Q3, they want a pilot with two sites before signing the frame deal.",
    "Visit on site: walked the warehouse with ops lead; integration with their ERP is the main open question.",
    "Sent revised proposal with volume discount; procurement asked for references from the logistics sector.",
    "Follow-up call: decision moved to next board meeting, champion is positive, finance still needs numbers.",
];

/// Sizes and seed of a generated team.
#[derive(Clone, Debug)]
pub struct TeamSpec {
    /// Seed of every random choice.
    pub seed: u64,
    /// Managers under the director.
    pub managers: usize,
    /// Reps, spread over the managers.
    pub reps: usize,
}

impl Default for TeamSpec {
    fn default() -> Self {
        TeamSpec {
            seed: 42,
            managers: 4,
            reps: 20,
        }
    }
}

/// The people of a generated team, as added to a replica.
#[derive(Clone, Debug)]
pub struct People {
    /// The admin who seeded the team (the replica's user).
    pub admin: UserId,
    /// The sales director (a manager above every other manager).
    pub director: UserId,
    /// Managers.
    pub managers: Vec<UserId>,
    /// Reps.
    pub reps: Vec<UserId>,
}

/// A person's display name: Chinese or Latin, unique within the team by a number suffix.
pub fn person_name(rng: &mut Rng, n: usize) -> String {
    if rng.chance(0.6) {
        format!("{}{}{}", rng.pick(SURNAMES), rng.pick(GIVEN), n)
    } else {
        format!("{} {} {}", rng.pick(FIRST), rng.pick(LAST), n)
    }
}

/// Adds a director, managers and reps to an admin's replica. Do this before importing
/// clients: every team-document change re-folds every stored client.
pub fn add_people(replica: &mut Replica, spec: &TeamSpec) -> Result<People, String> {
    let mut rng = Rng::new(spec.seed ^ 0x5EED);
    let err = |e: fieldsync_core::Error| e.to_string();
    let director = replica
        .add_user("销售总监 Director", Role::Manager, None, vec![])
        .map_err(err)?;
    let mut managers = Vec::new();
    for i in 0..spec.managers.max(1) {
        let name = format!("经理 {}", person_name(&mut rng, i));
        let approves = if i == 0 {
            vec!["manager".to_string(), "finance".to_string()]
        } else {
            vec!["manager".to_string()]
        };
        managers.push(
            replica
                .add_user(&name, Role::Manager, Some(director), approves)
                .map_err(err)?,
        );
    }
    let mut reps = Vec::new();
    for i in 0..spec.reps.max(1) {
        let name = person_name(&mut rng, 1000 + i);
        let manager = managers[i % managers.len()];
        reps.push(
            replica
                .add_user(&name, Role::Rep, Some(manager), vec![])
                .map_err(err)?,
        );
    }
    Ok(People {
        admin: replica.me(),
        director,
        managers,
        reps,
    })
}

/// One generated client.
pub struct GeneratedClient {
    /// Client id.
    pub id: ClientId,
    /// Its owner.
    pub owner: UserId,
    /// The document, ~16 changes.
    pub doc: AutoCommit,
}

fn commit(doc: &mut AutoCommit, message: &str, at: i64) {
    doc.commit_with(
        CommitOptions::default()
            .with_message(message.to_string())
            .with_time(at / 1000),
    );
}

fn profile(rng: &mut Rng, n: usize) -> BTreeMap<String, String> {
    let chinese = rng.chance(0.6);
    let (name, company) = if chinese {
        (
            format!("{}{}", rng.pick(SURNAMES), rng.pick(GIVEN)),
            format!("{}{}", rng.pick(CN_COMPANY_A), rng.pick(CN_COMPANY_B)),
        )
    } else {
        (
            format!("{} {}", rng.pick(FIRST), rng.pick(LAST)),
            format!(
                "{} {}",
                rng.pick(LATIN_COMPANY_A),
                rng.pick(LATIN_COMPANY_B)
            ),
        )
    };
    let mut p = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        p.insert(k.to_string(), v);
    };
    put("name", name);
    // Unique contact data, so the duplicate detector stays quiet on generated teams.
    put("company", format!("{company} {n}"));
    put(
        "phone",
        format!("+86 139 {:04} {:04}", n / 10_000, n % 10_000),
    );
    put(
        "email",
        format!("contact{n}@example-{}.com", rng.below(500)),
    );
    put("source", rng.pick(SOURCES).to_string());
    put("grade", rng.pick(&["A", "B", "C", "D"]).to_string());
    put("city", rng.pick(CITIES).to_string());
    put("industry", rng.pick(INDUSTRIES).to_string());
    put(
        "address",
        format!(
            "{}路 {} 号 / Street {}",
            rng.pick(CITIES),
            rng.range(1, 999),
            n
        ),
    );
    put("website", format!("https://www.example-{n}.com"));
    put("wechat", format!("wx_{:x}", rng.next_u64() & 0xff_ffff));
    put(
        "title",
        rng.pick(&[
            "采购经理",
            "总经理",
            "CTO",
            "Head of Purchasing",
            "运营总监",
        ])
        .to_string(),
    );
    put("employees", rng.range(10, 5000).to_string());
    put("language", rng.pick(&["zh", "en", "de", "fr"]).to_string());
    put(
        "region",
        rng.pick(&["华东", "华南", "华北", "DACH", "EMEA"])
            .to_string(),
    );
    put("fiscal_year_end", format!("{:02}-31", rng.range(1, 12)));
    p
}

/// Builds one client document with the team's pipeline: created in the lead stage,
/// profile completed, ~5 transitions along the pipeline's edges (each `after` the
/// previous) and 10 notes, one commit per change (~16 commits).
#[allow(clippy::too_many_arguments)]
pub fn build_client(
    rng: &mut Rng,
    n: usize,
    team: &Team,
    team_id: TeamId,
    actor: &ActorId,
    by: UserId,
    owner: UserId,
    now: i64,
) -> Result<GeneratedClient, String> {
    let err = |e: fieldsync_core::Error| e.to_string();
    let id: ClientId = rng.uuid().parse().map_err(err)?;
    let pipeline = &team.pipeline;
    let mut t = now - rng.range(20, 120) * DAY;
    let mut tags: Vec<String> = Vec::new();
    for _ in 0..rng.range(1, 3) {
        let tag = rng.pick(TAGS).to_string();
        if !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    let mut doc = ClientDoc::create(
        AutoCommit::new().with_actor(actor.clone()),
        id,
        team_id,
        by,
        owner,
        &pipeline.initial().key,
        profile(rng, n),
        &tags,
        t,
    )
    .map_err(err)?;
    commit(doc.doc_mut(), "create client", t);

    // The plan: 10 notes and up to 5 moves, interleaved; the gate's fields with the first
    // move, a few field edits and tags along the way.
    let moves = 5usize;
    let notes = 10usize;
    let mut plan: Vec<bool> = std::iter::repeat_n(true, moves)
        .chain(std::iter::repeat_n(false, notes))
        .collect();
    for i in (1..plan.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        plan.swap(i, j);
    }
    let mut stage = pipeline.initial().key.clone();
    let mut after: Option<String> = None;
    let mut moved = 0;
    let step = (now - t) / (plan.len() as i64 + 2);
    for (k, is_move) in plan.into_iter().enumerate() {
        t += rng.range(step / 2, step);
        let terminal = pipeline
            .find(&stage)
            .is_some_and(|s| s.kind() != StageKind::Open);
        if is_move && !terminal {
            if moved == 0 {
                for f in &team.rules.required_lead_fields {
                    let v = match f.as_str() {
                        "company_size" => rng.pick(&["1-50", "50-200", "200-1000", "1000+"]),
                        "budget_range" => rng.pick(&["<10万", "10-50万", "50-200万", ">200万"]),
                        _ => rng.pick(&["是 yes", "采购总监", "CEO", "Head of IT"]),
                    };
                    doc.set_field(f, Some(*v)).map_err(err)?;
                }
            }
            // Along an edge: mostly the main line, sometimes lost, rarely back.
            let edges: Vec<&str> = pipeline
                .edges
                .iter()
                .filter(|e| e.from == stage)
                .map(|e| e.to.as_str())
                .collect();
            let forward = pipeline.next_on_main_line(&stage).map(|s| s.key.as_str());
            let to = if rng.chance(0.1) || forward.is_none() {
                rng.pick(&edges).to_string()
            } else {
                forward.unwrap_or(edges[0]).to_string()
            };
            let target = pipeline.find(&to).map(|s| s.kind());
            let loss_reason = (target == Some(StageKind::Lost))
                .then(|| rng.pick(&team.rules.loss_reasons).clone());
            let event_id = rng.uuid();
            doc.append(
                EventList::Transitions,
                &StageTransition {
                    id: event_id.clone(),
                    from: stage.clone(),
                    to: to.clone(),
                    by: owner.to_string(),
                    at: t,
                    reason: None,
                    skipped: false,
                    loss_reason,
                    after: after.clone(),
                },
            )
            .map_err(err)?;
            if target == Some(StageKind::Won) {
                for item in &team.rules.onboarding {
                    doc.append(
                        EventList::Onboarding,
                        &OnboardingTask {
                            key: item.key.clone(),
                            title: item.title.clone(),
                            at: t,
                        },
                    )
                    .map_err(err)?;
                }
            }
            after = Some(event_id);
            stage = to;
            moved += 1;
            commit(doc.doc_mut(), &format!("move to {stage}"), t);
        } else {
            let kind = *rng.pick(&["call", "visit", "note", "call"]);
            let base = if rng.chance(0.5) {
                rng.pick(NOTE_CN)
            } else {
                rng.pick(NOTE_EN)
            };
            doc.append(
                EventList::Notes,
                &Note {
                    id: rng.uuid(),
                    kind: kind.to_string(),
                    text: format!("{base} #{k}"),
                    by: owner.to_string(),
                    at: t,
                },
            )
            .map_err(err)?;
            if k % 4 == 1 {
                doc.set_field("grade", Some(*rng.pick(&["A", "B", "C", "D"])))
                    .map_err(err)?;
            }
            if k % 5 == 2 {
                let tag = TAGS[rng.below(TAGS.len() as u64) as usize];
                doc.set_tag(tag, true).map_err(err)?;
            }
            commit(doc.doc_mut(), &format!("{kind} logged"), t);
        }
    }
    Ok(GeneratedClient {
        id,
        owner,
        doc: doc.into_doc(),
    })
}

/// Builds `count` clients owned round-robin by `owners`, written by the replica's own
/// actor (registered in the team, so the fold treats the events normally).
pub fn build_clients(
    replica: &Replica,
    seed: u64,
    count: usize,
    owners: &[UserId],
    now: i64,
) -> Result<Vec<GeneratedClient>, String> {
    let team = replica.team();
    let team_id: TeamId = team
        .id
        .parse()
        .map_err(|e: fieldsync_core::Error| e.to_string())?;
    let actor =
        ActorId::try_from(replica.identity().actor.as_str()).map_err(|e| format!("actor: {e}"))?;
    let by = replica.me();
    let mut rng = Rng::new(seed);
    (0..count)
        .map(|n| {
            let owner = owners[n % owners.len().max(1)];
            build_client(&mut rng, n, team, team_id, &actor, by, owner, now)
        })
        .collect()
}

/// Loads generated clients into a replica with one bundle import (one transaction).
pub fn import_clients(
    replica: &mut Replica,
    clients: &mut [GeneratedClient],
) -> Result<ImportSummary, String> {
    let bundle = Bundle {
        header: BundleHeader {
            kind: BundleKind::Changes,
            team: replica.team().id.clone(),
            founder: replica.team_doc().founder().to_string(),
            from_user: replica.me().to_string(),
            created_at: replica.now(),
            provision: None,
        },
        entries: clients
            .iter_mut()
            .map(|c| BundleEntry {
                kind: DocKind::Client,
                doc_id: c.id.to_string(),
                data: c.doc.save(),
                summary: None,
            })
            .collect(),
    };
    replica.import(&bundle.encode()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use fieldsync_core::pipeline::Template;
    use fieldsync_core::ManualClock;
    use std::sync::Arc;

    #[test]
    fn a_generated_team_imports_and_folds_along_the_pipeline() {
        let dir = tempfile::tempdir().expect("tempdir");
        let now = 1_750_000_000_000;
        let clock = Arc::new(ManualClock::new(now));
        let mut r = Replica::create(
            &dir.path().join("a.db"),
            "T",
            "Admin",
            fieldsync_core::pipeline::Template::SevenStage,
            clock,
        )
        .expect("create");
        let _ = Template::SevenStage;
        let people = add_people(&mut r, &TeamSpec::default()).expect("people");
        let mut clients = build_clients(&r, 7, 30, &people.reps, now).expect("build");
        let again = build_clients(&r, 7, 30, &people.reps, now).expect("build");
        assert_eq!(clients[3].id, again[3].id, "same seed, same clients");
        let summary = import_clients(&mut r, &mut clients).expect("import");
        assert_eq!(summary.new_clients, 30);
        let rows = r
            .list(&fieldsync_core::store::read_model::ClientFilter::default())
            .expect("list");
        assert_eq!(rows.len(), 30);
        let view = r.client(&clients[0].id).expect("client");
        assert_eq!(view.notes.len(), 10);
        assert!(view
            .transitions
            .iter()
            .all(|t| t.effective && !t.concurrent));
        assert!(view.profile.len() >= 19, "{:?}", view.profile.len());
        assert!(r.board().expect("board").total == 30);
    }
}
