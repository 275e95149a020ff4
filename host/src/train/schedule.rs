//! Learning-rate schedules, as a factor of the base learning rate per
//! optimizer step.

use serde::{Deserialize, Serialize};

/// The shape of the learning rate over training.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleKind {
    /// The base rate after warm-up.
    Constant,
    /// Linear decay from the base rate after warm-up to 0 at the last
    /// step, as `transformers.get_linear_schedule_with_warmup`.
    Linear,
}

/// A learning-rate schedule: linear warm-up from 0 over `warmup_steps`,
/// then `kind`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub kind: ScheduleKind,
    pub warmup_steps: u32,
    pub total_steps: u32,
}

impl Schedule {
    /// Returns the factor of the base rate at step `step` (counted from
    /// 0), as `transformers`' schedules compute it.
    pub fn factor(&self, step: u32) -> f64 {
        let step = f64::from(step);
        let warmup = f64::from(self.warmup_steps);
        if step < warmup {
            return step / warmup.max(1.0);
        }
        match self.kind {
            ScheduleKind::Constant => 1.0,
            ScheduleKind::Linear => {
                let total = f64::from(self.total_steps);
                ((total - step) / (total - warmup).max(1.0)).max(0.0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_warms_up_then_decays() {
        let schedule = Schedule {
            kind: ScheduleKind::Linear,
            warmup_steps: 2,
            total_steps: 6,
        };
        let factors: Vec<f64> = (0..7).map(|s| schedule.factor(s)).collect();
        assert_eq!(factors, vec![0.0, 0.5, 1.0, 0.75, 0.5, 0.25, 0.0]);
    }

    #[test]
    fn constant_without_warmup_is_one() {
        let schedule = Schedule {
            kind: ScheduleKind::Constant,
            warmup_steps: 0,
            total_steps: 6,
        };
        assert_eq!(schedule.factor(0), 1.0);
        assert_eq!(schedule.factor(5), 1.0);
    }
}
