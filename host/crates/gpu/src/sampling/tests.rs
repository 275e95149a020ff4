//! Tests of the sampling and token log-probability kernels against CPU
//! references, finite differences and known Philox outputs.

use std::collections::HashSet;

use rand::Rng;

use super::*;
use crate::testing::{assert_close, gpu, read_f32, read_u32, rng, run, time_gpu, uniform_vec};

/// The vocabulary size of the real model.
const REAL_VOCAB: usize = 49_152;

/// Runs [`Sampler`] on the GPU and returns `(tokens, logprobs)`.
fn sample_on_gpu(logits: &[f32], params: &[SampleParams], v: usize) -> (Vec<u32>, Vec<f32>) {
    sample_leading_on_gpu(logits, params, v, v)
}

/// Runs [`Sampler::encode_leading`] over the first `v` of every `stride`
/// logits and returns `(tokens, logprobs)`.
fn sample_leading_on_gpu(
    logits: &[f32],
    params: &[SampleParams],
    v: usize,
    stride: usize,
) -> (Vec<u32>, Vec<f32>) {
    let gpu = gpu();
    let op = Sampler::new(gpu).unwrap();
    let b = params.len();
    let logits_buf = gpu.buffer_from("logits", logits);
    let params_buf = gpu.buffer_from("params", params);
    let tokens_buf = gpu.buffer_zeroed("tokens", (b * 4) as u64);
    let logprobs_buf = gpu.buffer_zeroed("logprobs", (b * 4) as u64);
    run(|enc| {
        op.encode_leading(
            gpu,
            enc,
            &logits_buf,
            &params_buf,
            &tokens_buf,
            &logprobs_buf,
            b as u32,
            v as u32,
            stride as u32,
        )
    });
    (read_u32(&tokens_buf, b), read_f32(&logprobs_buf, b))
}

#[test]
fn leading_ids_exclude_padding() {
    // Two rows of 10 logits, of which only the first 6 may be drawn. The
    // padding ids 6 .. 9 hold each row's largest logits.
    let (v, stride) = (6usize, 10usize);
    let mut rng = rng(11);
    let mut logits = uniform_vec(&mut rng, 2 * stride, 1.0);
    for row in 0..2 {
        for id in v..stride {
            logits[row * stride + id] = 50.0;
        }
    }

    let params = [SampleParams::greedy(), SampleParams::new(1.0, 0, 1.0, 3, 0)];
    let (tokens, logprobs) = sample_leading_on_gpu(&logits, &params, v, stride);
    for row in 0..2 {
        let leading = &logits[row * stride..row * stride + v];
        let token = tokens[row] as usize;
        assert!(token < v, "row {row} drew padding id {token}");
        let max = leading.iter().copied().fold(f32::MIN, f32::max);
        let log_sum = max + leading.iter().map(|l| (l - max).exp()).sum::<f32>().ln();
        let expected = leading[token] - log_sum;
        assert!(
            (logprobs[row] - expected).abs() < 1e-4,
            "row {row}: logprob {} against {expected}",
            logprobs[row]
        );
    }
    let argmax = (0..v)
        .max_by(|&a, &b| logits[a].total_cmp(&logits[b]))
        .unwrap();
    assert_eq!(tokens[0] as usize, argmax, "greedy row");
}

/// Returns the counts of each token id below `v`.
fn histogram(tokens: &[u32], v: usize) -> Vec<usize> {
    let mut counts = vec![0; v];
    for &t in tokens {
        counts[t as usize] += 1;
    }
    counts
}

#[test]
fn philox_matches_known_answers() {
    // Known-answer vectors of the Random123 distribution (kat_vectors).
    assert_eq!(
        philox4x32_10([0; 4], [0; 2]),
        [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8]
    );
    assert_eq!(
        philox4x32_10(
            [0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344],
            [0xa409_3822, 0x299f_31d0]
        ),
        [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1]
    );
}

