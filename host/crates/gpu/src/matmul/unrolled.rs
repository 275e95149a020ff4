//! Writes the bodies of `matmul_unrolled_lanes.wgsl` and
//! `matmul_swiglu_unrolled_lanes.wgsl`: straight code for one activation
//! row and a fixed number of 32-value blocks, so that llvmpipe loads each x
//! value once for all lanes (the shader files explain why).
//!
//! Only one activation row and quantized weights: with 2 or 4 rows, or
//! with F16 or F32 weights, the unrolled kernels ran no faster than
//! `matmul_gemv_lanes.wgsl` on lavapipe, and with 4 rows slower.

use std::fmt::Write;

use laser_model::DType;

const SOURCE: &str = include_str!("../../../../../shaders/matmul_unrolled_lanes.wgsl");
const SWIGLU_SOURCE: &str =
    include_str!("../../../../../shaders/matmul_swiglu_unrolled_lanes.wgsl");

/// The maximum number of 32-value blocks of K in an unrolled kernel. On
/// lavapipe a Q4_1 product with K = 576 (18 blocks) ran at about 5 GB/s of
/// weights, and with 24 or 48 blocks in one body at 3.6 (the body no longer
/// fits the CPU's instruction cache). A longer K goes to
/// `matmul_gemv_lanes.wgsl`, which took about 200 µs for 1×576×1536 (48
/// blocks), against 310 to 350 for three unrolled slices of 16 blocks added
/// up by three dispatches.
pub(super) const MAX_BLOCKS: u32 = 20;

/// The weight type, length of K and kind of one unrolled kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct Shape {
    pub dtype: DType,
    /// The number of 32-value blocks in a weight row, 1 to [`MAX_BLOCKS`].
    pub blocks: u32,
    /// The fused gate and up products of `matmul_swiglu_unrolled_lanes.wgsl`.
    pub swiglu: bool,
}

impl Shape {
    /// Returns the name of the kernel's entry point.
    pub fn entry(&self) -> &'static str {
        if self.swiglu {
            "matmul_swiglu_unrolled_lanes"
        } else {
            "matmul_unrolled_lanes"
        }
    }
}

/// Returns whether the unrolled kernels read `dtype`.
pub(super) fn supports(dtype: DType) -> bool {
    matches!(dtype, DType::Q4_0 | DType::Q4_1 | DType::Q8_0)
}

/// Returns the kernel source for `shape`, to follow `matmul_params.wgsl`.
///
/// # Panics
///
/// Panics when [`supports`] is false for the type, or when the block count
/// is 0.
pub(super) fn source(shape: Shape) -> String {
    assert!(
        supports(shape.dtype),
        "no unrolled kernel for {}",
        shape.dtype
    );
    assert!(shape.blocks > 0, "an unrolled kernel needs a block");
    let matrices: &[&str] = if shape.swiglu {
        &["gate", "up"]
    } else {
        &["sum"]
    };
    let skeleton = if shape.swiglu { SWIGLU_SOURCE } else { SOURCE };
    let mut out = format!("const QUANT_VEC4S: u32 = {}u;\n", quant_vec4s(shape.dtype));
    for line in skeleton.lines() {
        let Some(marker) = line.trim_start().strip_prefix("//@ ") else {
            out.push_str(line);
            out.push('\n');
            continue;
        };
        let indent = &line[..line.len() - line.trim_start().len()];
        let code = match marker.split(':').next().unwrap_or("") {
            "accumulators" => accumulators(matrices),
            "blocks" => (0..shape.blocks)
                .map(|block| block_code(shape, matrices, block))
                .collect(),
            "results" => results(shape),
            other => panic!("unknown marker {other:?} in an unrolled kernel"),
        };
        for code_line in code.lines() {
            let _ = writeln!(out, "{indent}{code_line}");
        }
    }
    out
}

/// Returns the vec4<u32> words of quants in one 32-value block.
fn quant_vec4s(dtype: DType) -> u32 {
    if dtype == DType::Q8_0 { 2 } else { 1 }
}

fn accumulators(matrices: &[&str]) -> String {
    let mut code = String::new();
    for matrix in matrices {
        for chain in 0..2 {
            let _ = writeln!(code, "var {matrix}_{chain} = vec4<f32>(0.0);");
        }
    }
    code
}

