//! The wgpu device: adapter selection, limits, and the small set of buffer
//! and dispatch helpers every kernel uses.
//!
//! Adapter selection honours `WGPU_BACKEND` (for example `vulkan`, `metal`,
//! `dx12`) and `WGPU_ADAPTER_NAME` (a case-insensitive substring of the
//! adapter's name). The device is requested with the adapter's own limits,
//! not wgpu's portable defaults, because model weights need large storage
//! bindings.
//!
//! `LASER_HOST_KERNELS` picks the kernels. `auto`, the default, runs the
//! CPU-tuned `*_lanes` kernels on a CPU adapter with 8-lane subgroups and
//! the GPU kernels elsewhere. `gpu` runs the GPU kernels on every adapter,
//! and `gpu-no-subgroups` also leaves out subgroup operations, as on a GPU
//! without them. These two let a machine without a GPU test what a GPU
//! runs.

use std::sync::Arc;

use anyhow::{Context, Result, bail, ensure};
use wgpu::util::DeviceExt;

use crate::loops::loops_end;
use crate::profile::Profiler;

/// The WGSL prelude prepended to every kernel: shared unpack helpers.
const PRELUDE: &str = include_str!("../../../../shaders/prelude.wgsl");

/// The kernel choice of `LASER_HOST_KERNELS` (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernels {
    /// CPU-tuned kernels on a CPU adapter that suits them, GPU kernels elsewhere.
    Auto,
    /// The GPU kernels on every adapter.
    Gpu,
    /// The GPU kernels without subgroup operations.
    GpuNoSubgroups,
}

impl Kernels {
    /// Reads `LASER_HOST_KERNELS`. Unset or empty means [`Kernels::Auto`].
    ///
    /// # Errors
    ///
    /// Fails on any other value, naming the valid ones.
    pub fn from_env() -> Result<Self> {
        Self::parse(&std::env::var_os("LASER_HOST_KERNELS").unwrap_or_default())
    }

    /// Parses a value of `LASER_HOST_KERNELS`. Empty means [`Kernels::Auto`].
    ///
    /// # Errors
    ///
    /// Fails on an unknown value, naming the valid ones.
    pub fn parse(value: &std::ffi::OsStr) -> Result<Self> {
        match value.to_str() {
            Some("" | "auto") => Ok(Kernels::Auto),
            Some("gpu") => Ok(Kernels::Gpu),
            Some("gpu-no-subgroups") => Ok(Kernels::GpuNoSubgroups),
            _ => bail!(
                "invalid LASER_HOST_KERNELS={value:?}: use `auto` (the \
                 default), `gpu` (the GPU kernels on every adapter) or `gpu-no-subgroups` \
                 (the GPU kernels without subgroup operations)"
            ),
        }
    }

    /// Returns the value of `LASER_HOST_KERNELS` that selects this choice.
    pub fn name(self) -> &'static str {
        match self {
            Kernels::Auto => "auto",
            Kernels::Gpu => "gpu",
            Kernels::GpuNoSubgroups => "gpu-no-subgroups",
        }
    }
}

/// The largest storage binding the host makes on any backend: 2 GiB less
/// 256 bytes. wgpu keeps Vulkan and DX12 bindings under 2 GiB, but on Metal
/// it allows bindings past 4 GiB while handing their sizes to the shaders
/// as 32-bit values, and the kernels index elements with 32-bit integers.
pub const MAX_BINDING_BYTES: u64 = (1 << 31) - 256;

/// An opened GPU: device, queue and what was chosen.
#[derive(Clone)]
pub struct Gpu {
    pub device: Arc<wgpu::Device>,
    pub queue: Arc<wgpu::Queue>,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    pub features: wgpu::Features,
    /// The kernel choice read from `LASER_HOST_KERNELS`.
    pub kernels: Kernels,
    /// Per-kernel timing, when `LASER_HOST_PROFILE` is set and the adapter
    /// has timestamp queries.
    pub(crate) profiler: Option<Arc<Profiler>>,
}

impl Gpu {
    /// Opens the adapter picked by `WGPU_BACKEND` and `WGPU_ADAPTER_NAME`,
    /// or the highest-performance adapter when neither is set.
    ///
    /// # Errors
    ///
    /// Fails when no adapter matches or the device request is rejected. The
    /// message names what to install.
    pub fn new() -> Result<Self> {
        pollster::block_on(Self::open())
    }

