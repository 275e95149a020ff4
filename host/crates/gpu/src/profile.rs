//! Per-kernel GPU time, for finding what a forward pass or a training step
//! spends its time on.
//!
//! With `LASER_HOST_PROFILE=1` on an adapter with timestamp queries
//! (lavapipe has them), every compute pass records its start and end. The
//! host collects the times whenever it waits for the GPU, and prints a
//! table of total time per kernel to stderr when the last handle to the
//! device is dropped.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Passes one query set covers: two timestamps each.
const PASSES_PER_SET: u32 = wgpu::QUERY_SET_MAX_QUERIES / 2;

/// Timestamps of recorded passes and the totals collected so far.
pub(crate) struct Profiler {
    /// Nanoseconds per timestamp tick.
    period_ns: f64,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Query sets in order; pass i writes set i / PASSES_PER_SET.
    sets: Vec<wgpu::QuerySet>,
    /// The kernel name of each pass recorded since the last collection.
    pending: Vec<String>,
    /// Per kernel name: passes and total seconds.
    totals: BTreeMap<String, (u64, f64)>,
}

impl Profiler {
    pub(crate) fn new(queue: &wgpu::Queue) -> Self {
        Self {
            period_ns: f64::from(queue.get_timestamp_period()),
            state: Mutex::new(State::default()),
        }
    }

    /// Reserves the timestamps of one pass of the kernel named by the first
    /// word of `label`, and returns the query set with the pass's index in
    /// it.
    pub(crate) fn next_pass(&self, device: &wgpu::Device, label: &str) -> (wgpu::QuerySet, u32) {
        let mut state = self.state.lock().unwrap_or_else(|err| err.into_inner());
        let pass = state.pending.len() as u32;
        let set = (pass / PASSES_PER_SET) as usize;
        if set == state.sets.len() {
            state
                .sets
                .push(device.create_query_set(&wgpu::QuerySetDescriptor {
                    label: Some("profile timestamps"),
                    ty: wgpu::QueryType::Timestamp,
                    count: wgpu::QUERY_SET_MAX_QUERIES,
                }));
        }
        let kernel = label.split_whitespace().next().unwrap_or(label);
        state.pending.push(kernel.to_owned());
        (state.sets[set].clone(), pass % PASSES_PER_SET)
    }

    /// Reads back the timestamps of the passes recorded so far and adds
    /// them to the totals. Call only after the GPU has finished them.
    ///
    /// NOTE: a pass recorded but not yet submitted when this runs reads as
    /// no time, and its query slot may be reused, so profile commands that
    /// submit what they record before waiting (all of the engine's do).
    pub(crate) fn collect(&self, device: &wgpu::Device, queue: &wgpu::Queue) {
        let mut state = self.state.lock().unwrap_or_else(|err| err.into_inner());
        if state.pending.is_empty() {
            return;
        }
        let passes = state.pending.len() as u32;

        let bytes = u64::from(2 * passes) * u64::from(wgpu::QUERY_SIZE);
        let resolved = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("profile resolve"),
            size: bytes,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let staging = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("profile readback"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });

        let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("profile resolve"),
        });
        for (i, set) in state.sets.iter().enumerate() {
            let first = i as u32 * PASSES_PER_SET;
            if first >= passes {
                break;
            }
            let count = (passes - first).min(PASSES_PER_SET);
            let offset = u64::from(2 * first) * u64::from(wgpu::QUERY_SIZE);
            encoder.resolve_query_set(set, 0..2 * count, &resolved, offset);
        }
        encoder.copy_buffer_to_buffer(&resolved, 0, &staging, 0, bytes);
        queue.submit([encoder.finish()]);

        let slice = staging.slice(..);
        slice.map_async(wgpu::MapMode::Read, |_| {});
        if device.poll(wgpu::PollType::wait_indefinitely()).is_err() {
            return;
        }
        let Ok(data) = slice.get_mapped_range() else {
            return;
        };
        let ticks: Vec<u64> = bytemuck::pod_collect_to_vec(&data);
        drop(data);
        staging.unmap();

        let pending = std::mem::take(&mut state.pending);
        for (kernel, pair) in pending.into_iter().zip(ticks.chunks_exact(2)) {
            let seconds = pair[1].saturating_sub(pair[0]) as f64 * self.period_ns * 1e-9;
            let total = state.totals.entry(kernel).or_default();
            total.0 += 1;
            total.1 += seconds;
        }
    }

    /// Returns the totals as a table, the slowest kernel first.
    pub(crate) fn report(&self) -> String {
        let state = self.state.lock().unwrap_or_else(|err| err.into_inner());
        let mut rows: Vec<_> = state.totals.iter().collect();
        rows.sort_by(|a, b| b.1.1.total_cmp(&a.1.1));
        let all: f64 = rows.iter().map(|(_, (_, seconds))| seconds).sum();
        let mut out = format!(
            "GPU time per kernel ({all:.3} s in all)\n{:<32} {:>8} {:>10} {:>10} {:>6}\n",
            "kernel", "passes", "total s", "mean us", "share"
        );
        for (kernel, (passes, seconds)) in rows {
            let mean_us = seconds / *passes as f64 * 1e6;
            let share = 100.0 * seconds / all.max(f64::MIN_POSITIVE);
            out.push_str(&format!(
                "{kernel:<32} {passes:>8} {seconds:>10.3} {mean_us:>10.1} {share:>5.1}%\n"
            ));
        }
        out
    }
}

impl Drop for Profiler {
    fn drop(&mut self) {
        eprint!("{}", self.report());
    }
}
