//! Human output: display width of Chinese text, aligned tables, times, and the renderings
//! of the board, the flow-health report and a client's detail.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use fieldsync_core::fold::{ClientView, QuoteStatus};
use fieldsync_core::report::{Board, FlowReport};
use fieldsync_core::store::read_model::ClientRow;
use fieldsync_core::team::Team;

/// Terminal columns taken by one character: 2 for CJK and other wide characters, 0 for
/// combining marks and controls, 1 otherwise.
pub fn char_width(c: char) -> usize {
    let cp = c as u32;
    if cp == 0 || cp < 0x20 || (0x7f..0xa0).contains(&cp) {
        return 0;
    }
    if (0x0300..=0x036f).contains(&cp) || (0x200b..=0x200f).contains(&cp) || cp == 0xfe0f {
        return 0;
    }
    let wide = (0x1100..=0x115f).contains(&cp)
        || (0x2e80..=0x303e).contains(&cp)
        || (0x3041..=0x33ff).contains(&cp)
        || (0x3400..=0x4dbf).contains(&cp)
        || (0x4e00..=0x9fff).contains(&cp)
        || (0xa000..=0xa4cf).contains(&cp)
        || (0xac00..=0xd7a3).contains(&cp)
        || (0xf900..=0xfaff).contains(&cp)
        || (0xfe30..=0xfe4f).contains(&cp)
        || (0xff00..=0xff60).contains(&cp)
        || (0xffe0..=0xffe6).contains(&cp)
        || (0x1f300..=0x1f64f).contains(&cp)
        || (0x1f900..=0x1f9ff).contains(&cp)
        || (0x20000..=0x3fffd).contains(&cp);
    if wide {
        2
    } else {
        1
    }
}

/// Terminal columns taken by a string.
pub fn width(s: &str) -> usize {
    s.chars().map(char_width).sum()
}

/// Column alignment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Align {
    /// Text.
    Left,
    /// Numbers.
    Right,
}

