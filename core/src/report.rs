//! The board, the flow-health report and the overdue list, computed from the read model
//! only (no document is loaded). Definitions (docs/domain.md, "Reports"): win rate =
//! won / (won + lost); next-step conversion = clients that entered the next stage of the
//! main line / clients that entered this stage; dwell = completed stays in the stage.

use std::collections::BTreeMap;

use rusqlite::Connection;
use serde::{Deserialize, Serialize};

use crate::clock::Millis;
use crate::fold::SlaStatus;
use crate::store::read_model::{self, ClientFilter, ClientRow};
use crate::team::Team;
use crate::Result;

/// One column of the pipeline board.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BoardColumn {
    /// Stage key.
    pub stage: String,
    /// Stage display name.
    pub name: String,
    /// `open`, `won` or `lost`.
    pub kind: String,
    /// Clients in the stage.
    pub count: i64,
    /// Of which overdue.
    pub overdue: i64,
}

/// The pipeline board: clients per stage, in pipeline order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Board {
    /// Columns in pipeline order.
    pub columns: Vec<BoardColumn>,
    /// All clients.
    pub total: i64,
}

/// Health of one stage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageHealth {
    /// Stage key.
    pub stage: String,
    /// Display name.
    pub name: String,
    /// Clients currently in the stage.
    pub backlog: i64,
    /// Clients that ever entered the stage.
    pub entered: i64,
    /// Next stage on the main line, if any.
    pub next_stage: Option<String>,
    /// entered(next) / entered(this), when both exist.
    pub next_step_conversion: Option<f64>,
    /// Mean completed stay, in hours.
    pub avg_dwell_hours: Option<f64>,
    /// 90th-percentile completed stay, in hours (nearest rank).
    pub p90_dwell_hours: Option<f64>,
    /// Clients in the stage past their SLA.
    pub overdue: i64,
}

/// An arrow of the flowchart with how many clients moved along it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FlowEdge {
    /// From stage key.
    pub from: String,
    /// To stage key.
    pub to: String,
    /// Effective moves along it.
    pub count: i64,
    /// Part of the pipeline definition (false: taken as an exception).
    pub defined: bool,
}

/// The flow-health report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FlowReport {
    /// Per stage, in pipeline order.
    pub stages: Vec<StageHealth>,
    /// Effective moves per arrow.
    pub edges: Vec<FlowEdge>,
    /// Loss reasons, most frequent first.
    pub loss_reasons: Vec<(String, i64)>,
    /// Clients won (reached a won stage and not lost since).
    pub won: i64,
    /// Clients lost.
    pub lost: i64,
    /// won / (won + lost).
    pub win_rate: Option<f64>,
    /// Mean days from creation to winning.
    pub avg_sales_cycle_days: Option<f64>,
    /// Moves along no edge of the flowchart (green channel).
    pub exceptions: i64,
    /// Clients with concurrent stage moves to review.
    pub concurrent_moves: i64,
    /// Clients with concurrent handovers to review.
    pub concurrent_handovers: i64,
}

/// Overdue clients escalated to one supervisor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OverdueGroup {
    /// Supervisor (user id), or `None` when nobody is above the owner.
    pub supervisor: Option<String>,
    /// The overdue clients.
    pub clients: Vec<ClientRow>,
}

/// Builds the board.
pub fn board(conn: &Connection, team: &Team, now: Millis) -> Result<Board> {
    let counts: BTreeMap<String, (i64, i64)> = read_model::stage_counts(conn, now)?
        .into_iter()
        .map(|(s, c, o)| (s, (c, o)))
        .collect();
    let columns: Vec<BoardColumn> = team
        .pipeline
        .stages
        .iter()
        .map(|s| {
            let (count, overdue) = counts.get(&s.key).copied().unwrap_or((0, 0));
            BoardColumn {
                stage: s.key.clone(),
                name: s.name.clone(),
                kind: s.kind.clone(),
                count,
                overdue,
            }
        })
        .collect();
    Ok(Board {
        total: counts.values().map(|(c, _)| c).sum(),
        columns,
    })
}

