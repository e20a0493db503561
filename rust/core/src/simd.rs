//! Run-time choice of the instruction set for hot loops.
//!
//! Wheels are built for baseline x86-64 (SSE2). The kernels are plain Rust loops written with
//! explicit lane accumulators so LLVM vectorizes them; [`for_each_range`] runs closures inside a
//! function compiled with `#[target_feature]` so that the inlined kernels are vectorized for
//! AVX2/FMA or AVX-512 when the CPU has them. std::arch detection is used rather than a crate
//! (pulp, multiversion) because the kernels need no intrinsics — only the codegen target — and
//! the level must be forceable (`RSNORM_SIMD`) for tests that compare paths.
//!
//! On aarch64, NEON is part of the baseline target: the same loops compile to NEON with no
//! dispatch, and that is the only level there (`RSNORM_SIMD` cannot lower it).
//!
//! Results are bitwise identical across levels: kernels fix the order of every reduction through
//! their lane arrays, so wider vectors do the same operations, and call no `mul_add` but in the
//! f32 exponential and the information measures' f64 logarithm, which fuse wherever the level has
//! FMA (AVX2, AVX-512, NEON) and only there (`fastmath::MulAdd`): the scalar level's results of
//! those may differ in the last bit.

use std::cell::Cell;
use std::sync::OnceLock;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Scalar,
    Neon,
    Avx2,
    Avx512,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Scalar => "scalar",
            Level::Neon => "neon",
            Level::Avx2 => "avx2",
            Level::Avx512 => "avx512",
        }
    }
}

/// The best level this CPU supports.
pub fn detected() -> Level {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512dq")
        {
            return Level::Avx512;
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            return Level::Avx2;
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        return Level::Neon;
    }
    #[allow(unreachable_code)]
    Level::Scalar
}

/// The level in use: `RSNORM_SIMD=scalar|avx2|avx512` lowers it (never above what the CPU has),
/// else the detected one. Read once.
pub fn level() -> Level {
    static LEVEL: OnceLock<Level> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        let best = detected();
        let wanted = match std::env::var("RSNORM_SIMD").ok().as_deref().map(str::trim) {
            Some("scalar") => Level::Scalar,
            Some("avx2") => Level::Avx2,
            Some("avx512") => Level::Avx512,
            _ => best,
        };
        if best == Level::Neon {
            return best; // baseline: nothing to lower it to
        }
        wanted.min(best)
    })
}

/// Whether the norms prefetch their next rows in software (`norm::ahead_if_useful`). Chosen once
/// per process by CPU vendor: on the Intel Xeon the norms gained from it (RMSNorm (8192, 4096)
/// 74% → 100% of copy), on the AMD EPYC (Zen 4) it cost them (RMSNorm (8192, 4096) 11.5 → 8.8 ms
/// without), whose hardware prefetcher follows the rows alone. Softmax, LRN and GroupNorm's
/// group-strided rows prefetch on both (on the EPYC without: LRN (32, 64, 56, 56) 0.72×,
/// GroupNorm 0.93×). `RSNORM_PREFETCH=0|1` overrides.
pub fn row_prefetch() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| switch("RSNORM_PREFETCH", || !amd()))
}

/// Whether the row norms whose output streams (non-temporal stores) prefetch their next input
/// row (`norm::row_norm_ahead`): on every CPU, unless `RSNORM_PREFETCH=0` ("hardware only").
pub fn streamed_row_prefetch() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| switch("RSNORM_PREFETCH", || true))
}

/// Whether kernels write outputs larger than the cache with non-temporal stores
/// ([`copy_nontemporal`]), chosen per process by CPU vendor: on the AMD EPYC (Zen 4) a plain store
/// first reads its line (3 bytes of traffic per byte written and read), and LayerNorm and RMSNorm
/// (8192, 4096) ran 1.2–1.25× faster without that read; on the Intel Xeon they had gained nothing
/// and RMSNorm lost 6% (decisions.md). `RSNORM_NONTEMPORAL=0|1` overrides.
pub fn nontemporal_stores() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| switch("RSNORM_NONTEMPORAL", amd))
}

/// The environment variable `name` as a switch ("0" off, "1" on), else `default()`.
fn switch(name: &str, default: impl FnOnce() -> bool) -> bool {
    set_switch(name).unwrap_or_else(default)
}

