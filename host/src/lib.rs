//! laser-host trains a language model (the policy) against several reward
//! models at once and learns, per prompt, which reward model to trust: the
//! LASeR method (Learning to Adaptively Select Rewards, arXiv 2410.01735).
//!
//! The crate holds the inference engine built on `laser-gpu`'s kernels, the
//! command line, and the glue to the plugin host in `laser-plugins`. It is
//! not a general model server: it runs the llama family (Llama, SmolLM,
//! Mistral, Qwen2) for generation, scoring and preference training.

pub mod atomic;
pub mod cli;
pub mod commands;
pub mod engine;
pub mod fetch;
pub mod fingerprint;
pub mod interrupt;
pub mod laser;
pub mod train;
