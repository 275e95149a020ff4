//! Tests of dequantization against hand-built blocks and of quantization
//! error bounds.

use half::f16;
use proptest::prelude::*;

use super::*;

fn f16_bytes(v: f32) -> [u8; 2] {
    f16::from_f32(v).to_le_bytes()
}

#[test]
fn q4_0_block_decodes_nibbles() {
    let mut block = f16_bytes(0.5).to_vec();
    // Byte 0: low nibble 15 (value 0), high nibble 0 (value 16).
    block.push(0x0F);
    block.extend(std::iter::repeat_n(0x88, 15));
    let values = dequantize(DType::Q4_0, &block, 32).unwrap();
    assert_eq!(values[0], 3.5);
    assert_eq!(values[16], -4.0);
    assert!(values[1..16].iter().all(|&v| v == 0.0));
    assert!(values[17..].iter().all(|&v| v == 0.0));
}

#[test]
fn q4_1_block_adds_min() {
    let mut block = f16_bytes(0.25).to_vec();
    block.extend(f16_bytes(-1.0));
    block.push(0x4F); // value 0: 15, value 16: 4
    block.extend(std::iter::repeat_n(0x00, 15));
    let values = dequantize(DType::Q4_1, &block, 32).unwrap();
    assert_eq!(values[0], 15.0 * 0.25 - 1.0);
    assert_eq!(values[16], 4.0 * 0.25 - 1.0);
    assert_eq!(values[1], -1.0);
}

#[test]
fn q8_0_block_is_signed() {
    let mut block = f16_bytes(2.0).to_vec();
    block.extend((0..32).map(|i| (i as i8 - 16) as u8));
    let values = dequantize(DType::Q8_0, &block, 32).unwrap();
    let expected: Vec<f32> = (0..32).map(|i| 2.0 * (i as f32 - 16.0)).collect();
    assert_eq!(values, expected);
}

#[test]
fn q4_k_block_uses_high_scale_bits() {
    let mut block = f16_bytes(1.0).to_vec(); // d
    block.extend(f16_bytes(0.5)); // dmin
    // Sub-block 5: scale 0b10_0011 = 35, min 0b01_0010 = 18.
    let mut scales = [0u8; 12];
    scales[9] = 0x23 & 0x0F | ((18 & 0x0F) << 4);
    scales[1] |= (35 >> 4) << 6;
    scales[5] |= (18 >> 4) << 6;
    block.extend_from_slice(&scales);
    let mut qs = [0u8; 128];
    // Sub-block 5 is the high nibbles of the third 32-byte run.
    qs[64] = 0x70;
    block.extend_from_slice(&qs);
    assert_eq!(scale_min_k4(5, &scales), (35, 18));

    let values = dequantize(DType::Q4K, &block, 256).unwrap();
    assert_eq!(values[160], 35.0 * 7.0 - 0.5 * 18.0);
    assert_eq!(values[161], -0.5 * 18.0);
    // Sub-block 1 also reads its min from byte 5, whose top bits belong to
    // sub-block 5, so only the low 6 bits count.
    assert_eq!(values[32], 0.0);
}

#[test]
fn q6_k_block_combines_high_bits() {
    let mut block = vec![0u8; 210];
    // Value 96 of the second half (index 224): high nibble of ql[64 + 32],
    // bits 6-7 of qh[32 + 0], scale index 8 + 6.
    block[64 + 32] = 0x50; // low 4 bits of q: 5
    block[128 + 32] = 0b10 << 6; // high 2 bits of q: 2, so q = 37
    block[192 + 14] = (-3i8) as u8;
    block[208..210].copy_from_slice(&f16_bytes(0.5));
    let values = dequantize(DType::Q6K, &block, 256).unwrap();
    assert_eq!(values[224], 0.5 * -3.0 * (37.0 - 32.0));
    // Everything else has q = 0, so x = d * sc * -32 with sc = 0 here.
    assert_eq!(values[0], 0.0);
}

/// Random blocks of every quantized type with their values as dequantized
/// by gguf-py, written by `testdata/make_dequant_reference.py`.
const GGUF_PY_REFERENCE: &str = include_str!("../../testdata/dequant_reference.json");

