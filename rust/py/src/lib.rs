//! rsnorm._rsnorm: PyO3 bindings of rsnorm-core. Argument checking, dtype dispatch, GIL release and
//! error mapping live here; the math lives in rsnorm-core.

mod args;
mod backward;
mod channels;
mod dispatch;
mod divergence;
mod errors;
mod gpu;
mod misc;
mod norm;
mod optim;

use dispatch::{float_array, with_float_array, Storage};
use errors::{compute, value_error, Result};
use numpy::{PyArrayDyn, PyArrayMethods, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::PyList;

/// Sets the number of threads rsnorm computes with (1 to 1024; `RSNORM_NUM_THREADS` or the CPU
/// count when never set).
#[pyfunction]
fn set_num_threads(n: i64) -> Result<()> {
    let most = rsnorm_core::parallel::MAX_THREADS;
    if n < 1 || n > most as i64 {
        return Err(value_error(format!(
            "set_num_threads: n must be between 1 and {most}, got {n}"
        )));
    }
    rsnorm_core::parallel::set_num_threads(n as usize);
    Ok(())
}

/// Number of threads rsnorm computes with.
#[pyfunction]
fn get_num_threads() -> usize {
    rsnorm_core::parallel::num_threads()
}

/// For `os.register_at_fork(before=…)`: no pool starts its threads while the process forks.
#[pyfunction]
fn _before_fork() {
    rsnorm_core::parallel::hold_spawns_for_fork();
}

/// For `os.register_at_fork(after_in_parent=…)`.
#[pyfunction]
fn _after_fork_in_parent() {
    rsnorm_core::parallel::release_spawns_after_fork();
}

/// For `os.register_at_fork(after_in_child=…)`: a forked child has no worker threads, so the
/// inherited pool is dropped and a new one started on first use.
#[pyfunction]
fn _after_fork_in_child() {
    rsnorm_core::parallel::forget_pool_after_fork();
}

/// The instruction set the kernels run with: "scalar", "avx2" or "avx512".
#[pyfunction]
fn simd_level() -> &'static str {
    rsnorm_core::simd::level().name()
}

/// Whether the norms prefetch their next rows in software (chosen by CPU vendor, or
/// `RSNORM_PREFETCH`).
#[pyfunction]
fn _row_prefetch() -> bool {
    rsnorm_core::simd::row_prefetch()
}

/// Whether the row norms whose outputs stream prefetch their next input rows (on unless
/// `RSNORM_PREFETCH=0`).
#[pyfunction]
fn _streamed_row_prefetch() -> bool {
    rsnorm_core::simd::streamed_row_prefetch()
}

/// Whether large outputs are written with non-temporal stores (chosen by CPU vendor, or
/// `RSNORM_NONTEMPORAL`).
#[pyfunction]
fn _nontemporal_stores() -> bool {
    rsnorm_core::simd::nontemporal_stores()
}

/// The bytes a call's arrays hold from which the channel norms' and the row norms' backward
/// loops run with 256-bit vectors (`RSNORM_STREAMING_CAP=0|1`: never, always).
#[pyfunction]
fn _streaming_from() -> usize {
    rsnorm_core::simd::streaming_from()
}

/// The Cargo profile this extension was built with: "release" for wheels; a local "dev-opt"
/// build lacks the fat LTO, and some kernels lose their vectorization without it.
#[pyfunction]
fn _build_profile() -> &'static str {
    env!("RSNORM_BUILD_PROFILE")
}

/// Copies `src` into `dst` (same dtype, C-contiguous, same size) with rsnorm's threads: the
/// memory-bandwidth ceiling the benchmarks report against.
#[pyfunction]
fn _parallel_copy(py: Python<'_>, src: &Bound<'_, PyAny>, dst: &Bound<'_, PyAny>) -> Result<()> {
    with_float_array!(float_array("_parallel_copy", "src", src)?, src => copy_typed(py, src, dst))
}

