//! The change rules of an asset, from the config to the store: its `[[policy]]` (and the
//! safety policy for changes that touch its safety items) and its staging relations. The
//! store knows no config; this is the one place that translates.

use chrono::TimeDelta;
use otdrift_config::{AssetConfig, Config, PolicyConfig};
use otdrift_store::{ChangeRules, PolicyRule};

fn rule(p: &PolicyConfig) -> PolicyRule {
    let delta = |d: std::time::Duration| TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX);
    PolicyRule {
        id: p.id.clone(),
        approvals: p.approvals,
        notice: delta(p.notice),
        require_staging: p.require_staging,
        diff_review: p.diff_review,
        review_within: delta(p.review_within),
    }
}

/// The change rules that apply to `asset`.
pub fn change_rules(config: &Config, asset: &AssetConfig) -> ChangeRules {
    ChangeRules {
        policy: asset
            .policy
            .as_deref()
            .and_then(|id| config.policy(id))
            .map(rule),
        safety: asset.safety.clone(),
        safety_policy: asset
            .safety_policy
            .as_deref()
            .and_then(|id| config.policy(id))
            .map(rule),
        staging: config
            .staging_of(&asset.id)
            .into_iter()
            .map(|a| a.id.clone())
            .collect(),
        production: asset.staging_for.clone(),
        skew: TimeDelta::seconds(i64::try_from(config.agent.clock_skew_secs).unwrap_or(3600)),
    }
}
