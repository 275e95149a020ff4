//! CPU dequantization of every [`DType`] and simple quantizers for tests.
//!
//! Dequantization follows ggml's reference code (`ggml-quants.c`,
//! `dequantize_row_*`) operation for operation, in the same f32 order, so
//! its output is bit-exact with ggml's scalar path. The quantizers round to
//! nearest with one scale per block (and per sub-block for the K types).
//! They produce valid blocks but are not ggml's error-minimizing searches,
//! so their bytes differ from llama.cpp's quantize tool.

use anyhow::{Result, bail};
use half::{bf16, f16};

use crate::DType;

/// Converts `n` stored values of type `dtype` in `bytes` to f32.
///
/// # Errors
///
/// Fails when `n` is not a whole number of blocks or `bytes` is not exactly
/// the size of `n` values.
pub fn dequantize(dtype: DType, bytes: &[u8], n: usize) -> Result<Vec<f32>> {
    let Some(expected) = dtype.bytes_for(n) else {
        bail!(
            "dequantize: {n} values are not a whole number of {dtype} blocks of {}",
            dtype.block_size()
        );
    };
    if bytes.len() != expected {
        bail!(
            "dequantize: {} bytes given for {n} {dtype} values: expected {expected}",
            bytes.len()
        );
    }

    let mut out = Vec::with_capacity(n);
    let blocks = bytes.chunks_exact(dtype.block_bytes());
    match dtype {
        DType::F32 => out.extend(blocks.map(|b| f32::from_le_bytes(b.try_into().unwrap()))),
        DType::F16 => out.extend(blocks.map(|b| read_f16(b, 0))),
        DType::BF16 => out.extend(blocks.map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32())),
        DType::Q8_0 => blocks.for_each(|b| dequantize_q8_0(b, &mut out)),
        DType::Q4_0 => blocks.for_each(|b| dequantize_q4_0(b, &mut out)),
        DType::Q4_1 => blocks.for_each(|b| dequantize_q4_1(b, &mut out)),
        DType::Q4K => blocks.for_each(|b| dequantize_q4_k(b, &mut out)),
        DType::Q6K => blocks.for_each(|b| dequantize_q6_k(b, &mut out)),
    }
    Ok(out)
}

/// Converts or quantizes `values` to `dtype`, returning the stored bytes.
///
/// # Errors
///
/// Fails when `values.len()` is not a whole number of blocks.
pub fn quantize(dtype: DType, values: &[f32]) -> Result<Vec<u8>> {
    let Some(size) = dtype.bytes_for(values.len()) else {
        bail!(
            "quantize: {} values are not a whole number of {dtype} blocks of {}",
            values.len(),
            dtype.block_size()
        );
    };

    let mut out = Vec::with_capacity(size);
    let blocks = values.chunks_exact(dtype.block_size());
    match dtype {
        DType::F32 => values
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        DType::F16 => values
            .iter()
            .for_each(|&v| out.extend_from_slice(&f16::from_f32(v).to_le_bytes())),
        DType::BF16 => values
            .iter()
            .for_each(|&v| out.extend_from_slice(&bf16::from_f32(v).to_le_bytes())),
        DType::Q8_0 => blocks.for_each(|b| quantize_q8_0(b, &mut out)),
        DType::Q4_0 => blocks.for_each(|b| quantize_q4_0(b, &mut out)),
        DType::Q4_1 => blocks.for_each(|b| quantize_q4_1(b, &mut out)),
        DType::Q4K => blocks.for_each(|b| quantize_q4_k(b, &mut out)),
        DType::Q6K => blocks.for_each(|b| quantize_q6_k(b, &mut out)),
    }
    debug_assert_eq!(out.len(), size);
    Ok(out)
}

fn read_f16(bytes: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([bytes[at], bytes[at + 1]]).to_f32()
}

fn push_f16(out: &mut Vec<u8>, value: f32) -> f32 {
    let half = f16::from_f32(value);
    out.extend_from_slice(&half.to_le_bytes());
    half.to_f32()
}

// Q8_0 block (34 bytes): d: f16, qs: [i8; 32]; x = d * q.

fn dequantize_q8_0(block: &[u8], out: &mut Vec<f32>) {
    let d = read_f16(block, 0);
    out.extend(block[2..34].iter().map(|&q| f32::from(q as i8) * d));
}

fn quantize_q8_0(values: &[f32], out: &mut Vec<u8>) {
    let amax = values.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = push_f16(out, amax / 127.0);
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    out.extend(
        values
            .iter()
            .map(|&v| (v * id).round().clamp(-127.0, 127.0) as i8 as u8),
    );
}

// Q4_0 block (18 bytes): d: f16, qs: [u8; 16]. Byte j stores value j in
// its low nibble and value j + 16 in its high nibble. x = d * (q - 8).