#[test]
fn greedy_equals_argmax_lowest_id() {
    let mut rng = rng(40);
    for v in [1, 7, 300, REAL_VOCAB] {
        let b = 5;
        let mut logits = uniform_vec(&mut rng, b * v, 10.0);
        // Row 1 has its max twice; the lower id must win.
        if v > 3 {
            logits[v + 3] = 20.0;
            logits[v + v - 1] = 20.0;
        }
        let params = vec![SampleParams::greedy(); b];
        let (tokens, logprobs) = sample_on_gpu(&logits, &params, v);
        let (expected_tokens, expected_logprobs) = sample_reference(&logits, &params, v);
        for r in 0..b {
            assert_eq!(
                tokens[r] as usize,
                argmax(&logits[r * v..(r + 1) * v]),
                "row {r}, V {v}"
            );
        }
        assert_eq!(tokens, expected_tokens, "V {v}");
        assert_close(
            &format!("greedy logprobs V {v}"),
            &logprobs,
            &expected_logprobs,
            1e-5,
            1e-5,
        );
        if v > 3 {
            assert_eq!(tokens[1], 3, "tie at the max must pick the lowest id");
        }
    }
}

#[test]
fn top_k_one_equals_greedy() {
    let mut rng = rng(41);
    let (b, v) = (6, 1001);
    let logits = uniform_vec(&mut rng, b * v, 5.0);
    let params: Vec<SampleParams> = (0..b)
        .map(|r| SampleParams::new(1.0, 1, 1.0, 99, r as u32))
        .collect();
    let (tokens, _) = sample_on_gpu(&logits, &params, v);
    let (greedy, _) = sample_on_gpu(&logits, &vec![SampleParams::greedy(); b], v);
    assert_eq!(tokens, greedy);
}

#[test]
fn same_seed_same_tokens_other_seed_differs() {
    let mut rng = rng(42);
    let (b, v) = (32, 1000);
    // Flat logits, so draws are spread over many tokens.
    let logits = uniform_vec(&mut rng, b * v, 0.5);
    let params_a: Vec<SampleParams> = (0..b)
        .map(|_| SampleParams::new(1.0, 0, 1.0, 1234, 7))
        .collect();
    let params_b: Vec<SampleParams> = (0..b)
        .map(|_| SampleParams::new(1.0, 0, 1.0, 1234 + (1 << 32), 7))
        .collect();
    let (first, _) = sample_on_gpu(&logits, &params_a, v);
    let (again, _) = sample_on_gpu(&logits, &params_a, v);
    let (other, _) = sample_on_gpu(&logits, &params_b, v);
    assert_eq!(first, again, "same seed must reproduce the tokens");
    let differing = first.iter().zip(&other).filter(|(a, b)| a != b).count();
    assert!(
        differing > b / 2,
        "only {differing} of {b} rows changed with the seed"
    );
}

#[test]
fn sampler_matches_reference_mixed_settings() {
    let mut rng = rng(43);
    for v in [5, 1001, REAL_VOCAB] {
        let b = 12;
        let mut logits = uniform_vec(&mut rng, b * v, 6.0);
        // Row 2 (top-k 3) has its max 40 times, so ties at the k-th value
        // must go to the lowest ids.
        for l in &mut logits[2 * v..2 * v + v.min(40)] {
            *l = 7.0;
        }
        let params: Vec<SampleParams> = (0..b)
            .map(|r| {
                let temperature = [0.0, 0.3, 1.0, 1.7][r % 4];
                let top_k = [0, 1, 3, 40, 100_000][r % 5];
                let top_p = [1.0, 0.9, 0.5, 0.0][(r / 3) % 4];
                SampleParams::new(temperature, top_k, top_p, rng.random(), rng.random())
            })
            .collect();
        let (tokens, logprobs) = sample_on_gpu(&logits, &params, v);
        let (expected_tokens, expected_logprobs) = sample_reference(&logits, &params, v);
        assert_eq!(tokens, expected_tokens, "V {v}, params {params:?}");
        assert_close(
            &format!("logprobs V {v}"),
            &logprobs,
            &expected_logprobs,
            1e-5,
            1e-5,
        );
    }
}

/// Draws 4000 tokens from 8 logits at temperature 0.7 and compares the counts
/// with softmax(logits / 0.7) by Pearson's chi-square test.
#[test]
fn temperature_draws_follow_softmax() {
    let v = 8;
    let draws = 4000;
    let temperature = 0.7;
    let row = [0.1f32, -1.0, 0.8, 0.0, -0.4, 1.2, -2.0, 0.5];
    let logits: Vec<f32> = (0..draws).flat_map(|_| row).collect();
    let params: Vec<SampleParams> = (0..draws)
        .map(|step| SampleParams::new(temperature, 0, 1.0, 5, step as u32))
        .collect();
    let (tokens, _) = sample_on_gpu(&logits, &params, v);

    let weights: Vec<f64> = row
        .iter()
        .map(|&l| (f64::from(l) / f64::from(temperature)).exp())
        .collect();
    let total: f64 = weights.iter().sum();
    let counts = histogram(&tokens, v);
    let chi_square: f64 = counts
        .iter()
        .zip(&weights)
        .map(|(&observed, &w)| {
            let expected = w / total * draws as f64;
            (observed as f64 - expected).powi(2) / expected
        })
        .sum();
    // 24.32 is the 0.999 quantile of chi-square with 7 degrees of freedom.
    assert!(
        chi_square < 24.32,
        "chi-square {chi_square:.2} for counts {counts:?}"
    );
}

