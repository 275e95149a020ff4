//! WGSL compute kernels for transformer inference and training, dispatched
//! through wgpu (Vulkan, Metal, DX12, or lavapipe on the CPU).
//!
//! Each kernel's WGSL source is one file in the repository's `shaders/`
//! folder; each Rust module here owns its dispatch and a plain CPU reference
//! that the tests compare against. This crate does not know about models:
//! the engine in `laser-host` strings the kernels into a forward pass.

pub mod attention;
pub mod dense;
pub mod device;
pub mod elementwise;
pub mod embedding;
mod encoder;
mod loops;
pub mod matmul;
pub mod norm;
pub mod optimizer;
mod pass;
mod profile;
pub mod qmatrix;
pub mod rope;
pub mod sampling;
#[cfg(test)]
mod testing;

pub use device::{Gpu, Kernels, MAX_BINDING_BYTES};
pub use embedding::Embedding;
pub use encoder::Encoder;
pub use matmul::Matmul;
pub use qmatrix::QMatrix;