/// The environment variable `name` as a switch ("0" off, "1" on), or None when unset or else.
fn set_switch(name: &str) -> Option<bool> {
    match std::env::var(name).ok().as_deref().map(str::trim) {
        Some("0") => Some(false),
        Some("1") => Some(true),
        _ => None,
    }
}

/// Whether the CPU is AMD's (CPUID's vendor string).
fn amd() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: CPUID leaf 0 exists on every x86-64 CPU.
        #[allow(unused_unsafe)]
        let id = unsafe { std::arch::x86_64::__cpuid(0) };
        let mut vendor = [0u8; 12];
        vendor[..4].copy_from_slice(&id.ebx.to_le_bytes());
        vendor[4..8].copy_from_slice(&id.edx.to_le_bytes());
        vendor[8..].copy_from_slice(&id.ecx.to_le_bytes());
        return &vendor == b"AuthenticAMD";
    }
    #[allow(unreachable_code)]
    false
}

thread_local! {
    /// The widest level kernels dispatched from this thread may use (see [`streaming`]).
    static CAP: Cell<Level> = const { Cell::new(Level::Avx512) };
}

/// Bytes a call's arrays hold together from which [`streaming`] caps its kernels at AVX2 on AMD
/// CPUs from Zen 5 on (elsewhere it caps every call): half the 32 MB L3 of the Zen 5 EPYC,
/// between the 6 MB calls that ran faster uncapped there and the 38–51 MB ones that ran slower
/// (decisions.md).
pub const STREAMING_FROM: usize = 16 << 20;

/// Runs `f` with the kernels it dispatches capped at AVX2 (256-bit vectors), on whatever thread
/// the row drivers run them, when the call's arrays hold `bytes` ≥ [`STREAMING_FROM`] together.
/// For loops that stream memory with little arithmetic per byte: on the AMD EPYC (Zen 4),
/// BatchNorm, GroupNorm, InstanceNorm and LayerNorm backward ran 9–20% slower with 512-bit
/// vectors (64-byte-aligned arrays too), while the exp/ln/sqrt-heavy kernels (softmax, KL, Adam)
/// ran 10–60% faster with them. On the Zen 5 EPYC the large calls still did (5–14% slower
/// uncapped), but calls within its L3 ran 5–21% faster with 512-bit vectors. Results do not
/// change: every level computes the same bits. The Zen 4 and the Intel Xeon cap every call
/// (BatchNorm train (32, 512, 7, 7) was 1.14× slower uncapped on the Xeon).
/// `RSNORM_STREAMING_CAP=0|1` overrides.
pub fn streaming<R>(bytes: usize, f: impl FnOnce() -> R) -> R {
    if bytes < streaming_from() {
        return f();
    }
    let before = CAP.with(|cap| cap.replace(Level::Avx2));
    let result = f();
    CAP.with(|cap| cap.set(before));
    result
}

/// The bytes from which [`streaming`] caps a call: [`STREAMING_FROM`] on AMD CPUs from Zen 5 on,
/// else 0 (every call); `RSNORM_STREAMING_CAP=1` gives 0 and `RSNORM_STREAMING_CAP=0`
/// `usize::MAX` (none). Read once.
pub fn streaming_from() -> usize {
    static FROM: OnceLock<usize> = OnceLock::new();
    *FROM.get_or_init(|| match set_switch("RSNORM_STREAMING_CAP") {
        Some(false) => usize::MAX,
        None if amd_family() >= ZEN5_FAMILY => STREAMING_FROM,
        Some(true) | None => 0,
    })
}

/// CPUID's family of AMD's Zen 5 (0x1A); Zen 3 and Zen 4 are 0x19.
const ZEN5_FAMILY: u32 = 0x1A;

/// The CPU's family (CPUID leaf 1, base plus extended) on AMD CPUs, else 0.
fn amd_family() -> u32 {
    #[cfg(target_arch = "x86_64")]
    if amd() {
        // SAFETY: CPUID leaf 1 exists on every x86-64 CPU.
        #[allow(unused_unsafe)]
        let eax = unsafe { std::arch::x86_64::__cpuid(1) }.eax;
        let base = (eax >> 8) & 0xF;
        return if base == 0xF {
            base + ((eax >> 20) & 0xFF)
        } else {
            base
        };
    }
    0
}

