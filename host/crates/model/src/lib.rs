//! Model files and everything read from them: GGUF and Hugging Face
//! checkpoints, the architecture config, CPU dequantization, the tokenizer
//! and the chat template.
//!
//! Nothing here touches the GPU; `laser-gpu` uploads the tensors this crate
//! hands out in their stored format.

pub mod chat;
pub mod checkpoint;
pub mod config;
pub mod dtype;
pub mod gguf;
pub mod hf;
pub mod quant;
pub mod synthetic;
pub mod tensor;
pub mod tokenizer;

#[cfg(test)]
mod test_support;

pub use chat::{ChatMessage, ChatTemplate};
pub use checkpoint::{Checkpoint, WeightsId, expected_tensors};
pub use config::{Arch, ModelConfig, RopeLayout};
pub use dtype::DType;
pub use gguf::{GgufFile, GgufWriter, MetadataArray, MetadataValue, TensorInfo, ValueType};
pub use hf::HfCheckpoint;
pub use tensor::TensorView;
pub use tokenizer::Tokenizer;