    async fn open() -> Result<Self> {
        let kernels = Kernels::from_env()?;
        let backend_choice = std::env::var("WGPU_BACKEND")
            .ok()
            .filter(|value| !value.trim().is_empty());
        let backends = match &backend_choice {
            Some(value) => parse_backends(value)?,
            None => wgpu::Backends::PRIMARY,
        };
        let mut descriptor = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
        descriptor.backends = backends;
        let instance = wgpu::Instance::new(descriptor);
        let adapter = match std::env::var("WGPU_ADAPTER_NAME") {
            Ok(wanted) => {
                let wanted_lower = wanted.to_lowercase();
                let adapters = instance.enumerate_adapters(backends).await;
                let names: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
                adapters
                    .into_iter()
                    .find(|a| a.get_info().name.to_lowercase().contains(&wanted_lower))
                    .with_context(|| {
                        format!(
                            "no GPU adapter matches WGPU_ADAPTER_NAME={wanted:?}; \
                             available: {names:?}"
                        )
                    })?
            }
            Err(_) => instance
                .request_adapter(&wgpu::RequestAdapterOptions {
                    power_preference: wgpu::PowerPreference::HighPerformance,
                    ..Default::default()
                })
                .await
                .map_err(|err| match &backend_choice {
                    Some(value) => anyhow::anyhow!(
                        "no GPU adapter found for WGPU_BACKEND={value:?} ({err}); unset \
                         WGPU_BACKEND to try every backend, or install that backend's driver"
                    ),
                    None => anyhow::anyhow!(
                        "no GPU adapter found ({err}); install your GPU's Vulkan, \
                         Metal or DX12 driver, or on Linux without a GPU install \
                         the CPU fallback with `apt-get install mesa-vulkan-drivers`"
                    ),
                })?,
        };
        let info = adapter.get_info();
        let limits = adapter.limits();
        // Subgroup operations speed up reductions where present; every kernel
        // also works without them.
        let mut features = adapter.features() & wgpu::Features::SUBGROUP;
        if kernels == Kernels::GpuNoSubgroups {
            features = wgpu::Features::empty();
        }
        let profile = parse_switch(
            "LASER_HOST_PROFILE",
            &std::env::var_os("LASER_HOST_PROFILE").unwrap_or_default(),
        )?;
        let timestamps = adapter.features().contains(wgpu::Features::TIMESTAMP_QUERY);
        if profile && !timestamps {
            tracing::warn!("LASER_HOST_PROFILE is set, but this adapter has no timestamp queries");
        }
        if profile && timestamps {
            features |= wgpu::Features::TIMESTAMP_QUERY;
        }
        tracing::debug!(
            adapter = %info.name,
            backend = ?info.backend,
            max_storage_buffer_binding_size = limits.max_storage_buffer_binding_size,
            max_buffer_size = limits.max_buffer_size,
            "opening GPU adapter"
        );
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("laser-host"),
                required_features: features,
                required_limits: limits.clone(),
                experimental_features: wgpu::ExperimentalFeatures::disabled(),
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await
            .with_context(|| format!("failed to open GPU device on adapter {:?}", info.name))?;
        let profiler = features
            .contains(wgpu::Features::TIMESTAMP_QUERY)
            .then(|| Arc::new(Profiler::new(&queue)));
        Ok(Self {
            device: Arc::new(device),
            queue: Arc::new(queue),
            info,
            limits,
            features,
            kernels,
            profiler,
        })
    }

    /// Returns a one-line description: adapter name, backend and device type.
    pub fn describe(&self) -> String {
        format!(
            "{} ({:?}, {:?}, driver {} {})",
            self.info.name,
            self.info.backend,
            self.info.device_type,
            self.info.driver,
            self.info.driver_info
        )
    }

    /// Returns which kernels run, for logs and benchmark reports, such as
    /// "GPU kernels, with subgroup operations (LASER_HOST_KERNELS=gpu)".
    pub fn describe_kernels(&self) -> String {
        let family = if self.has_cpu_lanes() {
            "CPU-tuned lane kernels"
        } else {
            "GPU kernels"
        };
        let subgroups = if self.features.contains(wgpu::Features::SUBGROUP) {
            "with"
        } else {
            "without"
        };
        format!(
            "{family}, {subgroups} subgroup operations (LASER_HOST_KERNELS={})",
            self.kernels.name()
        )
    }