/// Renders rows as a table aligned by display width, with a header and a rule.
pub fn table(headers: &[&str], align: &[Align], rows: &[Vec<String>]) -> String {
    let cols = headers.len();
    let mut widths: Vec<usize> = headers.iter().map(|h| width(h)).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(cols) {
            widths[i] = widths[i].max(width(cell));
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &[String]| {
        let mut text = String::new();
        for (i, w) in widths.iter().enumerate() {
            let cell = cells.get(i).map(String::as_str).unwrap_or("");
            let pad = " ".repeat(w.saturating_sub(width(cell)));
            if i > 0 {
                text.push_str("  ");
            }
            match align.get(i).copied().unwrap_or(Align::Left) {
                Align::Left => {
                    text.push_str(cell);
                    text.push_str(&pad);
                }
                Align::Right => {
                    text.push_str(&pad);
                    text.push_str(cell);
                }
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(
        &mut out,
        &headers.iter().map(|h| h.to_string()).collect::<Vec<_>>(),
    );
    line(
        &mut out,
        &widths.iter().map(|w| "─".repeat(*w)).collect::<Vec<_>>(),
    );
    for row in rows {
        line(&mut out, row);
    }
    out
}

/// `YYYY-MM-DD HH:MM` (UTC) of milliseconds since the epoch.
pub fn time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}",
        rem / 3600,
        (rem % 3600) / 60
    )
}

/// A user's display name, or the id when the team does not know it.
pub fn user_name(team: &Team, id: &str) -> String {
    team.members
        .get(id)
        .map(|m| m.name.clone())
        .unwrap_or_else(|| id.to_string())
}

/// A stage's display name, or the key when the pipeline does not know it.
pub fn stage_name(team: &Team, key: &str) -> String {
    team.pipeline
        .find(key)
        .map(|s| s.name.clone())
        .unwrap_or_else(|| key.to_string())
}

/// The concurrent values of a conflict, quoted and comma-separated.
pub fn quoted_list(values: &[String]) -> String {
    values
        .iter()
        .map(|v| format!("{v:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The first 8 characters of an id (a unique prefix in practice; commands accept it).
pub fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

fn opt_f(v: Option<f64>, digits: usize) -> String {
    v.map(|v| format!("{v:.digits$}"))
        .unwrap_or_else(|| "-".into())
}

fn pct(v: Option<f64>) -> String {
    v.map(|v| format!("{:.0}%", v * 100.0))
        .unwrap_or_else(|| "-".into())
}

/// Amount in cents as `12,000.50`-free plain `12000.50`.
pub fn cents(amount: i64) -> String {
    let sign = if amount < 0 { "-" } else { "" };
    let a = amount.unsigned_abs();
    format!("{sign}{}.{:02}", a / 100, a % 100)
}

/// A list of client rows.
pub fn client_rows(team: &Team, rows: &[ClientRow], now: i64) -> String {
    if rows.is_empty() {
        return "no clients\n".into();
    }
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                short(&r.id).to_string(),
                r.name.clone(),
                r.company.clone(),
                user_name(team, &r.owner),
                stage_name(team, &r.stage),
                fieldsync_core::report::sla_of(r, team, now)
                    .as_str()
                    .to_string(),
                if r.needs_review { "review" } else { "" }.to_string(),
            ]
        })
        .collect();
    table(
        &["id", "name", "company", "owner", "stage", "sla", ""],
        &[Align::Left; 7],
        &body,
    )
}

/// The board: stage, count, overdue and a bar of █.
pub fn board(b: &Board) -> String {
    let max = b.columns.iter().map(|c| c.count).max().unwrap_or(0).max(1);
    let rows: Vec<Vec<String>> = b
        .columns
        .iter()
        .map(|c| {
            let len = if c.count == 0 {
                0
            } else {
                ((c.count * 30 + max - 1) / max) as usize
            };
            vec![
                c.name.clone(),
                c.count.to_string(),
                c.overdue.to_string(),
                "█".repeat(len),
            ]
        })
        .collect();
    let mut out = table(
        &["stage", "clients", "overdue", ""],
        &[Align::Left, Align::Right, Align::Right, Align::Left],
        &rows,
    );
    let _ = writeln!(out, "total: {}", b.total);
    out
}

/// The flow-health report.
pub fn report(team: &Team, r: &FlowReport) -> String {
    let rows: Vec<Vec<String>> = r
        .stages
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                s.backlog.to_string(),
                s.entered.to_string(),
                pct(s.next_step_conversion),
                opt_f(s.avg_dwell_hours, 1),
                opt_f(s.p90_dwell_hours, 1),
                s.overdue.to_string(),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "stage",
            "backlog",
            "entered",
            "→next",
            "avg dwell h",
            "p90 dwell h",
            "overdue",
        ],
        &[
            Align::Left,
            Align::Right,
            Align::Right,
            Align::Right,
            Align::Right,
            Align::Right,
            Align::Right,
        ],
        &rows,
    );
    out.push('\n');
    if r.loss_reasons.is_empty() {
        out.push_str("loss reasons: none\n");
    } else {
        out.push_str("loss reasons:\n");
        let rows: Vec<Vec<String>> = r
            .loss_reasons
            .iter()
            .enumerate()
            .map(|(i, (reason, n))| vec![format!("{}.", i + 1), reason.clone(), n.to_string()])
            .collect();
        out.push_str(&table(
            &["#", "reason", "clients"],
            &[Align::Right, Align::Left, Align::Right],
            &rows,
        ));
    }
    let _ = writeln!(
        out,
        "\nwon {}  lost {}  win rate {}  avg sales cycle {} days",
        r.won,
        r.lost,
        pct(r.win_rate),
        opt_f(r.avg_sales_cycle_days, 1)
    );
    let _ = writeln!(
        out,
        "exceptions (green channel) {}  concurrent moves {}  concurrent handovers {}",
        r.exceptions, r.concurrent_moves, r.concurrent_handovers
    );
    let undefined: Vec<String> = r
        .edges
        .iter()
        .filter(|e| !e.defined)
        .map(|e| {
            format!(
                "{} → {} ×{}",
                stage_name(team, &e.from),
                stage_name(team, &e.to),
                e.count
            )
        })
        .collect();
    if !undefined.is_empty() {
        let _ = writeln!(out, "moves off the flowchart: {}", undefined.join(", "));
    }
    out
}

