//! Task data for training and evaluating the policy. The crate contains
//! loaders for GSM8K, StrategyQA and a generic JSONL format, a built-in task
//! set generated from templates, and seeded train/eval splits. It also owns
//! the answer instruction wrapped around each question, and the answer
//! extraction and checking shared by evaluation and the verifier reward.
//!
//! Every loader returns [`Instance`]s whose `prompt` is the bare question.
//! [`prompt::render`] adds the per-kind answer instruction, and
//! [`answer::is_correct`] reads the answer back out of a response.
//!
//! ```
//! use laser_data::{EvalSize, builtin, is_correct, prompt, split_instances};
//!
//! let instances = builtin(0, 30);
//! let split = split_instances(instances, EvalSize::Fraction(0.2), 0).unwrap();
//! assert_eq!(split.eval.len(), 6);
//!
//! let task = &split.train[0];
//! let message = prompt::render(task);
//! assert!(message.starts_with(&task.prompt));
//! let response = format!("Let me work it out.\nAnswer: {}", task.reference.as_deref().unwrap());
//! assert!(is_correct(task, &response));
//! ```
//!
//! This crate does not download data sets, tokenize or apply chat templates.

pub mod answer;
pub mod builtin;
pub mod error;
pub mod gsm8k;
pub mod instance;
pub mod jsonl;
pub mod load;
pub mod prompt;
mod record;
pub mod split;
pub mod strategyqa;

pub use answer::{extract, grade, is_correct};
pub use builtin::builtin;
pub use error::LoadError;
pub use instance::{AnswerKind, Instance};
pub use load::{Format, load, load_all};
pub use split::{EvalSize, Split, split, split_instances};
