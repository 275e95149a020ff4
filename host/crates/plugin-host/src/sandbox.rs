//! The per-plugin store state: WASI with nothing granted, captured output,
//! the memory cap, the call clock behind deadlines, and the `models`
//! import.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::bindings::v0_1_0::reward_model::laser::plugin::models;
use crate::error::escape_controls;
use crate::manifest::Manifest;
use crate::{Continuation, ModelService};

/// Maximum bytes of stdout and stderr kept per call. Output past it is
/// counted and dropped, never an error, so a chatty plugin keeps working.
pub const MAX_CAPTURED_OUTPUT: usize = 64 << 10;

/// State of one plugin's store.
pub(crate) struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
    memory_limit: usize,
    /// Size of the largest memory growth the cap rejected since the last
    /// call started, in bytes.
    pub(crate) memory_denied: Option<usize>,
    pub(crate) output: CapturedOutput,
    models: Arc<dyn ModelService>,
    allowed_models: Vec<String>,
    /// The time the `models` functions may take during one call.
    model_time: Duration,
    pub(crate) clock: CallClock,
}

impl HostState {
    /// Creates the state for a plugin with `manifest`'s limits and models.
    pub(crate) fn new(manifest: &Manifest, models: Arc<dyn ModelService>) -> HostState {
        let output = CapturedOutput::default();
        let memory_limit = usize::try_from(manifest.limits.memory_mib << 20).unwrap_or(usize::MAX);

        // Nothing is granted: no preopened directories, no environment
        // variables, no arguments, no network, no inherited stdio. Reads of
        // stdin see end of file.
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(output.clone())
            .stderr(output.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }));

        HostState {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new().memory_size(memory_limit).build(),
            memory_limit,
            memory_denied: None,
            output,
            models,
            allowed_models: manifest.models.clone(),
            model_time: Duration::from_millis(manifest.limits.model_time_ms),
            clock: CallClock::new(Duration::from_millis(manifest.limits.call_deadline_ms)),
        }
    }

    /// Checks that the manifest lists `model`, then runs `call` on the
    /// model service with its time kept off the plugin's deadline.
    fn serve<R>(
        &mut self,
        model: &str,
        call: impl FnOnce(&dyn ModelService) -> anyhow::Result<R>,
    ) -> Result<R, String> {
        if !self.allowed_models.iter().any(|name| name == model) {
            return Err(format!(
                "model {model:?} is not in the plugin manifest's `models` \
                 list {:?}",
                self.allowed_models
            ));
        }
        // A model request cannot be stopped part way, so the limit is
        // checked around each call: one call may overrun it, but a plugin
        // that keeps asking cannot hold the run for ever.
        self.check_model_time()?;
        let started = Instant::now();
        let result = call(self.models.as_ref());
        self.clock.in_host += started.elapsed();
        self.check_model_time()?;
        result.map_err(|e| format!("model {model:?}: {e:#}"))
    }

    /// Returns an error once the host's models have taken longer than
    /// `limits.model_time_ms` during this call.
    fn check_model_time(&self) -> Result<(), String> {
        if self.clock.in_host <= self.model_time {
            return Ok(());
        }
        Err(format!(
            "the host's models took {:.1} s during this call, past the plugin's \
             limit of {} ms (`limits.model_time_ms`): ask the models for less work \
             per call, or raise the limit in the manifest",
            self.clock.in_host.as_secs_f64(),
            self.model_time.as_millis()
        ))
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl ResourceLimiter for HostState {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        if !allowed {
            tracing::debug!(
                desired,
                limit = self.memory_limit,
                "plugin memory growth rejected"
            );
            self.memory_denied = Some(desired);
        }
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }
}

/// Wall-clock accounting of one call, for the epoch deadline callback.
#[derive(Debug)]
pub(crate) struct CallClock {
    /// Maximum time the plugin may compute in one call.
    pub(crate) deadline: Duration,
    started: Instant,
    /// Time spent in the `models` import during this call.
    in_host: Duration,
}

impl CallClock {
    fn new(deadline: Duration) -> CallClock {
        CallClock {
            deadline,
            started: Instant::now(),
            in_host: Duration::ZERO,
        }
    }

    /// Starts timing a new call.
    pub(crate) fn start(&mut self) {
        self.started = Instant::now();
        self.in_host = Duration::ZERO;
    }