    /// Returns the largest byte size of one storage binding on this device,
    /// at most [`MAX_BINDING_BYTES`].
    pub fn max_binding_bytes(&self) -> u64 {
        self.limits
            .max_storage_buffer_binding_size
            .min(self.limits.max_buffer_size)
            .min(MAX_BINDING_BYTES)
    }

    /// Returns whether the kernels run as on a CPU adapter: true on a CPU
    /// adapter unless `LASER_HOST_KERNELS` requests the GPU kernels.
    pub fn runs_as_cpu(&self) -> bool {
        self.info.device_type == wgpu::DeviceType::Cpu && self.kernels == Kernels::Auto
    }

    /// Returns whether this is a CPU adapter whose SIMD vectors are
    /// subgroups of exactly 8 lanes (lavapipe on AVX2), which the `*_lanes`
    /// kernels are written for, and `LASER_HOST_KERNELS` allows them.
    pub fn has_cpu_lanes(&self) -> bool {
        self.features.contains(wgpu::Features::SUBGROUP)
            && self.runs_as_cpu()
            && self.info.subgroup_min_size == 8
            && self.info.subgroup_max_size == 8
    }

    /// Compiles `source` (with the shared prelude prepended) into a compute
    /// pipeline whose bind group layout is inferred from the shader.
    pub fn pipeline(&self, label: &str, source: &str, entry: &str) -> wgpu::ComputePipeline {
        let code = format!("{PRELUDE}\n{source}");
        let mut checks = wgpu::ShaderRuntimeChecks::checked();
        checks.force_loop_bounding = !loops_end(&code);
        if checks.force_loop_bounding {
            tracing::debug!("kernel {label} keeps wgpu's loop bounding: a loop may not end");
        }
        let desc = wgpu::ShaderModuleDescriptor {
            label: Some(label),
            source: wgpu::ShaderSource::Wgsl(code.into()),
        };
        // SAFETY: the one check turned off is loop bounding, and only for a
        // kernel whose loops all step by a constant towards a finite bound
        // (`loops_end`), so no loop runs forever. Bounds and division
        // checks stay on.
        let module = unsafe { self.device.create_shader_module_trusted(desc, checks) };
        self.device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(label),
                layout: None,
                module: &module,
                entry_point: Some(entry),
                compilation_options: Default::default(),
                cache: None,
            })
    }

    /// Creates a storage buffer holding `data`, usable as a copy source and
    /// destination.
    pub fn buffer_from<T: bytemuck::Pod>(&self, label: &str, data: &[T]) -> wgpu::Buffer {
        let contents: &[u8] = bytemuck::cast_slice(data);
        // wgpu rejects empty buffers; keep one word so every binding is valid.
        let padded;
        let contents = if contents.is_empty() {
            padded = [0u8; 4];
            &padded[..]
        } else {
            contents
        };
        self.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents,
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
            })
    }

    /// Creates a zero-filled storage buffer of `bytes` bytes (at least 4).
    pub fn buffer_zeroed(&self, label: &str, bytes: u64) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes.max(4).next_multiple_of(4),
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// Creates a uniform buffer holding `value`.
    pub fn uniform<T: bytemuck::Pod>(&self, label: &str, value: &T) -> wgpu::Buffer {
        self.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: bytemuck::bytes_of(value),
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            })
    }

    /// Creates a bind group for group 0 of `pipeline`, binding each buffer in
    /// `buffers` at the binding number equal to its index.
    pub fn bind_group(
        &self,
        label: &str,
        pipeline: &wgpu::ComputePipeline,
        buffers: &[wgpu::BindingResource<'_>],
    ) -> wgpu::BindGroup {
        let entries: Vec<wgpu::BindGroupEntry<'_>> = buffers
            .iter()
            .enumerate()
            .map(|(i, resource)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: resource.clone(),
            })
            .collect();
        self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(label),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        })
    }

    /// Copies `bytes` bytes from the start of `buffer` back to the CPU and
    /// returns them as `T`s. Blocks until the GPU has finished.
    ///
    /// # Errors
    ///
    /// Fails when mapping the staging buffer fails (device lost).
    pub fn read<T: bytemuck::Pod>(&self, buffer: &wgpu::Buffer, bytes: u64) -> Result<Vec<T>> {
        self.read_at(buffer, 0, bytes)
    }

    /// Like [`Gpu::read`], from byte `offset` of `buffer`.
    ///
    /// # Errors
    ///
    /// Fails when mapping the staging buffer fails (device lost).
    pub fn read_at<T: bytemuck::Pod>(
        &self,
        buffer: &wgpu::Buffer,
        offset: u64,
        bytes: u64,
    ) -> Result<Vec<T>> {
        if bytes == 0 {
            return Ok(Vec::new());
        }
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("readback"),
            });
        let staging = self.staging(bytes);
        encoder.copy_buffer_to_buffer(buffer, offset, &staging, 0, bytes);
        self.queue.submit([encoder.finish()]);
        self.map_staging(&staging, bytemuck::pod_collect_to_vec)
    }

    /// Submits `encoder` with copies of the first `bytes` bytes of each
    /// buffer of `parts` appended, and returns those bytes, one `Vec` a
    /// part: one submission and one wait for a step and its results.
    /// Each size must be a multiple of 4.
    ///
    /// # Errors
    ///
    /// Fails when mapping the staging buffer fails (device lost).
    pub fn submit_and_read(
        &self,
        mut encoder: crate::Encoder,
        parts: &[(&wgpu::Buffer, u64)],
    ) -> Result<Vec<Vec<u8>>> {
        let total: u64 = parts.iter().map(|&(_, bytes)| bytes).sum();
        if total == 0 {
            self.submit(encoder);
            return Ok(vec![Vec::new(); parts.len()]);
        }
        let staging = self.staging(total);
        let mut offset = 0;
        for &(buffer, bytes) in parts {
            encoder
                .raw()
                .copy_buffer_to_buffer(buffer, 0, &staging, offset, bytes);
            offset += bytes;
        }
        self.submit(encoder);
        self.map_staging(&staging, |data| {
            let mut offset = 0;
            parts
                .iter()
                .map(|&(_, bytes)| {
                    let part = data[offset..offset + bytes as usize].to_vec();
                    offset += bytes as usize;
                    part
                })
                .collect()
        })
    }

    /// Returns a buffer of `bytes` bytes to copy results into and map.
    fn staging(&self, bytes: u64) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// Waits for the submitted work, then maps `staging` and returns what
    /// `read` makes of its bytes.
    fn map_staging<R>(&self, staging: &wgpu::Buffer, read: impl FnOnce(&[u8]) -> R) -> Result<R> {
        let slice = staging.slice(..);
        let (sender, receiver) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |result| {
            let _ = sender.send(result);
        });
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .context("GPU device lost while waiting for results")?;
        match receiver.recv() {
            Ok(Ok(())) => {}
            Ok(Err(err)) => bail!("failed to map GPU results: {err}"),
            Err(_) => bail!("failed to map GPU results: callback dropped"),
        }
        let data = slice
            .get_mapped_range()
            .map_err(|err| anyhow::anyhow!("failed to read mapped GPU results: {err}"))?;
        let out = read(&data);
        drop(data);
        staging.unmap();
        if let Some(profiler) = &self.profiler {
            profiler.collect(&self.device, &self.queue);
        }
        Ok(out)
    }

    /// Returns a new encoder whose dispatches share compute passes.
    pub fn encoder(&self, label: &str) -> crate::Encoder {
        crate::Encoder::new(self, label)
    }

    /// Submits `encoder` and returns immediately.
    pub fn submit(&self, encoder: crate::Encoder) {
        self.queue.submit([encoder.finish()]);
    }

    /// Blocks until all submitted work has finished.
    ///
    /// # Errors
    ///
    /// Fails when the device is lost.
    pub fn wait(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .context("GPU device lost")?;
        if let Some(profiler) = &self.profiler {
            profiler.collect(&self.device, &self.queue);
        }
        Ok(())
    }
}

