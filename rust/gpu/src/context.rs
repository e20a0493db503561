//! The process's one device: adapter choice, limits, the queue of recorded work, errors.
//!
//! Work is recorded into one pending command encoder and submitted in batches: when a result is
//! read back, on `synchronize`, or after `BATCH` dispatches. A readback waits for the device, so
//! nothing else syncs (a synced dispatch costs milliseconds on some drivers, against microseconds
//! of recording). Uploads go through buffers mapped at creation, not `Queue::write_buffer`, whose
//! writes land before the next submit's commands: recorded work would see data written after it
//! (dispatch parameters use it, in slots that are never rewritten: see `Arena`).

use crate::error::{Error, Result};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use wgpu::util::DeviceExt;

/// Dispatches recorded before the pending encoder is submitted without being asked (bounds the
/// memory that temporaries of a long chain of ops hold).
const BATCH: usize = 64;

/// Bytes of freed buffers kept for reuse. 1 GiB was too few on an H200: a 1 GiB temporary (the dx
/// of a (65536, 4096) backward) could never be kept, so every call allocated it anew and wgpu
/// zero-filled it, 27 ms a call where the work takes 3.
const POOL_BYTES: u64 = 4 << 30;

/// The features rsnorm uses when the adapter has them; the rest are never requested.
const WANTED: wgpu::Features = wgpu::Features::SHADER_F16
    .union(wgpu::Features::SHADER_F64)
    .union(wgpu::Features::SUBGROUP)
    .union(wgpu::Features::TIMESTAMP_QUERY);

pub(crate) struct Context {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    pub(crate) features: wgpu::Features,
    pub(crate) limits: wgpu::Limits,
    /// The largest storage binding a dispatch uses (the adapter's, or less when
    /// `RSNORM_GPU_MAX_BINDING` says so: the tests exercise the split path with it).
    pub(crate) max_binding: u64,
    /// Workgroups per dispatch dimension (the adapter's, or fewer with `RSNORM_GPU_MAX_GROUPS`,
    /// for the tests of 2-D dispatch).
    pub(crate) max_groups: u32,
    pub(crate) pipelines: Mutex<HashMap<crate::pipelines::Key, crate::pipelines::Pipeline>>,
    pool: Mutex<Pool>,
    pending: Mutex<Pending>,
    arena: Mutex<Arena>,
    /// Errors wgpu reports outside an error scope (its default handler would panic).
    uncaptured: Arc<Mutex<Vec<String>>>,
    pid: u32,
}

#[derive(Default)]
struct Pending {
    encoder: Option<wgpu::CommandEncoder>,
    dispatches: usize,
}

/// Uniform parameters of dispatches, one slot each, written with `Queue::write_buffer`. That is safe
/// here because a slot is written once and never reused: the write lands before the submission
/// that holds its dispatch (or an earlier one). A full arena is replaced (wgpu keeps it alive while
/// work uses it): one buffer per `ARENA_SLOTS` dispatches instead of one per dispatch.
#[derive(Default)]
struct Arena {
    buffer: Option<wgpu::Buffer>,
    used: u64,
}

const ARENA_SLOTS: u64 = 256;

#[derive(Default)]
struct Pool {
    free: HashMap<u64, Vec<wgpu::Buffer>>,
    bytes: u64,
}

static CONTEXT: OnceLock<std::result::Result<Context, String>> = OnceLock::new();

/// The device, created on first use. `Unavailable` when there is no adapter, or in a child
/// process forked after the parent created it (its driver state is the parent's).
pub(crate) fn context() -> Result<&'static Context> {
    let ctx = CONTEXT
        .get_or_init(Context::create)
        .as_ref()
        .map_err(|msg| Error::Unavailable(msg.clone()))?;
    if ctx.pid != std::process::id() {
        return Err(Error::Unavailable(
            "the GPU was opened in the parent process before this process was forked; a forked \
             child cannot use it (start worker processes with the 'spawn' method, or open the GPU \
             only in the children)"
                .into(),
        ));
    }
    Ok(ctx)
}

/// Whether a usable adapter exists (opens it on first call).
pub fn is_available() -> bool {
    context().is_ok()
}