    /// Returns the time the plugin may still compute in this call, or
    /// `None` once the deadline has passed.
    pub(crate) fn remaining(&self) -> Option<Duration> {
        let computed = self.started.elapsed().saturating_sub(self.in_host);
        self.deadline.checked_sub(computed).filter(|d| !d.is_zero())
    }
}

/// Stdout and stderr of a plugin, shared by both streams and capped at
/// [`MAX_CAPTURED_OUTPUT`] bytes per call.
#[derive(Debug, Clone, Default)]
pub(crate) struct CapturedOutput {
    inner: Arc<Mutex<OutputBuffer>>,
}

#[derive(Debug, Default)]
struct OutputBuffer {
    bytes: Vec<u8>,
    dropped: usize,
}

impl CapturedOutput {
    /// Returns what the plugin wrote since the last call to `take`, as
    /// lossy UTF-8 with control characters escaped and a note of any bytes
    /// dropped, and empties the buffer.
    pub(crate) fn take(&self) -> String {
        let mut buffer = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut text = escape_controls(&String::from_utf8_lossy(&buffer.bytes));
        if buffer.dropped > 0 {
            text.push_str(&format!(
                "\n[{} more bytes of output dropped]",
                buffer.dropped
            ));
        }
        buffer.bytes.clear();
        buffer.dropped = 0;
        text
    }

    fn append(&self, bytes: &[u8]) {
        let mut buffer = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let room = MAX_CAPTURED_OUTPUT.saturating_sub(buffer.bytes.len());
        let kept = bytes.len().min(room);
        buffer.bytes.extend_from_slice(&bytes[..kept]);
        buffer.dropped += bytes.len() - kept;
    }
}

impl IsTerminal for CapturedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CapturedOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for CapturedOutput {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        // Always ready: output past the cap is dropped, not blocked.
        Ok(MAX_CAPTURED_OUTPUT)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CapturedOutput {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for CapturedOutput {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.append(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

impl models::Host for HostState {
    fn logprobs(
        &mut self,
        model: String,
        requests: Vec<Continuation>,
    ) -> Result<Vec<Vec<f32>>, String> {
        let result = self.serve(&model, |s| s.logprobs(&model, &requests))?;
        check_len("logprobs", &model, requests.len(), result.len())?;
        Ok(result)
    }

    fn generate(
        &mut self,
        model: String,
        prompts: Vec<String>,
        max_tokens: u32,
        temperature: f32,
    ) -> Result<Vec<String>, String> {
        let result = self.serve(&model, |s| {
            s.generate(&model, &prompts, max_tokens, temperature)
        })?;
        check_len("generate", &model, prompts.len(), result.len())?;
        Ok(result)
    }

    fn hidden_states(
        &mut self,
        model: String,
        texts: Vec<String>,
    ) -> Result<Vec<Vec<f32>>, String> {
        let result = self.serve(&model, |s| s.hidden_states(&model, &texts))?;
        check_len("hidden-states", &model, texts.len(), result.len())?;
        Ok(result)
    }

    fn apply_chat_template(&mut self, model: String, user: String) -> Result<String, String> {
        self.serve(&model, |s| s.apply_chat_template(&model, &user))
    }
}

impl crate::bindings::v0_1_0::reward_model::laser::plugin::types::Host for HostState {}

/// Checks that the model service returned one result per batch item.
fn check_len(function: &str, model: &str, expected: usize, found: usize) -> Result<(), String> {
    if expected == found {
        Ok(())
    } else {
        Err(format!(
            "model {model:?}: {function} returned {found} results for a \
             batch of {expected}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captured_output_capped_per_call() {
        let output = CapturedOutput::default();
        output.append(&vec![b'x'; MAX_CAPTURED_OUTPUT - 1]);
        output.append(b"yz");

        let text = output.take();
        assert!(text.starts_with("xxx"));
        assert!(text.contains("xy\n"), "the last byte kept is `y`");
        assert!(
            text.ends_with("[1 more bytes of output dropped]"),
            "{}",
            &text[text.len() - 40..]
        );
        assert_eq!(output.take(), "", "take empties the buffer");
    }

    #[test]
    fn call_clock_excludes_host_time() {
        let mut clock = CallClock::new(Duration::from_millis(50));
        clock.start();
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(clock.remaining(), None);

        clock.start();
        clock.in_host = Duration::from_secs(10);
        std::thread::sleep(Duration::from_millis(60));
        assert!(clock.remaining().is_some());
    }
}