#[test]
fn top_p_keeps_smallest_set_reaching_p() {
    // Probabilities 0.5, 0.25, 0.15, 0.1 at temperature 1, ids shuffled.
    let probs = [0.15f64, 0.5, 0.1, 0.25];
    let row: Vec<f32> = probs.iter().map(|p| p.ln() as f32).collect();
    let draws = 400;
    // (top_p, expected kept ids): 0.7 needs 0.5 + 0.25, 0.8 adds 0.15.
    for (top_p, expected) in [(0.4, vec![1]), (0.7, vec![1, 3]), (0.8, vec![0, 1, 3])] {
        let logits: Vec<f32> = (0..draws).flat_map(|_| row.clone()).collect();
        let params: Vec<SampleParams> = (0..draws)
            .map(|step| SampleParams::new(1.0, 0, top_p, 11, step as u32))
            .collect();
        let (tokens, _) = sample_on_gpu(&logits, &params, probs.len());
        let seen: HashSet<u32> = tokens.iter().copied().collect();
        let mut seen: Vec<u32> = seen.into_iter().collect();
        seen.sort_unstable();
        assert_eq!(seen, expected, "top_p {top_p}");
    }
}

#[test]
fn top_k_draws_only_k_largest() {
    let mut rng = rng(44);
    let v = 1000;
    let draws = 300;
    let row = uniform_vec(&mut rng, v, 1.0);
    let mut order: Vec<usize> = (0..v).collect();
    order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
    let top3: HashSet<u32> = order[..3].iter().map(|&i| i as u32).collect();

    let logits: Vec<f32> = (0..draws).flat_map(|_| row.clone()).collect();
    let params: Vec<SampleParams> = (0..draws)
        .map(|step| SampleParams::new(2.0, 3, 1.0, 3, step as u32))
        .collect();
    let (tokens, _) = sample_on_gpu(&logits, &params, v);
    let seen: HashSet<u32> = tokens.iter().copied().collect();
    assert_eq!(seen, top3);
}

#[test]
fn logprob_of_drawn_token_uses_raw_logits() {
    let mut rng = rng(45);
    let (b, v) = (8, 333);
    let logits = uniform_vec(&mut rng, b * v, 4.0);
    let params: Vec<SampleParams> = (0..b)
        .map(|r| SampleParams::new(0.5, 20, 0.8, 17, r as u32))
        .collect();
    let (tokens, logprobs) = sample_on_gpu(&logits, &params, v);
    let expected = token_logprob_reference(&logits, &tokens, v);
    assert_close("drawn-token logprobs", &logprobs, &expected, 1e-5, 1e-5);
}

/// Runs [`TokenLogprob`] on the GPU.
fn token_logprob_on_gpu(logits: &[f32], targets: &[u32], v: usize) -> Vec<f32> {
    let gpu = gpu();
    let op = TokenLogprob::new(gpu).unwrap();
    let m = targets.len();
    let logits_buf = gpu.buffer_from("logits", logits);
    let targets_buf = gpu.buffer_from("targets", targets);
    let out_buf = gpu.buffer_zeroed("out", (m * 4) as u64);
    run(|enc| {
        op.encode(
            gpu,
            enc,
            &logits_buf,
            &targets_buf,
            &out_buf,
            m as u32,
            v as u32,
        )
    });
    read_f32(&out_buf, m)
}

#[test]
fn token_logprob_matches_reference() {
    let mut rng = rng(46);
    for (m, v) in [(1, 1), (3, 7), (5, 255), (9, 1001), (2, REAL_VOCAB)] {
        let logits = uniform_vec(&mut rng, m * v, 8.0);
        let targets: Vec<u32> = (0..m).map(|_| rng.random_range(0..v as u32)).collect();
        let actual = token_logprob_on_gpu(&logits, &targets, v);
        let expected = token_logprob_reference(&logits, &targets, v);
        assert_close(
            &format!("token_logprob m={m} v={v}"),
            &actual,
            &expected,
            1e-5,
            1e-5,
        );
    }
}