/// Parses the on-or-off environment variable `name`: empty, `0`, `false`,
/// `no` or `off` is off, and `1`, `true`, `yes` or `on` is on.
///
/// # Errors
///
/// Fails on any other value, so that a typo does not flip the setting.
fn parse_switch(name: &str, value: &std::ffi::OsStr) -> Result<bool> {
    let lower = value.to_str().map(str::to_ascii_lowercase);
    match lower.as_deref() {
        Some("" | "0" | "false" | "no" | "off") => Ok(false),
        Some("1" | "true" | "yes" | "on") => Ok(true),
        _ => bail!("invalid {name}={value:?}: use 1 to turn it on or 0 to turn it off"),
    }
}

/// Parses `WGPU_BACKEND`: backend names separated by commas, as wgpu reads
/// them, limited to the backends this build contains.
///
/// # Errors
///
/// Fails on an unknown name or a backend this build leaves out. wgpu
/// itself would skip such a name and then report that no adapter exists.
fn parse_backends(value: &str) -> Result<wgpu::Backends> {
    let built = wgpu::Instance::enabled_backend_features();
    let names = [
        (wgpu::Backends::VULKAN, "vulkan"),
        (wgpu::Backends::METAL, "metal"),
        (wgpu::Backends::DX12, "dx12"),
        (wgpu::Backends::GL, "gl"),
    ];
    let usable: Vec<&str> = names
        .iter()
        .filter(|(backend, _)| built.contains(*backend))
        .map(|&(_, name)| name)
        .collect();
    let usable = usable.join(", ");
    let mut backends = wgpu::Backends::empty();
    for name in value.split(',').map(str::trim) {
        let backend = wgpu::Backends::from_comma_list(name);
        ensure!(
            !backend.is_empty() && !name.is_empty(),
            "invalid WGPU_BACKEND={value:?}: {name:?} is not a backend; use one of \
             {usable}, or leave WGPU_BACKEND unset to pick the best adapter"
        );
        ensure!(
            built.contains(backend),
            "invalid WGPU_BACKEND={value:?}: this build of laser-host has no {name} \
             backend on this system; use one of {usable}"
        );
        backends |= backend;
    }
    Ok(backends)
}