#[test]
fn dequantize_matches_gguf_py_bits() {
    let reference: serde_json::Value = serde_json::from_str(GGUF_PY_REFERENCE).unwrap();
    let cases = reference["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 5);
    for case in cases {
        let name = case["dtype"].as_str().unwrap();
        let dtype = DType::ALL
            .into_iter()
            .find(|d| d.to_string() == name)
            .unwrap();
        let hex = case["bytes"].as_str().unwrap();
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let expected: Vec<u32> = serde_json::from_value(case["value_bits"].clone()).unwrap();

        let values = dequantize(dtype, &bytes, expected.len()).unwrap();
        let bits: Vec<u32> = values.iter().map(|v| v.to_bits()).collect();
        let first_difference = bits.iter().zip(&expected).position(|(a, b)| a != b);
        assert_eq!(first_difference, None, "{dtype}: first differing value");
    }
}

#[test]
fn dequantize_rejects_wrong_byte_count() {
    let err = dequantize(DType::Q8_0, &[0u8; 33], 32).unwrap_err();
    assert!(err.to_string().contains("33 bytes"), "{err}");
    let err = dequantize(DType::Q4K, &[0u8; 144], 100).unwrap_err();
    assert!(err.to_string().contains("whole number"), "{err}");
}

#[test]
fn zero_blocks_round_trip_to_zero() {
    for dtype in DType::ALL {
        let values = vec![0f32; 256];
        let bytes = quantize(dtype, &values).unwrap();
        assert_eq!(dequantize(dtype, &bytes, 256).unwrap(), values, "{dtype}");
    }
}

#[test]
fn float_types_round_trip() {
    let values: Vec<f32> = (0..64).map(|i| i as f32 * 0.125 - 3.0).collect();
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        let bytes = quantize(dtype, &values).unwrap();
        assert_eq!(dequantize(dtype, &bytes, 64).unwrap(), values, "{dtype}");
    }
}

/// Returns the maximum absolute error the quantizers promise for one block, given
/// its values.
fn error_bound(dtype: DType, block: &[f32]) -> f32 {
    let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
    let min = block.iter().copied().fold(f32::INFINITY, f32::min);
    let max = block.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    // Scales under 2^-14 are f16 subnormals, spaced 2^-24 apart, and that
    // spacing is multiplied by the largest level (times the largest 6- or
    // 8-bit sub-block scale for the K types).
    let max_multiplier = match dtype {
        DType::Q4K => 15.0 * 63.0,
        DType::Q6K => 32.0 * 127.0,
        _ => 128.0,
    };
    let tiny = 1e-6 * amax + max_multiplier * 2f32.powi(-24);
    match dtype {
        DType::F32 => 0.0,
        DType::F16 => amax * 1e-3 + 1e-4,
        DType::BF16 => amax * 8e-3,
        // Half a step (amax / 254) plus the f16 rounding of the scale.
        DType::Q8_0 => amax / 100.0 + tiny,
        // One step (amax / 8) where +8 clamps to 7.
        DType::Q4_0 => amax / 7.0 + tiny,
        // Half a step plus the f16 rounding of scale and min.
        DType::Q4_1 => (max - min) / 15.0 + amax / 500.0 + tiny,
        // Half a step plus the 6-bit rounding of scales and mins.
        DType::Q4K => (max - min.min(0.0)) / 16.0 + amax / 64.0 + tiny,
        DType::Q6K => amax / 32.0 + tiny,
    }
}

fn block_values() -> impl Strategy<Value = Vec<f32>> {
    (prop::collection::vec(-1.0f32..1.0, 256), -8i32..8).prop_map(|(values, exponent)| {
        let scale = 10f32.powi(exponent / 2);
        values.into_iter().map(|v| v * scale).collect()
    })
}

proptest! {
    #[test]
    fn quantization_error_is_bounded(values in block_values(), shift in -2.0f32..2.0) {
        // The shift makes some blocks all-positive or all-negative.
        let scale = values.iter().fold(0f32, |m, v| m.max(v.abs()));
        let values: Vec<f32> = values.iter().map(|v| v + shift * scale).collect();
        for dtype in DType::ALL {
            let bytes = quantize(dtype, &values).unwrap();
            prop_assert_eq!(bytes.len(), dtype.bytes_for(values.len()).unwrap());
            let decoded = dequantize(dtype, &bytes, values.len()).unwrap();
            for (block, decoded_block) in values
                .chunks(dtype.block_size().max(32))
                .zip(decoded.chunks(dtype.block_size().max(32)))
            {
                let bound = error_bound(dtype, block);
                for (&x, &y) in block.iter().zip(decoded_block) {
                    prop_assert!(
                        (x - y).abs() <= bound,
                        "{dtype}: {x} decoded as {y}, error {} > bound {bound}",
                        (x - y).abs()
                    );
                }
            }
        }
    }
}