/// The adapter, its backend and driver, its limits and features, as text pairs.
pub fn device_info() -> Result<Vec<(String, String)>> {
    let ctx = context()?;
    let info = &ctx.info;
    let limits = &ctx.limits;
    let mut pairs = vec![
        ("name".into(), info.name.clone()),
        ("backend".into(), info.backend.to_string()),
        ("device_type".into(), format!("{:?}", info.device_type)),
        ("driver".into(), info.driver.clone()),
        ("driver_info".into(), info.driver_info.clone()),
        ("max_buffer_size".into(), limits.max_buffer_size.to_string()),
        (
            "max_storage_buffer_binding_size".into(),
            ctx.max_binding.to_string(),
        ),
        (
            "max_compute_workgroups_per_dimension".into(),
            limits.max_compute_workgroups_per_dimension.to_string(),
        ),
        (
            "max_compute_invocations_per_workgroup".into(),
            limits.max_compute_invocations_per_workgroup.to_string(),
        ),
        (
            "subgroup_size".into(),
            if ctx.features.contains(wgpu::Features::SUBGROUP) {
                format!("{}..{}", info.subgroup_min_size, info.subgroup_max_size)
            } else {
                "none".into()
            },
        ),
    ];
    let features: Vec<String> = ctx.features.iter_names().map(|(n, _)| n.into()).collect();
    pairs.push(("features".into(), features.join(" ")));
    Ok(pairs)
}