fn dequantize_q4_0(block: &[u8], out: &mut Vec<f32>) {
    let d = read_f16(block, 0);
    let qs = &block[2..18];
    out.extend(qs.iter().map(|&q| f32::from((q & 0x0F) as i8 - 8) * d));
    out.extend(qs.iter().map(|&q| f32::from((q >> 4) as i8 - 8) * d));
}

fn quantize_q4_0(values: &[f32], out: &mut Vec<u8>) {
    // The value of largest magnitude maps to -8, the end with more range.
    let max = values
        .iter()
        .copied()
        .fold(0f32, |m, v| if v.abs() > m.abs() { v } else { m });
    let d = push_f16(out, max / -8.0);
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let q = |v: f32| ((v * id).round() + 8.0).clamp(0.0, 15.0) as u8;
    out.extend((0..16).map(|j| q(values[j]) | (q(values[j + 16]) << 4)));
}

// Q4_1 block (20 bytes): d: f16, m: f16, qs: [u8; 16] in Q4_0's order;
// x = d * q + m.

fn dequantize_q4_1(block: &[u8], out: &mut Vec<f32>) {
    let d = read_f16(block, 0);
    let m = read_f16(block, 2);
    let qs = &block[4..20];
    out.extend(qs.iter().map(|&q| f32::from(q & 0x0F) * d + m));
    out.extend(qs.iter().map(|&q| f32::from(q >> 4) * d + m));
}

fn quantize_q4_1(values: &[f32], out: &mut Vec<u8>) {
    let min = values.iter().copied().fold(f32::INFINITY, f32::min);
    let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let d = push_f16(out, (max - min) / 15.0);
    let m = push_f16(out, min);
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let q = |v: f32| ((v - m) * id).round().clamp(0.0, 15.0) as u8;
    out.extend((0..16).map(|j| q(values[j]) | (q(values[j + 16]) << 4)));
}

// Q4_K block (144 bytes): d: f16, dmin: f16, scales: [u8; 12], qs: [u8; 128].
// Eight sub-blocks of 32 values, each with a 6-bit scale `sc` and a 6-bit
// min `m`; x = d * sc * q - dmin * m. Each 32-byte run of `qs` holds two
// sub-blocks: the first in low nibbles, the second in high nibbles.

/// Unpacks the 6-bit scale and min of sub-block `j` (ggml's
/// `get_scale_min_k4`). Sub-blocks 0-3 use the low 6 bits of bytes j and
/// j + 4. Sub-blocks 4-7 take their low 4 bits from byte j + 4 and their
/// high 2 bits from the top of bytes j - 4 and j.
fn scale_min_k4(j: usize, scales: &[u8]) -> (u8, u8) {
    if j < 4 {
        (scales[j] & 63, scales[j + 4] & 63)
    } else {
        let sc = (scales[j + 4] & 0x0F) | ((scales[j - 4] >> 6) << 4);
        let m = (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4);
        (sc, m)
    }
}

fn dequantize_q4_k(block: &[u8], out: &mut Vec<f32>) {
    let d = read_f16(block, 0);
    let dmin = read_f16(block, 2);
    let scales = &block[4..16];
    let qs = &block[16..144];
    for (chunk, q) in qs.chunks_exact(32).enumerate() {
        let (sc1, m1) = scale_min_k4(2 * chunk, scales);
        let (sc2, m2) = scale_min_k4(2 * chunk + 1, scales);
        let (d1, min1) = (d * f32::from(sc1), dmin * f32::from(m1));
        let (d2, min2) = (d * f32::from(sc2), dmin * f32::from(m2));
        out.extend(q.iter().map(|&b| d1 * f32::from(b & 0x0F) - min1));
        out.extend(q.iter().map(|&b| d2 * f32::from(b >> 4) - min2));
    }
}