fn copy_typed<S: Storage>(
    py: Python<'_>,
    src: Bound<'_, PyArrayDyn<S>>,
    dst: &Bound<'_, PyAny>,
) -> Result<()> {
    let dst = dst
        .cast::<PyArrayDyn<S>>()
        .map_err(|_| value_error("_parallel_copy: dst must have src's dtype"))?;
    if !src.is_c_contiguous()
        || !dst.is_c_contiguous()
        || src.len() != dst.len()
        || !dispatch::is_writeable(dst.as_untyped())
    {
        return Err(value_error(
            "_parallel_copy: src and dst must be C-contiguous, writeable dst, same size",
        ));
    }
    // SAFETY: both contiguous; dst writeable; callers pass distinct arrays.
    let (s, d) = unsafe { (src.as_slice()?, dst.as_slice_mut()?) };
    compute(py, || {
        rsnorm_core::parallel::parallel_copy(s, d);
        Ok(())
    })
}

/// Multiplies `buf` (an array, or a list of arrays of one dtype; C-contiguous, writeable, apart)
/// by `factor` in place with rsnorm's threads: the in-place-stream ceiling the benchmarks report
/// in-place updates against, over an optimizer step's own arrays where it is given them.
#[pyfunction]
fn _parallel_scale(py: Python<'_>, buf: &Bound<'_, PyAny>, factor: f64) -> Result<()> {
    let arrays: Vec<Bound<'_, PyAny>> = match buf.cast::<PyList>() {
        Ok(list) => list.iter().collect(),
        Err(_) => vec![buf.clone()],
    };
    let Some(first) = arrays.first() else {
        return Ok(());
    };
    with_float_array!(float_array("_parallel_scale", "buf", first)?, first => scale_typed(py, &first, &arrays, factor))
}