/// Returns the number of workgroups needed to cover `n` items, `size` at a
/// time.
pub fn groups(n: u32, size: u32) -> u32 {
    n.div_ceil(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_rounds_up() {
        assert_eq!(groups(0, 64), 0);
        assert_eq!(groups(1, 64), 1);
        assert_eq!(groups(64, 64), 1);
        assert_eq!(groups(65, 64), 2);
    }

    #[test]
    fn switches_parse_on_and_off() {
        let parse = |value: &str| parse_switch("X", std::ffi::OsStr::new(value));
        for off in ["", "0", "false", "No", "OFF"] {
            assert!(!parse(off).unwrap(), "{off:?}");
        }
        for on in ["1", "true", "Yes", "on"] {
            assert!(parse(on).unwrap(), "{on:?}");
        }
        let err = parse("2").unwrap_err().to_string();
        assert!(err.contains("invalid X=\"2\""), "{err}");
    }

    #[test]
    fn submit_and_read_returns_each_part() {
        let gpu = crate::testing::gpu();
        let tokens = gpu.buffer_from("tokens", &[7u32, 8, 9]);
        let logprobs = gpu.buffer_from("logprobs", &[-0.5f32, -1.25]);
        let encoder = gpu.encoder("test");

        let parts = gpu
            .submit_and_read(encoder, &[(&tokens, 8), (&logprobs, 8)])
            .unwrap();
        let tokens: Vec<u32> = bytemuck::pod_collect_to_vec(&parts[0]);
        let logprobs: Vec<f32> = bytemuck::pod_collect_to_vec(&parts[1]);
        assert_eq!(tokens, [7, 8]);
        assert_eq!(logprobs, [-0.5, -1.25]);
    }

    #[test]
    fn backends_parse_known_names() {
        // Vulkan is built in on Linux and Windows, not on macOS.
        if wgpu::Instance::enabled_backend_features().contains(wgpu::Backends::VULKAN) {
            assert_eq!(parse_backends("vulkan").unwrap(), wgpu::Backends::VULKAN);
            assert_eq!(
                parse_backends(" VK,vulkan").unwrap(),
                wgpu::Backends::VULKAN
            );
        }
        let err = parse_backends("vulcan").unwrap_err().to_string();
        assert!(err.contains("\"vulcan\" is not a backend"), "{err}");
        let err = parse_backends("vulkan,").unwrap_err().to_string();
        assert!(err.contains("\"\" is not a backend"), "{err}");
        let err = parse_backends("gl").unwrap_err().to_string();
        assert!(err.contains("has no gl backend"), "{err}");
    }

    #[test]
    fn kernels_parse_known_values() {
        let parse = |value: &str| Kernels::parse(std::ffi::OsStr::new(value));
        assert_eq!(parse("").unwrap(), Kernels::Auto);
        for kernels in [Kernels::Auto, Kernels::Gpu, Kernels::GpuNoSubgroups] {
            assert_eq!(parse(kernels.name()).unwrap(), kernels);
        }
        let err = parse("GPU").unwrap_err().to_string();
        assert!(
            err.contains("\"GPU\"") && err.contains("gpu-no-subgroups"),
            "{err}"
        );
    }
}