fn quantize_q4_k(values: &[f32], out: &mut Vec<u8>) {
    // Per sub-block: the min is clamped to at most 0 because the format
    // subtracts a non-negative dmin * m.
    let mut sub_scales = [0f32; 8];
    let mut sub_mins = [0f32; 8];
    for (j, sub) in values.chunks_exact(32).enumerate() {
        let min = sub.iter().copied().fold(0f32, f32::min);
        let max = sub.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        sub_scales[j] = (max - min) / 15.0;
        sub_mins[j] = -min;
    }
    let max_scale = sub_scales.iter().copied().fold(0f32, f32::max);
    let max_min = sub_mins.iter().copied().fold(0f32, f32::max);
    let d = push_f16(out, max_scale / 63.0);
    let dmin = push_f16(out, max_min / 63.0);
    let quantize_6bit = |v: f32, step: f32| {
        if step > 0.0 {
            (v / step).round().clamp(0.0, 63.0) as u8
        } else {
            0
        }
    };
    let sc: [u8; 8] = std::array::from_fn(|j| quantize_6bit(sub_scales[j], d));
    let m: [u8; 8] = std::array::from_fn(|j| quantize_6bit(sub_mins[j], dmin));

    // The inverse of `scale_min_k4`.
    let mut scales = [0u8; 12];
    for j in 0..8 {
        if j < 4 {
            scales[j] = sc[j];
            scales[j + 4] = m[j];
        } else {
            scales[j + 4] = (sc[j] & 0x0F) | ((m[j] & 0x0F) << 4);
            scales[j - 4] |= (sc[j] >> 4) << 6;
            scales[j] |= (m[j] >> 4) << 6;
        }
    }
    out.extend_from_slice(&scales);

    let levels: Vec<u8> = values
        .chunks_exact(32)
        .enumerate()
        .flat_map(|(j, sub)| {
            let step = d * f32::from(sc[j]);
            let offset = dmin * f32::from(m[j]);
            sub.iter().map(move |&v| {
                if step > 0.0 {
                    ((v + offset) / step).round().clamp(0.0, 15.0) as u8
                } else {
                    0
                }
            })
        })
        .collect();
    for pair in levels.chunks_exact(64) {
        out.extend((0..32).map(|l| pair[l] | (pair[l + 32] << 4)));
    }
}

// Q6_K block (210 bytes): ql: [u8; 128], qh: [u8; 64], scales: [i8; 16],
// d: f16. Sixteen sub-blocks of 16 values with signed 8-bit scales; each
// 6-bit q is 4 low bits from `ql` and 2 high bits from `qh`;
// x = d * sc * (q - 32). Each half of 128 values uses 64 bytes of `ql`:
// values l and l + 64 share byte l, and l + 32 and l + 96 share byte
// l + 32. It also uses 32 bytes of `qh`: values l, l + 32, l + 64 and
// l + 96 take bits 0-1, 2-3, 4-5 and 6-7 of byte l.

fn dequantize_q6_k(block: &[u8], out: &mut Vec<f32>) {
    let d = read_f16(block, 208);
    let scales = &block[192..208];
    for half in 0..2 {
        let ql = &block[64 * half..64 * half + 64];
        let qh = &block[128 + 32 * half..128 + 32 * half + 32];
        let sc = &scales[8 * half..8 * half + 8];
        let mut y = [0f32; 128];
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 0x0F) | ((qh[l] & 3) << 4)) as i8 - 32;
            let q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
            let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
            // ggml evaluates (d * sc) * q, left to right.
            y[l] = d * f32::from(sc[is] as i8) * f32::from(q1);
            y[l + 32] = d * f32::from(sc[is + 2] as i8) * f32::from(q2);
            y[l + 64] = d * f32::from(sc[is + 4] as i8) * f32::from(q3);
            y[l + 96] = d * f32::from(sc[is + 6] as i8) * f32::from(q4);
        }
        out.extend_from_slice(&y);
    }
}

fn quantize_q6_k(values: &[f32], out: &mut Vec<u8>) {
    let sub_scales: [f32; 16] = std::array::from_fn(|j| {
        let amax = values[16 * j..16 * j + 16]
            .iter()
            .fold(0f32, |m, v| m.max(v.abs()));
        amax / 31.0
    });
    let max_scale = sub_scales.iter().copied().fold(0f32, f32::max);
    let d = f16::from_f32(max_scale / 127.0).to_f32();
    let sc: [i8; 16] = std::array::from_fn(|j| {
        if d > 0.0 {
            (sub_scales[j] / d).round().clamp(0.0, 127.0) as i8
        } else {
            0
        }
    });
    let levels: Vec<u8> = values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let step = d * f32::from(sc[i / 16]);
            let q = if step > 0.0 {
                (v / step).round().clamp(-32.0, 31.0)
            } else {
                0.0
            };
            (q as i8 + 32) as u8
        })
        .collect();

    let mut ql = [0u8; 128];
    let mut qh = [0u8; 64];
    for half in 0..2 {
        let level = &levels[128 * half..128 * half + 128];
        for l in 0..32 {
            ql[64 * half + l] = (level[l] & 0x0F) | ((level[l + 64] & 0x0F) << 4);
            ql[64 * half + l + 32] = (level[l + 32] & 0x0F) | ((level[l + 96] & 0x0F) << 4);
            qh[32 * half + l] = (level[l] >> 4)
                | ((level[l + 32] >> 4) << 2)
                | ((level[l + 64] >> 4) << 4)
                | ((level[l + 96] >> 4) << 6);
        }
    }
    out.extend_from_slice(&ql);
    out.extend_from_slice(&qh);
    out.extend(sc.iter().map(|&s| s as u8));
    push_f16(out, d);
}

#[cfg(test)]
mod tests;