fn scale_typed<S: Storage>(
    py: Python<'_>,
    _first: &Bound<'_, PyArrayDyn<S>>,
    arrays: &[Bound<'_, PyAny>],
    factor: f64,
) -> Result<()> {
    let mut parts = Vec::with_capacity(arrays.len());
    let mut spans = Vec::with_capacity(arrays.len());
    for array in arrays {
        let array = array
            .cast::<PyArrayDyn<S>>()
            .map_err(|_| value_error("_parallel_scale: buf's arrays must share one dtype"))?;
        if !array.is_c_contiguous() || !dispatch::is_writeable(array.as_untyped()) {
            return Err(value_error(
                "_parallel_scale: buf must be C-contiguous and writeable",
            ));
        }
        // SAFETY: contiguous and writeable; the spans are checked apart below before any write.
        let part = unsafe { array.as_slice_mut()? };
        let start = part.as_ptr() as usize;
        if !part.is_empty() {
            spans.push((start, start + std::mem::size_of_val(part)));
        }
        parts.push(part);
    }
    spans.sort_unstable();
    if spans.windows(2).any(|w| w[1].0 < w[0].1) {
        return Err(value_error("_parallel_scale: buf's arrays overlap"));
    }
    compute(py, || {
        rsnorm_core::parallel::parallel_scale(&mut parts, factor);
        Ok(())
    })
}

/// Σ buf (float32, C-contiguous) read by rsnorm's threads: the read-only-stream ceiling the
/// benchmarks report reductions against.
#[pyfunction]
fn _parallel_sum(py: Python<'_>, buf: numpy::PyReadonlyArrayDyn<'_, f32>) -> Result<f64> {
    let data = buf
        .as_slice()
        .map_err(|_| value_error("_parallel_sum: buf must be C-contiguous"))?;
    compute(py, || Ok(rsnorm_core::parallel::parallel_sum(data)))
}

#[pymodule]
fn _rsnorm(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    gpu::register(m)?;
    m.add_function(wrap_pyfunction!(norm::layer_norm, m)?)?;
    m.add_function(wrap_pyfunction!(norm::rms_norm, m)?)?;
    m.add_function(wrap_pyfunction!(norm::add_layer_norm, m)?)?;
    m.add_function(wrap_pyfunction!(norm::add_rms_norm, m)?)?;
    m.add_function(wrap_pyfunction!(channels::batch_norm, m)?)?;
    m.add_function(wrap_pyfunction!(channels::instance_norm, m)?)?;
    m.add_function(wrap_pyfunction!(channels::group_norm, m)?)?;
    m.add_function(wrap_pyfunction!(misc::selu, m)?)?;
    m.add_function(wrap_pyfunction!(misc::local_response_norm, m)?)?;
    m.add_function(wrap_pyfunction!(misc::weight_norm, m)?)?;
    m.add_function(wrap_pyfunction!(misc::l2_normalize, m)?)?;
    m.add_function(wrap_pyfunction!(misc::normalize, m)?)?;
    m.add_function(wrap_pyfunction!(misc::moments, m)?)?;
    m.add_function(wrap_pyfunction!(misc::merge_moments, m)?)?;
    m.add_function(wrap_pyfunction!(misc::merge_partials, m)?)?;
    m.add_function(wrap_pyfunction!(misc::apply_statistics, m)?)?;
    m.add_function(wrap_pyfunction!(misc::information_criterion, m)?)?;
    m.add_function(wrap_pyfunction!(misc::information_criterion_direct, m)?)?;
    m.add_function(wrap_pyfunction!(backward::layer_norm_backward, m)?)?;
    m.add_function(wrap_pyfunction!(backward::rms_norm_backward, m)?)?;
    m.add_function(wrap_pyfunction!(backward::add_layer_norm_backward, m)?)?;
    m.add_function(wrap_pyfunction!(backward::add_rms_norm_backward, m)?)?;
    m.add_function(wrap_pyfunction!(backward::batch_norm_backward, m)?)?;
    m.add_function(wrap_pyfunction!(backward::instance_norm_backward, m)?)?;
    m.add_function(wrap_pyfunction!(backward::group_norm_backward, m)?)?;
    m.add_function(wrap_pyfunction!(backward::weight_norm_backward, m)?)?;
    m.add_function(wrap_pyfunction!(backward::l2_normalize_backward, m)?)?;
    m.add_function(wrap_pyfunction!(backward::normalize_backward, m)?)?;
    m.add_function(wrap_pyfunction!(backward::selu_backward, m)?)?;
    m.add_function(wrap_pyfunction!(optim::optim_step, m)?)?;
    m.add_function(wrap_pyfunction!(optim::optim_grads_ready, m)?)?;
    m.add_function(wrap_pyfunction!(optim::optim_validate, m)?)?;
    m.add_function(wrap_pyfunction!(optim::grad_norm, m)?)?;
    m.add_function(wrap_pyfunction!(divergence::softmax, m)?)?;
    m.add_function(wrap_pyfunction!(divergence::log_softmax, m)?)?;
    m.add_function(wrap_pyfunction!(divergence::softmax_backward, m)?)?;
    m.add_function(wrap_pyfunction!(
        divergence::cross_entropy_with_logits_backward,
        m
    )?)?;
    m.add_function(wrap_pyfunction!(divergence::information, m)?)?;
    m.add_function(wrap_pyfunction!(divergence::cross_entropy_with_logits, m)?)?;
    m.add_function(wrap_pyfunction!(divergence::nll_loss, m)?)?;
    m.add_function(wrap_pyfunction!(divergence::wasserstein_1d, m)?)?;
    m.add_function(wrap_pyfunction!(set_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(get_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(channels::_check_num_groups, m)?)?;
    m.add_function(wrap_pyfunction!(_before_fork, m)?)?;
    m.add_function(wrap_pyfunction!(_after_fork_in_parent, m)?)?;
    m.add_function(wrap_pyfunction!(_after_fork_in_child, m)?)?;
    m.add_function(wrap_pyfunction!(simd_level, m)?)?;
    m.add_function(wrap_pyfunction!(_row_prefetch, m)?)?;
    m.add_function(wrap_pyfunction!(_streamed_row_prefetch, m)?)?;
    m.add_function(wrap_pyfunction!(_nontemporal_stores, m)?)?;
    m.add_function(wrap_pyfunction!(_streaming_from, m)?)?;
    m.add_function(wrap_pyfunction!(_build_profile, m)?)?;
    m.add_function(wrap_pyfunction!(_parallel_copy, m)?)?;
    m.add_function(wrap_pyfunction!(_parallel_scale, m)?)?;
    m.add_function(wrap_pyfunction!(_parallel_sum, m)?)?;
    Ok(())
}