/// A limit lowered by an environment variable (the tests reach the split paths with small arrays).
fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// `RSNORM_GPU_FEATURES`, when set, lists the optional features rsnorm may use (names as wgpu
/// spells them, e.g. "SHADER_F16 SUBGROUP"; empty: none): the tests run the paths of adapters
/// without them.
fn features_from_env() -> wgpu::Features {
    let Ok(names) = std::env::var("RSNORM_GPU_FEATURES") else {
        return wgpu::Features::all();
    };
    names
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter_map(|name| wgpu::Features::from_name(name.trim()))
        .fold(wgpu::Features::empty(), |all, f| all | f)
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a lock is caught at the binding; the data behind it stays consistent
    // (an encoder is dropped whole), so the lock is reused rather than poisoning the device.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Context {
    fn create() -> std::result::Result<Context, String> {
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle().with_env();
        if std::env::var_os("WGPU_BACKEND").is_none() {
            desc.backends = wgpu::Backends::PRIMARY;
        }
        let instance = wgpu::Instance::new(desc);
        let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            ..Default::default()
        }))
        .map_err(|err| {
            format!(
                "no GPU adapter: {err} (rsnorm.gpu needs a Vulkan, Metal or DX12 driver; on Linux \
                 the Vulkan loader libvulkan.so.1 and a driver, e.g. Debian's libvulkan1 and \
                 mesa-vulkan-drivers)"
            )
        })?;
        let features = adapter.features() & WANTED & features_from_env();
        let limits = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("rsnorm"),
            required_features: features,
            // The adapter's own limits, not WebGPU's defaults: 128 MiB storage bindings and 256
            // invocations would cap every kernel far below what the device does.
            required_limits: limits.clone(),
            ..Default::default()
        }))
        .map_err(|err| format!("the GPU adapter refused a device: {err}"))?;
        let uncaptured = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&uncaptured);
        device.on_uncaptured_error(Arc::new(move |err: wgpu::Error| {
            lock(&sink).push(err.to_string());
        }));
        let lost = Arc::clone(&uncaptured);
        device.set_device_lost_callback(move |reason, msg| {
            lock(&lost).push(format!("the GPU device was lost ({reason:?}): {msg}"));
        });
        let mut max_binding = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size);
        if let Some(cap) = env_number("RSNORM_GPU_MAX_BINDING") {
            max_binding = max_binding.min(cap.max(256));
        }
        let mut max_groups = limits.max_compute_workgroups_per_dimension;
        if let Some(cap) = env_number("RSNORM_GPU_MAX_GROUPS") {
            max_groups = max_groups.min(cap.max(1) as u32);
        }
        Ok(Context {
            info: adapter.get_info(),
            device,
            queue,
            features,
            limits,
            max_binding,
            max_groups,
            pipelines: Mutex::default(),
            pool: Mutex::default(),
            pending: Mutex::default(),
            arena: Mutex::default(),
            uncaptured,
            pid: std::process::id(),
        })
    }

    pub(crate) fn has(&self, feature: wgpu::Features) -> bool {
        self.features.contains(feature)
    }

    /// Runs `record` with an error scope around it, so validation and out-of-memory errors of
    /// this op come back as `Error::Device` (and an earlier uncaptured one too).
    pub(crate) fn checked<T>(&self, record: impl FnOnce() -> Result<T>) -> Result<T> {
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let result = record();
        let invalid = pollster::block_on(validation.pop());
        let out_of_memory = pollster::block_on(oom.pop());
        if let Some(err) = invalid.or(out_of_memory) {
            // The pending encoder may hold the failed commands: drop it rather than submit them.
            lock(&self.pending).encoder = None;
            return Err(Error::Device(format!("the GPU refused the work: {err}")));
        }
        self.raise_uncaptured()?;
        result
    }

    fn raise_uncaptured(&self) -> Result<()> {
        let mut errors = lock(&self.uncaptured);
        if errors.is_empty() {
            return Ok(());
        }
        let msg = errors.join("; ");
        errors.clear();
        Err(Error::Device(format!("GPU error: {msg}")))
    }

    /// A buffer of at least `bytes` (rounded up to 4), from the pool when one of that size is
    /// free. Its contents are undefined.
    pub(crate) fn buffer(&self, bytes: u64) -> Result<wgpu::Buffer> {
        let size = bytes.max(4).next_multiple_of(4);
        if size > self.limits.max_buffer_size {
            return Err(Error::Device(format!(
                "an array of {bytes} bytes exceeds the GPU's largest buffer ({} bytes)",
                self.limits.max_buffer_size
            )));
        }
        {
            let mut pool = lock(&self.pool);
            if let Some(buffer) = pool.free.get_mut(&size).and_then(Vec::pop) {
                pool.bytes -= size;
                return Ok(buffer);
            }
        }
        Ok(self.device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        }))
    }

    /// Takes back a buffer no array refers to any more. Work recorded before still uses it; a
    /// later op that gets it is recorded after that work, so the device orders them.
    pub(crate) fn recycle(&self, buffer: wgpu::Buffer) {
        let size = buffer.size();
        let mut pool = lock(&self.pool);
        if pool.bytes + size <= POOL_BYTES {
            pool.bytes += size;
            pool.free.entry(size).or_default().push(buffer);
        }
    }

    /// A buffer holding `data` (padded to 4 bytes), usable by work recorded from now on.
    pub(crate) fn upload(&self, data: &[u8], usage: wgpu::BufferUsages) -> wgpu::Buffer {
        let mut padded;
        let mut contents = data;
        if data.is_empty() || !data.len().is_multiple_of(4) {
            padded = data.to_vec();
            padded.resize(data.len().max(4).next_multiple_of(4), 0);
            contents = &padded;
        }
        self.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: None,
                contents,
                usage,
            })
    }

    /// `bytes` in a fresh slot of the uniform arena.
    pub(crate) fn uniform(&self, bytes: &[u8]) -> crate::pipelines::Uniform {
        let slot = u64::from(self.limits.min_uniform_buffer_offset_alignment).max(256);
        let size = (bytes.len() as u64).next_multiple_of(16);
        let mut arena = lock(&self.arena);
        if arena.buffer.is_none() || arena.used + slot > slot * ARENA_SLOTS {
            arena.buffer = Some(self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("rsnorm parameters"),
                size: slot * ARENA_SLOTS,
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }));
            arena.used = 0;
        }
        let offset = arena.used;
        arena.used += slot;
        let buffer = arena.buffer.clone().expect("the arena was just made");
        let mut padded = bytes.to_vec();
        padded.resize(size as usize, 0);
        self.queue.write_buffer(&buffer, offset, &padded);
        crate::pipelines::Uniform {
            buffer,
            offset,
            size,
        }
    }

    /// A timestamp recorded after the work recorded so far: a marker pass whose end the device
    /// stamps once everything before it is done. None when the adapter lacks TIMESTAMP_QUERY.
    pub(crate) fn timestamp(&self) -> Result<Option<Timestamp>> {
        if !self.has(wgpu::Features::TIMESTAMP_QUERY) {
            return Ok(None);
        }
        let set = self.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("rsnorm timestamp"),
            ty: wgpu::QueryType::Timestamp,
            count: 1,
        });
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("rsnorm timestamp"),
            size: 8,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        self.checked(|| {
            self.record(0, |encoder| {
                drop(encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("rsnorm timestamp"),
                    timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                        query_set: &set,
                        beginning_of_pass_write_index: None,
                        end_of_pass_write_index: Some(0),
                    }),
                }));
                encoder.resolve_query_set(&set, 0..1, &buffer, 0);
            });
            Ok(())
        })?;
        Ok(Some(Timestamp { buffer }))
    }

    /// Records into the pending encoder; submits it after `BATCH` dispatches.
    pub(crate) fn record(&self, dispatches: usize, body: impl FnOnce(&mut wgpu::CommandEncoder)) {
        let mut pending = lock(&self.pending);
        let encoder = pending.encoder.get_or_insert_with(|| {
            self.device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None })
        });
        body(encoder);
        pending.dispatches += dispatches;
        if pending.dispatches >= BATCH {
            self.submit_locked(&mut pending);
        }
    }

    fn submit_locked(&self, pending: &mut Pending) {
        if let Some(encoder) = pending.encoder.take() {
            self.queue.submit([encoder.finish()]);
        }
        pending.dispatches = 0;
    }

    /// Submits recorded work without waiting for it.
    pub(crate) fn flush(&self) {
        self.submit_locked(&mut lock(&self.pending));
    }

    /// Submits recorded work and waits until the device has done it.
    pub(crate) fn synchronize(&self) -> Result<()> {
        self.flush();
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|err| Error::Device(format!("waiting for the GPU failed: {err}")))?;
        self.raise_uncaptured()
    }

    /// The bytes of `buffer[..len]` once all recorded work is done.
    pub(crate) fn download(&self, buffer: &wgpu::Buffer, len: u64) -> Result<Vec<u8>> {
        if len == 0 {
            return Ok(Vec::new());
        }
        let size = len.next_multiple_of(4);
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("rsnorm readback"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.checked(|| {
            self.record(0, |encoder| {
                encoder.copy_buffer_to_buffer(buffer, 0, &staging, 0, size);
            });
            Ok(())
        })?;
        self.flush();
        let (sender, receiver) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |result| {
            let _ = sender.send(result);
        });
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|err| Error::Device(format!("waiting for the GPU failed: {err}")))?;
        self.raise_uncaptured()?;
        match receiver.recv() {
            Ok(Ok(())) => {}
            Ok(Err(err)) => return Err(Error::Device(format!("reading back from the GPU: {err}"))),
            Err(_) => return Err(Error::Device("reading back from the GPU: no answer".into())),
        }
        let view = staging
            .get_mapped_range(..)
            .map_err(|err| Error::Device(format!("reading back from the GPU: {err}")))?;
        let bytes = view[..len as usize].to_vec();
        drop(view);
        staging.unmap();
        Ok(bytes)
    }
}

/// A point on the device's clock (see `Context::timestamp`).
#[derive(Debug)]
pub struct Timestamp {
    buffer: wgpu::Buffer,
}

impl Timestamp {
    /// Records one after the work recorded so far; None when the adapter has no timestamps.
    pub fn record() -> Result<Option<Timestamp>> {
        context()?.timestamp()
    }

    /// The device's time at the stamp, in nanoseconds (waits for the work before it).
    pub fn nanoseconds(&self) -> Result<f64> {
        let ctx = context()?;
        let bytes = ctx.download(&self.buffer, 8)?;
        let ticks = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
        Ok(ticks as f64 * f64::from(ctx.queue.get_timestamp_period()))
    }
}