#[test]
fn token_logprob_stable_for_large_logits() {
    let mut rng = rng(47);
    let (m, v) = (4, 5000);
    let mut logits = uniform_vec(&mut rng, m * v, 1.0);
    for (i, l) in logits.iter_mut().enumerate() {
        let id = i % v;
        if id % 97 == 0 {
            *l = 1e4;
        } else if id % 89 == 0 {
            *l = -1e4;
        }
    }
    // Row 3 targets a -1e4 logit, whose log-probability is about -2e4.
    let targets = [0u32, 1, 97 * 3, 89];
    let actual = token_logprob_on_gpu(&logits, &targets, v);
    let expected = token_logprob_reference(&logits, &targets, v);
    assert!(
        actual.iter().all(|l| l.is_finite()),
        "non-finite log-probability: {actual:?}"
    );
    assert_close(
        "token_logprob with +-1e4 logits",
        &actual,
        &expected,
        1e-3,
        1e-5,
    );
}

/// Returns columns `range` of `logits` f32 `[m, v]` as a contiguous
/// `[m, range.len()]` matrix.
fn columns(logits: &[f32], v: usize, range: std::ops::Range<usize>) -> Vec<f32> {
    logits
        .chunks(v)
        .flat_map(|row| &row[range.clone()])
        .copied()
        .collect()
}

/// Column chunks of uneven widths, one of them a single column.
const CHUNKS: [std::ops::Range<usize>; 3] = [0..300, 300..301, 301..1001];

/// Runs [`TokenLogprobChunk`] over [`CHUNKS`] and, when `d_logprob` is
/// given, [`TokenLogprobBackward`] per chunk. Returns `(logprobs, d_logits)`.
fn chunked_on_gpu(
    logits: &[f32],
    targets: &[u32],
    d_logprob: Option<&[f32]>,
    v: usize,
) -> (Vec<f32>, Vec<f32>) {
    let gpu = gpu();
    let forward = TokenLogprobChunk::new(gpu).unwrap();
    let backward = TokenLogprobBackward::new(gpu).unwrap();
    let m = targets.len();
    let targets_buf = gpu.buffer_from("targets", targets);
    let state_buf = gpu.buffer_zeroed("state", (m * 3 * 4) as u64);
    let out_buf = gpu.buffer_zeroed("out", (m * 4) as u64);
    let chunk_bufs: Vec<wgpu::Buffer> = CHUNKS
        .iter()
        .map(|range| gpu.buffer_from("logits chunk", &columns(logits, v, range.clone())))
        .collect();
    for (range, chunk_buf) in CHUNKS.iter().zip(&chunk_bufs) {
        let (width, offset) = (range.len() as u32, range.start as u32);
        run(|enc| {
            forward.encode(
                gpu,
                enc,
                chunk_buf,
                &targets_buf,
                &state_buf,
                &out_buf,
                m as u32,
                width,
                offset,
                range.start == 0,
            )
        });
    }
    let logprobs = read_f32(&out_buf, m);

    let mut d_logits = vec![0.0; m * v];
    if let Some(d_logprob) = d_logprob {
        let d_logprob_buf = gpu.buffer_from("d_logprob", d_logprob);
        for (range, chunk_buf) in CHUNKS.iter().zip(&chunk_bufs) {
            let width = range.len();
            let d_chunk_buf = gpu.buffer_zeroed("d_logits chunk", (m * width * 4) as u64);
            run(|enc| {
                backward.encode(
                    gpu,
                    enc,
                    chunk_buf,
                    &targets_buf,
                    &state_buf,
                    &d_logprob_buf,
                    &d_chunk_buf,
                    m as u32,
                    width as u32,
                    range.start as u32,
                )
            });
            let d_chunk = read_f32(&d_chunk_buf, m * width);
            for r in 0..m {
                d_logits[r * v + range.start..r * v + range.end]
                    .copy_from_slice(&d_chunk[r * width..(r + 1) * width]);
            }
        }
    }
    (logprobs, d_logits)
}

#[test]
fn chunked_logprob_matches_full_vocabulary() {
    let mut rng = rng(48);
    let (m, v) = (6, 1001);
    let mut logits = uniform_vec(&mut rng, m * v, 8.0);
    // Row 5 has +-1e4 logits in different chunks.
    logits[5 * v + 10] = 1e4;
    logits[5 * v + 700] = -1e4;
    // Targets in the first, the single-column and the last chunk.
    let targets = [0u32, 299, 300, 301, 1000, 700];
    let (actual, _) = chunked_on_gpu(&logits, &targets, None, v);
    let expected = token_logprob_reference(&logits, &targets, v);
    assert!(
        actual.iter().all(|l| l.is_finite()),
        "non-finite: {actual:?}"
    );
    assert_close("chunked token_logprob", &actual, &expected, 1e-4, 1e-5);
}

