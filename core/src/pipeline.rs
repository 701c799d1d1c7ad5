//! The pipeline as a flowchart: stages are nodes, allowed moves are edges.
//!
//! Stage names are data (UTF-8, Chinese included), never enum variants. A stage is
//! addressed by its `key` (stable, ASCII) or by its display `name`; both are accepted
//! wherever a user names a stage. See docs/domain.md, "Pipeline".

use autosurgeon::{Hydrate, Reconcile};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// What reaching a stage means for reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StageKind {
    /// Work in progress.
    Open,
    /// The deal is won: onboarding tasks are created on arrival.
    Won,
    /// The deal is lost: arrival needs a loss reason.
    Lost,
}

impl StageKind {
    /// The spelling stored in documents.
    pub fn as_str(self) -> &'static str {
        match self {
            StageKind::Open => "open",
            StageKind::Won => "won",
            StageKind::Lost => "lost",
        }
    }
}

/// One node of the flowchart.
#[derive(Clone, Debug, PartialEq, Hydrate, Reconcile, Serialize, Deserialize)]
pub struct Stage {
    /// Stable ASCII key, e.g. `lead`.
    pub key: String,
    /// Display name, e.g. `线索获取`.
    pub name: String,
    /// `open`, `won` or `lost`.
    pub kind: String,
    /// Hours a client may stay in this stage without a call or visit before it is overdue
    /// (the first-contact rule for the lead stage). `None`: no SLA.
    pub sla_hours: Option<u32>,
}

impl Stage {
    /// The stage kind; unknown spellings read as open.
    pub fn kind(&self) -> StageKind {
        match self.kind.as_str() {
            "won" => StageKind::Won,
            "lost" => StageKind::Lost,
            _ => StageKind::Open,
        }
    }
}

/// One arrow of the flowchart.
#[derive(Clone, Debug, PartialEq, Hydrate, Reconcile, Serialize, Deserialize)]
pub struct Edge {
    /// Stage key the move starts from.
    pub from: String,
    /// Stage key the move goes to.
    pub to: String,
}

/// The stock pipeline templates of the design.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Template {
    /// 线索获取 → 初步筛选 → 首次接触 → 需求分析 → 方案报价 → 跟进谈判 → 成交 / 失败归档.
    SevenStage,
    /// 客户发现 → 需求沟通 → 方案报价 → 合同签约 → 售后维护 (and back to needs for repeat business).
    FiveStage,
}

impl std::str::FromStr for Template {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "seven" | "7" | "seven-stage" => Ok(Template::SevenStage),
            "five" | "5" | "five-stage" => Ok(Template::FiveStage),
            other => Err(Error::invalid(
                "template",
                format!("{other:?} is not a template; use seven or five"),
            )),
        }
    }
}

/// The team's pipeline: ordered stages and the edges between them.
#[derive(Clone, Debug, PartialEq, Hydrate, Reconcile, Serialize, Deserialize)]
pub struct Pipeline {
    /// Template the pipeline started from (informational).
    pub template: String,
    /// Stages in board order; the first is where new clients start (the lead stage).
    pub stages: Vec<Stage>,
    /// Allowed moves. A move along no edge is an exception and needs a reason.
    pub edges: Vec<Edge>,
}

fn stage(key: &str, name: &str, kind: StageKind, sla_hours: Option<u32>) -> Stage {
    Stage {
        key: key.into(),
        name: name.into(),
        kind: kind.as_str().into(),
        sla_hours,
    }
}

fn edge(from: &str, to: &str) -> Edge {
    Edge {
        from: from.into(),
        to: to.into(),
    }
}

impl Pipeline {
    /// Builds a stock template.
    pub fn from_template(template: Template) -> Self {
        use StageKind::*;
        match template {
            Template::SevenStage => {
                let stages = vec![
                    stage("lead", "线索获取", Open, Some(24)),
                    stage("screening", "初步筛选", Open, Some(48)),
                    stage("first_contact", "首次接触", Open, Some(72)),
                    stage("needs_analysis", "需求分析", Open, Some(168)),
                    stage("proposal", "方案报价", Open, Some(168)),
                    stage("negotiation", "跟进谈判", Open, Some(336)),
                    stage("won", "成交", Won, None),
                    stage("lost", "失败归档", Lost, None),
                ];
                let main = [
                    "lead",
                    "screening",
                    "first_contact",
                    "needs_analysis",
                    "proposal",
                    "negotiation",
                    "won",
                ];
                let mut edges: Vec<Edge> = main.windows(2).map(|w| edge(w[0], w[1])).collect();
                // Lost or disqualified from any open stage: a branch, not an exception.
                edges.extend(main[..6].iter().map(|s| edge(s, "lost")));
                // Negotiation may send a client back for a revised proposal.
                edges.push(edge("negotiation", "proposal"));
                Pipeline {
                    template: "seven".into(),
                    stages,
                    edges,
                }
            }
            Template::FiveStage => {
                let stages = vec![
                    stage("discovery", "客户发现", Open, Some(24)),
                    stage("needs", "需求沟通", Open, Some(72)),
                    stage("proposal", "方案报价", Open, Some(168)),
                    stage("contract", "合同签约", Won, None),
                    stage("after_sales", "售后维护", Open, Some(720)),
                ];
                let mut edges: Vec<Edge> =
                    ["discovery", "needs", "proposal", "contract", "after_sales"]
                        .windows(2)
                        .map(|w| edge(w[0], w[1]))
                        .collect();
                // Repeat business (复购): after-sales loops back to needs.
                edges.push(edge("after_sales", "needs"));
                Pipeline {
                    template: "five".into(),
                    stages,
                    edges,
                }
            }
        }
    }