/// Builds the flow-health report.
pub fn flow_report(conn: &Connection, team: &Team, now: Millis) -> Result<FlowReport> {
    let pipeline = &team.pipeline;
    let counts: BTreeMap<String, (i64, i64)> = read_model::stage_counts(conn, now)?
        .into_iter()
        .map(|(s, c, o)| (s, (c, o)))
        .collect();
    let entered: BTreeMap<String, i64> = read_model::entered_counts(conn)?.into_iter().collect();
    let mut dwell: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (stage, ms) in read_model::dwell_times(conn)? {
        dwell.entry(stage).or_default().push(ms);
    }
    const HOUR: f64 = 3_600_000.0;
    let stages = pipeline
        .stages
        .iter()
        .map(|s| {
            let (backlog, overdue) = counts.get(&s.key).copied().unwrap_or((0, 0));
            let here = entered.get(&s.key).copied().unwrap_or(0);
            let next = pipeline.next_on_main_line(&s.key);
            let next_entered = next.map(|n| entered.get(&n.key).copied().unwrap_or(0));
            let stays = dwell.get(&s.key).map(Vec::as_slice).unwrap_or(&[]);
            StageHealth {
                stage: s.key.clone(),
                name: s.name.clone(),
                backlog,
                entered: here,
                next_stage: next.map(|n| n.key.clone()),
                next_step_conversion: next_entered
                    .filter(|_| here > 0)
                    .map(|n| n as f64 / here as f64),
                avg_dwell_hours: (!stays.is_empty())
                    .then(|| stays.iter().sum::<i64>() as f64 / stays.len() as f64 / HOUR),
                p90_dwell_hours: percentile(stays, 0.9).map(|ms| ms as f64 / HOUR),
                overdue,
            }
        })
        .collect();
    let edges = read_model::flow_edges(conn)?
        .into_iter()
        .map(|(from, to, count)| FlowEdge {
            defined: pipeline.is_edge(&from, &to),
            from,
            to,
            count,
        })
        .collect();
    let (won, lost, cycle_ms) = read_model::outcomes(conn)?;
    let (exceptions, concurrent_moves, concurrent_handovers) = read_model::review_counts(conn)?;
    Ok(FlowReport {
        stages,
        edges,
        loss_reasons: read_model::loss_reasons(conn)?,
        won,
        lost,
        win_rate: (won + lost > 0).then(|| won as f64 / (won + lost) as f64),
        avg_sales_cycle_days: (won > 0).then(|| cycle_ms as f64 / won as f64 / (24.0 * HOUR)),
        exceptions,
        concurrent_moves,
        concurrent_handovers,
    })
}

/// Nearest-rank percentile of an ascending slice.
fn percentile(sorted: &[i64], p: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Overdue clients grouped by the supervisor they escalate to.
pub fn overdue_by_supervisor(conn: &Connection, now: Millis) -> Result<Vec<OverdueGroup>> {
    let rows = read_model::list(
        conn,
        &ClientFilter {
            overdue_at: Some(now),
            ..Default::default()
        },
    )?;
    let mut groups: BTreeMap<Option<String>, Vec<ClientRow>> = BTreeMap::new();
    for row in rows {
        groups.entry(row.supervisor.clone()).or_default().push(row);
    }
    Ok(groups
        .into_iter()
        .map(|(supervisor, mut clients)| {
            clients.sort_by(|a, b| (a.due_at, &a.id).cmp(&(b.due_at, &b.id)));
            OverdueGroup {
                supervisor,
                clients,
            }
        })
        .collect())
}

/// A client row's SLA colour at `now`.
pub fn sla_of(row: &ClientRow, team: &Team, now: Millis) -> SlaStatus {
    SlaStatus::at(row.due_at, now, team.rules.warning_hours)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::percentile;

    #[test]
    fn p90_is_the_nearest_rank() {
        let v: Vec<i64> = (1..=10).collect();
        assert_eq!(percentile(&v, 0.9), Some(9));
        assert_eq!(percentile(&[5], 0.9), Some(5));
        assert_eq!(percentile(&[], 0.9), None);
    }
}