/// A client's detail.
pub fn client(team: &Team, v: &ClientView) -> String {
    let mut out = String::new();
    let u = |id: &str| user_name(team, id);
    let _ = writeln!(out, "{}  ({})", v.name(), v.id);
    let _ = writeln!(
        out,
        "stage: {} [{}] since {}   SLA: {}{}",
        v.stage_name,
        v.stage,
        time(v.stage_entered_at),
        v.sla.as_str(),
        v.due_at
            .map(|d| format!(" (due {})", time(d)))
            .unwrap_or_default()
    );
    let _ = writeln!(out, "owner: {}", u(&v.owner));
    if let Some(s) = &v.supervisor {
        let _ = writeln!(out, "supervisor: {}", u(s));
    }
    if !v.collaborators.is_empty() {
        let names: Vec<String> = v.collaborators.iter().map(|c| u(c)).collect();
        let _ = writeln!(out, "collaborators: {}", names.join(", "));
    }
    if !v.tags.is_empty() {
        let _ = writeln!(out, "tags: {}", v.tags.join(", "));
    }
    let _ = writeln!(
        out,
        "created: {} by {}",
        time(v.created_at),
        u(&v.created_by)
    );
    out.push_str("\nprofile:\n");
    let width_key = v.profile.keys().map(|k| width(k)).max().unwrap_or(0);
    for (k, val) in &v.profile {
        let _ = writeln!(out, "  {k}{}  {val}", " ".repeat(width_key - width(k)));
    }
    for c in &v.conflicts {
        let _ = writeln!(
            out,
            "  ! conflict on {}: shows {:?}, concurrent: {}",
            c.field,
            c.value,
            quoted_list(&c.other_values)
        );
    }
    if !v.notes.is_empty() {
        out.push_str("\nnotes:\n");
        for n in &v.notes {
            let _ = writeln!(
                out,
                "  {}  {:<5}  {}: {}",
                time(n.at),
                n.kind,
                u(&n.by),
                n.text
            );
        }
    }
    if !v.transitions.is_empty() {
        out.push_str("\ntransitions:\n");
        for t in &v.transitions {
            let mut flags = Vec::new();
            if !t.effective {
                flags.push("not effective".to_string());
            }
            if t.concurrent {
                flags.push("concurrent".into());
            }
            if t.event.skipped {
                flags.push("skipped".into());
            }
            if let Some(r) = &t.event.reason {
                flags.push(format!("reason: {r}"));
            }
            if let Some(r) = &t.event.loss_reason {
                flags.push(format!("loss: {r}"));
            }
            let _ = writeln!(
                out,
                "  {}  {} → {}  by {}{}",
                time(t.event.at),
                stage_name(team, &t.event.from),
                stage_name(team, &t.event.to),
                u(&t.event.by),
                if flags.is_empty() {
                    String::new()
                } else {
                    format!("  [{}]", flags.join("; "))
                }
            );
        }
    }
    if !v.handovers.is_empty() {
        out.push_str("\nhandovers:\n");
        for h in &v.handovers {
            let mut flags = Vec::new();
            if !h.authorized {
                flags.push("unauthorized, ignored".to_string());
            } else if !h.effective {
                flags.push("not effective".into());
            }
            if h.concurrent {
                flags.push("concurrent".into());
            }
            if let Some(r) = &h.event.reason {
                flags.push(format!("reason: {r}"));
            }
            let _ = writeln!(
                out,
                "  {}  {} → {}  by {}{}",
                time(h.event.at),
                u(&h.event.from),
                u(&h.event.to),
                u(&h.event.by),
                if flags.is_empty() {
                    String::new()
                } else {
                    format!("  [{}]", flags.join("; "))
                }
            );
        }
    }
    if !v.quotes.is_empty() {
        out.push_str("\nquotes:\n");
        for q in &v.quotes {
            let status = match &q.approval {
                QuoteStatus::WithinBand => "within band, no approval needed".to_string(),
                QuoteStatus::Pending { waiting_for } => {
                    format!("pending: waiting for {}", waiting_for.join(", "))
                }
                QuoteStatus::Approved => "approved".into(),
                QuoteStatus::Rejected { rejected_by } => {
                    format!("rejected by {}", rejected_by.join(", "))
                }
            };
            let _ = writeln!(
                out,
                "  {}  {}  {} at {}% discount  by {}  — {}",
                short(&q.quote.id),
                time(q.quote.at),
                cents(q.quote.amount_cents),
                q.quote.discount_pct,
                u(&q.quote.by),
                status
            );
            for d in &q.decisions {
                let _ = writeln!(
                    out,
                    "      {} {} by {}{}",
                    d.role,
                    d.decision,
                    u(&d.by),
                    d.comment
                        .as_deref()
                        .map(|c| format!(": {c}"))
                        .unwrap_or_default()
                );
            }
        }
    }
    if !v.onboarding.is_empty() {
        out.push_str("\nonboarding:\n");
        for t in &v.onboarding {
            let done = match (t.done_at, &t.done_by) {
                (Some(at), Some(by)) => format!("done {} by {}", time(at), u(by)),
                _ => "open".into(),
            };
            let _ = writeln!(
                out,
                "  [{}] {}  {} — {}",
                if t.done_at.is_some() { "x" } else { " " },
                t.key,
                t.title,
                done
            );
        }
    }
    if v.concurrent_moves || v.concurrent_handovers {
        let _ = writeln!(
            out,
            "\nreview: {}",
            [
                (v.concurrent_moves, "concurrent stage moves"),
                (v.concurrent_handovers, "concurrent handovers")
            ]
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, s)| *s)
            .collect::<Vec<_>>()
            .join(", ")
        );
    }
    out
}