    /// The stage new clients start in (the lead stage).
    pub fn initial(&self) -> &Stage {
        &self.stages[0]
    }

    /// Finds a stage by key or display name.
    pub fn find(&self, key_or_name: &str) -> Option<&Stage> {
        let wanted = key_or_name.trim();
        self.stages
            .iter()
            .find(|s| s.key == wanted || s.name == wanted)
    }

    /// Like [`Pipeline::find`], with an error naming the stage.
    pub fn require(&self, key_or_name: &str) -> Result<&Stage> {
        self.find(key_or_name)
            .ok_or_else(|| Error::UnknownStage(key_or_name.to_string()))
    }

    /// Whether `from → to` is an edge of the flowchart.
    pub fn is_edge(&self, from: &str, to: &str) -> bool {
        self.edges.iter().any(|e| e.from == from && e.to == to)
    }

    /// Position of a stage in board order (unknown stages sort last).
    pub fn position(&self, key: &str) -> usize {
        self.stages
            .iter()
            .position(|s| s.key == key)
            .unwrap_or(self.stages.len())
    }

    /// The next stage along the main line (the first outgoing edge to a non-lost stage that
    /// lies further in board order), used for next-step conversion.
    pub fn next_on_main_line(&self, key: &str) -> Option<&Stage> {
        let here = self.position(key);
        self.edges
            .iter()
            .filter(|e| e.from == key)
            .filter_map(|e| self.find(&e.to))
            .filter(|s| s.kind() != StageKind::Lost && self.position(&s.key) > here)
            .min_by_key(|s| self.position(&s.key))
    }

    /// Checks that the pipeline is usable: unique keys and names, edges between known stages.
    pub fn validate(&self) -> Result<()> {
        if self.stages.is_empty() {
            return Err(Error::invalid("pipeline", "has no stages"));
        }
        for (i, s) in self.stages.iter().enumerate() {
            if s.key.trim().is_empty() || s.name.trim().is_empty() {
                return Err(Error::invalid(
                    "pipeline",
                    "a stage has an empty key or name",
                ));
            }
            if self.stages[..i]
                .iter()
                .any(|o| o.key == s.key || o.name == s.name)
            {
                return Err(Error::invalid(
                    "pipeline",
                    format!("stage {:?} appears twice", s.key),
                ));
            }
        }
        for e in &self.edges {
            if self.find(&e.from).is_none() || self.find(&e.to).is_none() {
                return Err(Error::invalid(
                    "pipeline",
                    format!("edge {} → {} names an unknown stage", e.from, e.to),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn seven_stage_template_has_chinese_names_and_lost_branches_from_every_open_stage() {
        let p = Pipeline::from_template(Template::SevenStage);
        p.validate().unwrap();
        assert_eq!(p.stages.len(), 8);
        assert_eq!(p.find("线索获取").unwrap().key, "lead");
        assert_eq!(p.find("成交").unwrap().kind(), StageKind::Won);
        for open in p.stages.iter().filter(|s| s.kind() == StageKind::Open) {
            assert!(
                p.is_edge(&open.key, "lost"),
                "{} has no lost branch",
                open.key
            );
        }
        assert!(!p.is_edge("lead", "proposal"));
    }

    #[test]
    fn five_stage_template_loops_after_sales_back_to_needs() {
        let p = Pipeline::from_template(Template::FiveStage);
        p.validate().unwrap();
        assert_eq!(p.stages.len(), 5);
        assert!(p.is_edge("after_sales", "needs"));
        assert_eq!(p.next_on_main_line("discovery").unwrap().key, "needs");
        assert_eq!(p.next_on_main_line("after_sales"), None);
    }

    #[test]
    fn next_on_main_line_skips_the_lost_branch() {
        let p = Pipeline::from_template(Template::SevenStage);
        assert_eq!(p.next_on_main_line("lead").unwrap().key, "screening");
        assert_eq!(p.next_on_main_line("negotiation").unwrap().key, "won");
    }
}