#[test]
fn token_logprob_backward_matches_reference() {
    let mut rng = rng(49);
    let (m, v) = (4, 1001);
    let logits = uniform_vec(&mut rng, m * v, 5.0);
    let targets = [7u32, 300, 999, 450];
    let d_logprob = uniform_vec(&mut rng, m, 1.0);
    let (_, actual) = chunked_on_gpu(&logits, &targets, Some(&d_logprob), v);
    let expected = token_logprob_backward_reference(&logits, &targets, &d_logprob, v);
    assert_close("d_logits", &actual, &expected, 1e-6, 1e-4);
}

/// Checks `token_logprob_backward_reference` against central finite
/// differences of `loss = sum_r d_logprob[r] * logprob[r]`.
#[test]
fn token_logprob_backward_matches_finite_differences() {
    let mut rng = rng(50);
    let (m, v) = (2, 7);
    let logits = uniform_vec(&mut rng, m * v, 3.0);
    let targets = [2u32, 6];
    let d_logprob = [0.7f32, -1.3];
    let loss = |logits: &[f32]| -> f64 {
        let logprobs = token_logprob_reference(logits, &targets, v);
        logprobs
            .iter()
            .zip(&d_logprob)
            .map(|(&l, &g)| f64::from(l) * f64::from(g))
            .sum()
    };
    let analytic = token_logprob_backward_reference(&logits, &targets, &d_logprob, v);
    for i in 0..m * v {
        let mut plus = logits.clone();
        plus[i] += 1e-2;
        let mut minus = logits.clone();
        minus[i] -= 1e-2;
        let numeric = (loss(&plus) - loss(&minus)) / f64::from(plus[i] - minus[i]);
        assert_close(
            &format!("d_logits[{i}]"),
            &[analytic[i]],
            &[numeric as f32],
            1e-4,
            1e-3,
        );
    }
}

/// Prints sampler and log-probability timings at the real vocabulary size.
#[test]
#[ignore = "benchmark: prints timings, takes seconds on lavapipe"]
fn sampling_throughput() {
    let gpu = gpu();
    let sampler = Sampler::new(gpu).unwrap();
    let logprob = TokenLogprob::new(gpu).unwrap();
    let mut rng = rng(81);
    let b = 16;
    let v = REAL_VOCAB;
    let logits_buf = gpu.buffer_from("logits", &uniform_vec(&mut rng, b * v, 8.0));
    let tokens_buf = gpu.buffer_zeroed("tokens", (b * 4) as u64);
    let logprobs_buf = gpu.buffer_zeroed("logprobs", (b * 4) as u64);
    let settings = [
        ("greedy", SampleParams::greedy()),
        ("temperature 1", SampleParams::new(1.0, 0, 1.0, 1, 0)),
        ("top-k 50", SampleParams::new(0.8, 50, 1.0, 1, 0)),
        ("top-k 50 top-p 0.9", SampleParams::new(0.8, 50, 0.9, 1, 0)),
        ("top-p 0.9", SampleParams::new(0.8, 0, 0.9, 1, 0)),
    ];
    for (name, params) in settings {
        let params_buf = gpu.buffer_from("params", &vec![params; b]);
        let elapsed = time_gpu(3, |enc| {
            sampler.encode(
                gpu,
                enc,
                &logits_buf,
                &params_buf,
                &tokens_buf,
                &logprobs_buf,
                b as u32,
                v as u32,
            )
        });
        println!("sample {b} rows x {v}, {name}: {elapsed:?}");
    }

    let m = 256;
    let logits_buf = gpu.buffer_from("logits", &uniform_vec(&mut rng, m * v, 8.0));
    let targets_buf = gpu.buffer_from("targets", &vec![5u32; m]);
    let out_buf = gpu.buffer_zeroed("out", (m * 4) as u64);
    let elapsed = time_gpu(3, |enc| {
        logprob.encode(
            gpu,
            enc,
            &logits_buf,
            &targets_buf,
            &out_buf,
            m as u32,
            v as u32,
        )
    });
    println!("token_logprob {m} rows x {v}: {elapsed:?}");
}