/// Team members.
pub fn members(team: &Team) -> String {
    let names: BTreeMap<&String, &String> =
        team.members.iter().map(|(id, m)| (id, &m.name)).collect();
    let rows: Vec<Vec<String>> = team
        .members
        .iter()
        .map(|(id, m)| {
            vec![
                id.clone(),
                m.name.clone(),
                m.role.clone(),
                m.manager
                    .as_ref()
                    .map(|x| {
                        names
                            .get(x)
                            .map(|n| n.to_string())
                            .unwrap_or_else(|| x.clone())
                    })
                    .unwrap_or_default(),
                m.approves.join(","),
                if m.departed { "departed" } else { "" }.to_string(),
            ]
        })
        .collect();
    table(
        &["id", "name", "role", "manager", "approves", ""],
        &[Align::Left; 6],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chinese_characters_are_two_columns_wide() {
        assert_eq!(width("线索获取"), 8);
        assert_eq!(width("abc"), 3);
        assert_eq!(width("成交 won"), 8);
    }

    #[test]
    fn tables_align_chinese_and_latin_cells() {
        let t = table(
            &["stage", "n"],
            &[Align::Left, Align::Right],
            &[
                vec!["线索获取".into(), "1".into()],
                vec!["won".into(), "12".into()],
            ],
        );
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(width(lines[2]), width(lines[3]));
    }

    #[test]
    fn times_are_utc_dates() {
        assert_eq!(time(0), "1970-01-01 00:00");
        assert_eq!(time(1_780_000_000_000), "2026-05-28 20:26");
    }

    #[test]
    fn cents_print_with_two_decimals() {
        assert_eq!(cents(1_200_050), "12000.50");
        assert_eq!(cents(5), "0.05");
    }
}