/// [`streaming`] for kernels whose lanes are of `T`, when those fit AVX2's sixteen registers:
/// two sums of 32 lanes take eight of them in a 4-byte type, but all sixteen in f64, where the
/// lanes spilled to the stack at AVX2 (`moments` of float32, read as f64, ran 1.3–1.4× faster
/// with 512-bit vectors on the EPYC). Kernels over f64 run at the full level.
pub fn streaming_lanes<T, R>(bytes: usize, f: impl FnOnce() -> R) -> R {
    if std::mem::size_of::<T>() <= 4 {
        streaming(bytes, f)
    } else {
        f()
    }
}

/// The level kernels dispatched from this thread run at now. Drivers read it on the calling
/// thread and hand it to their tasks ([`for_each_range`]), so a [`streaming`] scope reaches them.
pub fn active_level() -> Level {
    level().min(CAP.with(Cell::get))
}

/// Runs `f` on this thread compiled for the active level, for a serial loop outside the row
/// drivers (the class checks of the losses: at the baseline SSE2 level they had been scalar).
/// Mark `f` `#[inline(always)]`, as for [`for_each_range`].
#[inline(always)]
pub fn dispatch<R>(f: impl FnOnce() -> R) -> R {
    dispatch_at(active_level(), f)
}

/// [`crate::parallel::for_each_range`] with every range run compiled for the calling thread's
/// active level (read here, on the caller, so a [`streaming`] cap reaches the tasks). Mark `f`
/// `#[inline(always)]`: the kernels it calls are then generated inside the target-feature
/// function.
#[inline(always)]
pub fn for_each_range(
    n_items: usize,
    work_per_item: usize,
    f: impl Fn(std::ops::Range<usize>) + Sync,
) {
    let level = active_level();
    crate::parallel::for_each_range(n_items, work_per_item, |range| {
        dispatch_at(
            level,
            #[inline(always)]
            || f(range),
        );
        // Kernels that stored non-temporally ([`crate::rows::in_segments`]) are ordered before
        // the join hands their memory back; once a task, where a fence a row cost LayerNorm
        // (8192, 4096) 5–7%.
        nontemporal_fence();
    });
}

