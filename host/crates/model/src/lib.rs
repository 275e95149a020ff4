//! Model files and everything read from them: GGUF and Hugging Face
//! checkpoints, the architecture config, CPU dequantization, the tokenizer
//! and the chat template.
//!
//! Nothing here touches the GPU; `laser-gpu` uploads the tensors this crate
//! hands out in their stored format.

pub mod dtype;
pub mod config;
pub mod gguf;
pub mod quant;
pub mod tensor;

pub use config::{Arch, ModelConfig, RopeLayout};
pub use dtype::DType;
pub use gguf::{GgufFile, GgufWriter, MetadataArray, MetadataValue, TensorInfo, ValueType};
pub use tensor::TensorView;
