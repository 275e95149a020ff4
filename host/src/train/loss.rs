//! The preference losses on the CPU, from summed sequence
//! log-probabilities: DPO (Rafailov et al., 2023, "Direct Preference
//! Optimization"), IPO (Azar et al., 2023, "A General Theoretical Paradigm
//! to Understand Learning from Human Preferences"), and an NLL term on the
//! chosen response. Each returns the gradient in every response token's
//! log-probability, which the GPU backward pass takes as `d_logprob`.

use serde::{Deserialize, Serialize};

/// The preference loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum LossKind {
    /// `-log sigmoid(beta * h)`, with h the difference of the chosen and
    /// rejected log-ratios against the reference, over summed
    /// log-probabilities.
    Dpo,
    /// `(h - 1 / (2 beta))^2`, with h over per-token mean log-probabilities
    /// as in TRL's `loss_type="ipo"`.
    Ipo,
}

/// Loss settings. The defaults are DPO with beta 0.1 plus the chosen
/// response's NLL at weight 1.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LossConfig {
    pub kind: LossKind,
    pub beta: f64,
    /// Weight of the mean per-token NLL of the chosen response.
    pub nll_weight: f64,
}

impl Default for LossConfig {
    fn default() -> Self {
        Self {
            kind: LossKind::Dpo,
            beta: 0.1,
            nll_weight: 1.0,
        }
    }
}

/// One pair's summed response log-probabilities under the policy and the
/// reference, and the response lengths in tokens.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PairLogprobs {
    pub policy_chosen: f64,
    pub policy_rejected: f64,
    pub reference_chosen: f64,
    pub reference_rejected: f64,
    pub chosen_tokens: usize,
    pub rejected_tokens: usize,
}

/// One pair's loss and its gradients.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PairLoss {
    /// The preference loss plus the weighted NLL.
    pub loss: f64,
    /// The reward margin `beta * h`: the implicit reward of the chosen
    /// response minus that of the rejected one.
    pub margin: f64,
    /// The chosen response's mean per-token NLL.
    pub chosen_nll: f64,
    /// d loss / d log-probability of each chosen response token.
    pub d_chosen: f64,
    /// d loss / d log-probability of each rejected response token.
    pub d_rejected: f64,
}

/// Returns `log(1 + exp(x))` without overflow.
fn softplus(x: f64) -> f64 {
    if x > 0.0 {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Computes one pair's loss and gradients.
pub fn pair_loss(config: &LossConfig, p: &PairLogprobs) -> PairLoss {
    let nc = p.chosen_tokens.max(1) as f64;
    let nr = p.rejected_tokens.max(1) as f64;
    let beta = config.beta;
    let (preference, margin, d_chosen, d_rejected) = match config.kind {
        LossKind::Dpo => {
            let h =
                (p.policy_chosen - p.reference_chosen) - (p.policy_rejected - p.reference_rejected);
            // d/dh of -log sigmoid(beta h) = -beta sigmoid(-beta h)
            let d_h = -beta * sigmoid(-beta * h);
            (softplus(-beta * h), beta * h, d_h, -d_h)
        }
        LossKind::Ipo => {
            let h = (p.policy_chosen - p.reference_chosen) / nc
                - (p.policy_rejected - p.reference_rejected) / nr;
            let gap = h - 1.0 / (2.0 * beta);
            let d_h = 2.0 * gap;
            (gap * gap, beta * h, d_h / nc, -d_h / nr)
        }
    };
    let chosen_nll = -p.policy_chosen / nc;
    PairLoss {
        loss: preference + config.nll_weight * chosen_nll,
        margin,
        chosen_nll,
        d_chosen: d_chosen - config.nll_weight / nc,
        d_rejected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> PairLogprobs {
        PairLogprobs {
            policy_chosen: -12.0,
            policy_rejected: -15.0,
            reference_chosen: -13.0,
            reference_rejected: -14.0,
            chosen_tokens: 6,
            rejected_tokens: 9,
        }
    }

    #[test]
    fn dpo_at_reference_is_log_two() {
        let config = LossConfig {
            nll_weight: 0.0,
            ..LossConfig::default()
        };
        let p = PairLogprobs {
            policy_chosen: -3.0,
            reference_chosen: -3.0,
            policy_rejected: -4.0,
            reference_rejected: -4.0,
            ..pair()
        };
        let loss = pair_loss(&config, &p);
        assert!((loss.loss - 2f64.ln()).abs() < 1e-12, "loss {}", loss.loss);
        assert_eq!(loss.margin, 0.0);
    }

    /// Central differences in the summed log-probabilities, spread over the
    /// response tokens, against the per-token gradients.
    #[test]
    fn gradients_match_finite_differences() {
        for kind in [LossKind::Dpo, LossKind::Ipo] {
            let config = LossConfig {
                kind,
                beta: 0.1,
                nll_weight: 1.0,
            };
            let p = pair();
            let loss = pair_loss(&config, &p);
            let step = 1e-5;
            let at = |dc: f64, dr: f64| {
                let q = PairLogprobs {
                    policy_chosen: p.policy_chosen + dc,
                    policy_rejected: p.policy_rejected + dr,
                    ..p
                };
                pair_loss(&config, &q).loss
            };
            let numeric_chosen = (at(step, 0.0) - at(-step, 0.0)) / (2.0 * step);
            let numeric_rejected = (at(0.0, step) - at(0.0, -step)) / (2.0 * step);
            assert!(
                (numeric_chosen - loss.d_chosen).abs() < 1e-7,
                "{kind:?} d_chosen {} vs {numeric_chosen}",
                loss.d_chosen
            );
            assert!(
                (numeric_rejected - loss.d_rejected).abs() < 1e-7,
                "{kind:?} d_rejected {} vs {numeric_rejected}",
                loss.d_rejected
            );
        }
    }
}