/// Runs `f` compiled for `level`, lowered to [`level()`] if above it (callers pass
/// [`active_level`]); the lowering keeps a safe call from running instructions the CPU lacks.
#[inline(always)]
fn dispatch_at<R>(level: Level, f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        match level.min(self::level()) {
            // SAFETY: the level never exceeds what `detected()` found on this CPU.
            Level::Avx512 => return unsafe { run_avx512(f) },
            Level::Avx2 => return unsafe { run_avx2(f) },
            Level::Scalar | Level::Neon => {}
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = level;
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn run_avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")]
unsafe fn run_avx512<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// Bytes of a cache line, the unit a non-temporal store fills.
pub const LINE: usize = 64;

/// Bytes written from which the bench's copy ceiling stores non-temporally (where
/// [`nontemporal_stores`]): an output and input this size no longer stay in a 32 MB L3 between
/// calls. LayerNorm (4096, 1024) f32 (16 MB out) ran 1.7× slower with them, (2048, 4096) (32 MB)
/// 1.17× faster.
pub const NONTEMPORAL_FROM: usize = 32 << 20;

/// Bytes of a call's arrays together (read and written) from which kernels store non-temporally
/// ([`crate::rows::Stores::for_outputs`]): a copy's at [`NONTEMPORAL_FROM`] written.
pub const NONTEMPORAL_FOOTPRINT: usize = 2 * NONTEMPORAL_FROM;

/// Copies `src` into `dst` (same length) with non-temporal stores for every whole cache line of
/// `dst` (plain stores for the partial lines at its ends): the lines go to memory without being
/// read first and without displacing the cache. Call [`nontemporal_fence`] before the data is
/// handed to another thread. Elsewhere than x86-64, a plain copy. 16-byte stores (SSE2, every
/// x86-64 CPU): 64-byte ones measured the same.
#[inline(always)]
pub fn copy_nontemporal<T: Copy>(src: &[T], dst: &mut [T]) {
    assert_eq!(src.len(), dst.len(), "copy_nontemporal: lengths differ");
    #[cfg(target_arch = "x86_64")]
    if std::mem::size_of::<T>() > 0 && LINE.is_multiple_of(std::mem::size_of::<T>()) {
        let size = std::mem::size_of::<T>();
        let head = (dst.as_ptr() as usize).wrapping_neg() % LINE / size;
        let head = head.min(dst.len());
        let lines = (dst.len() - head) * size / LINE;
        let body = lines * LINE / size;
        dst[..head].copy_from_slice(&src[..head]);
        // SAFETY: dst[head..head + body] is `lines` whole 64-byte lines (its start is aligned to
        // a line, computed above), src the same number of readable bytes; SSE2 is part of every
        // x86-64 CPU.
        unsafe {
            use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_stream_si128};
            let from = src.as_ptr().add(head).cast::<__m128i>();
            let to = dst.as_mut_ptr().add(head).cast::<__m128i>();
            for k in 0..lines * (LINE / 16) {
                _mm_stream_si128(to.add(k), _mm_loadu_si128(from.add(k)));
            }
        }
        dst[head + body..].copy_from_slice(&src[head + body..]);
        return;
    }
    dst.copy_from_slice(src);
}

/// Prefetches the line holding `at` into L1 (a hint: it never faults, on any address).
#[inline(always)]
pub fn prefetch(at: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint; it does not fault on any address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(at.cast());
    }
    #[cfg(target_arch = "aarch64")]
    // SAFETY: as above (`_prefetch` in std::arch is not stable yet, the instruction is).
    unsafe {
        std::arch::asm!("prfm pldl1keep, [{0}]", in(reg) at, options(nostack, readonly, preserves_flags));
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    let _ = at;
}

/// Orders the non-temporal stores before it ahead of every later store (`sfence`), so that a
/// thread that sees a later store also sees them.
#[inline(always)]
pub fn nontemporal_fence() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE is part of every x86-64 CPU.
    unsafe {
        std::arch::x86_64::_mm_sfence();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nontemporal_copy_copies_every_length_and_alignment() {
        let src: Vec<f64> = (0..300).map(|i| f64::from(i) * 0.5 - 7.0).collect();
        let src32: Vec<f32> = src.iter().map(|&v| v as f32).collect();
        let bytes: Vec<u8> = (0..300).map(|i| (i * 7) as u8).collect();
        for start in 0..17 {
            for len in [0, 1, 7, 8, 15, 16, 17, 63, 64, 65, 130, 283 - start] {
                let mut dst = vec![-1.0; 300];
                copy_nontemporal(&src[start..start + len], &mut dst[start..start + len]);
                let mut dst32 = vec![-1.0f32; 300];
                copy_nontemporal(&src32[start..start + len], &mut dst32[start..start + len]);
                let mut dst8 = vec![0u8; 300];
                copy_nontemporal(&bytes[start..start + len], &mut dst8[start..start + len]);
                nontemporal_fence();
                let inside = |k: usize| (start..start + len).contains(&k);
                for k in 0..300 {
                    let (want, want32) = if inside(k) {
                        (src[k], src32[k])
                    } else {
                        (-1.0, -1.0)
                    };
                    assert_eq!(dst[k].to_bits(), want.to_bits(), "{start} {len} {k}");
                    assert_eq!(dst32[k].to_bits(), want32.to_bits());
                    assert_eq!(dst8[k], if inside(k) { bytes[k] } else { 0 });
                }
            }
        }
    }

    #[test]
    fn level_never_exceeds_the_cpu_and_names_itself() {
        assert!(level() <= detected());
        #[cfg(target_arch = "aarch64")]
        assert_eq!(level(), Level::Neon);
        assert!(["scalar", "neon", "avx2", "avx512"].contains(&level().name()));
        assert_eq!(dispatch_at(active_level(), || 41 + 1), 42);
        // A streaming scope over STREAMING_FROM bytes caps the level at AVX2 and restores it
        // after; a smaller one keeps the full level (unless RSNORM_STREAMING_CAP forces it).
        let outside = active_level();
        let inside = streaming(STREAMING_FROM, active_level);
        let forced = std::env::var("RSNORM_STREAMING_CAP").ok();
        if forced.is_none() {
            assert_eq!(inside, outside.min(Level::Avx2));
            let small = streaming(STREAMING_FROM - 1, active_level);
            let by_size = amd_family() >= ZEN5_FAMILY;
            assert_eq!(small, if by_size { outside } else { inside });
        }
        assert_eq!(active_level(), outside);
        // By lane type: f32 lanes are capped, f64 lanes keep the full level.
        assert_eq!(
            streaming_lanes::<f32, _>(STREAMING_FROM, active_level),
            inside
        );
        assert_eq!(
            streaming_lanes::<f64, _>(STREAMING_FROM, active_level),
            outside
        );
        assert_eq!(active_level(), outside);
    }
}