/// Returns the code of block `block`. Every weight load of the block comes first:
/// with the x loads first instead, the kernel ran at half the speed on
/// lavapipe. Then the block's x values, and for each matrix its quants as
/// integers in w0 .. w7 (values 4j .. 4j + 3 in wj) with scale `d`, and
/// the factored product.
fn block_code(shape: Shape, matrices: &[&str], block: u32) -> String {
    let mut code = String::from("{\n");
    let _ = writeln!(code, "    let i = first + {block}u;");
    // The swiglu kernel names its bindings after the matrix.
    let suffixes: Vec<String> = matrices
        .iter()
        .map(|matrix| {
            if shape.swiglu {
                format!("_{matrix}")
            } else {
                String::new()
            }
        })
        .collect();
    for suffix in &suffixes {
        for line in loads(shape.dtype, suffix).lines() {
            let _ = writeln!(code, "    {line}");
        }
    }
    for j in 0..8 {
        let _ = writeln!(code, "    let x{j} = x[{}u];", 8 * block + j);
    }
    if matches!(shape.dtype, DType::Q4_0 | DType::Q4_1) {
        code.push_str(
            "    let s = dot((x0 + x1) + (x2 + x3) + ((x4 + x5) + (x6 + x7)), vec4<f32>(1.0));\n",
        );
    }
    for (matrix, suffix) in matrices.iter().zip(&suffixes) {
        code.push_str("    {\n");
        for line in unpack(shape.dtype, suffix).lines() {
            let _ = writeln!(code, "        {line}");
        }
        let product = "((w0 * x0 + w1 * x1) + (w2 * x2 + w3 * x3)) + ((w4 * x4 + w5 * x5) + (w6 * x6 + w7 * x7))";
        // Each vec4 sum is added up at the end, so a scalar term goes in as
        // a quarter in every component.
        let term = match shape.dtype {
            DType::Q8_0 => format!("d * ({product})"),
            DType::Q4_0 => format!("d * ({product}) + vec4<f32>(-2.0 * d * s)"),
            _ => format!("d * ({product}) + vec4<f32>(0.25 * m * s)"),
        };
        let _ = writeln!(code, "        {matrix}_{} += {term};", block % 2);
        code.push_str("    }\n");
    }
    code.push_str("}\n");
    code
}

/// Returns code that loads the words of block `i` of this lane's row from the
/// bindings named with `suffix`, into variables named with it.
fn loads(dtype: DType, suffix: &str) -> String {
    let s = suffix;
    match dtype {
        DType::Q8_0 => format!(
            "let q{s}_0 = quants{s}[2u * i];\n\
             let q{s}_1 = quants{s}[2u * i + 1u];\n\
             let scale{s} = weights{s}[params.scale_base + i / 2u];\n"
        ),
        DType::Q4_0 => format!(
            "let q{s}_0 = quants{s}[i];\n\
             let scale{s} = weights{s}[params.scale_base + i / 2u];\n"
        ),
        DType::Q4_1 => format!(
            "let q{s}_0 = quants{s}[i];\n\
             let scale{s} = weights{s}[params.scale_base + i];\n"
        ),
        other => unreachable!("no unrolled kernel reads {other}"),
    }
}

/// Returns code that turns the words [`loads`] read into w0 .. w7 and `d` (and `m`
/// for Q4_1).
fn unpack(dtype: DType, suffix: &str) -> String {
    let s = suffix;
    let mut code = String::new();
    match dtype {
        DType::Q8_0 => {
            let _ = writeln!(code, "let d = prelude_f16(scale{s}, (i & 1u) == 1u);");
            for j in 0..8 {
                let word = ["x", "y", "z", "w"][j % 4];
                let _ = writeln!(
                    code,
                    "let w{j} = vec4<f32>(unpack4xI8(q{s}_{}.{word}));",
                    j / 4
                );
            }
        }
        DType::Q4_0 | DType::Q4_1 => {
            if dtype == DType::Q4_0 {
                let _ = writeln!(code, "let d = prelude_f16(scale{s}, (i & 1u) == 1u);");
            } else {
                let _ = writeln!(code, "let scale_min = unpack2x16float(scale{s});");
                code.push_str("let d = scale_min.x;\nlet m = scale_min.y;\n");
            }
            // Value j of the block is the low nibble of byte j for j < 16
            // and the high nibble of byte j - 16 after that.
            for (j, word) in ["x", "y", "z", "w"].iter().enumerate() {
                let _ = writeln!(
                    code,
                    "let w{j} = vec4<f32>(unpack4xU8(q{s}_0.{word} & 0x0f0f0f0fu));"
                );
            }
            for (j, word) in ["x", "y", "z", "w"].iter().enumerate() {
                let _ = writeln!(
                    code,
                    "let w{} = vec4<f32>(unpack4xU8((q{s}_0.{word} >> 4u) & 0x0f0f0f0fu));",
                    j + 4
                );
            }
        }
        other => unreachable!("no unrolled kernel reads {other}"),
    }
    code
}

fn results(shape: Shape) -> String {
    if shape.swiglu {
        "store(n, dot(gate_0 + gate_1, vec4<f32>(1.0)), dot(up_0 + up_1, vec4<f32>(1.0)));\n"
            .to_owned()
    } else {
        "store(n, dot(sum_0 + sum_1, vec4<f32>(1.0)));\n".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_replaces_every_marker() {
        let dtypes = crate::qmatrix::DTYPES
            .into_iter()
            .filter(|&dtype| supports(dtype));
        for dtype in dtypes {
            for swiglu in [false, true] {
                let shape = Shape {
                    dtype,
                    blocks: 5,
                    swiglu,
                };
                let code = source(shape);
                let markers = code
                    .lines()
                    .filter(|line| line.trim_start().starts_with("//@"));
                assert_eq!(markers.count(), 0, "{dtype}: marker left");
                // Blocks 0 .. 4 read x vec4s 0 .. 39.
                assert!(code.contains("x[0u]"), "{dtype}");
                assert!(code.contains("x[39u]"), "{dtype}");
                assert!(!code.contains("x[40u]"), "{dtype}");
            }
        }
    }
}
