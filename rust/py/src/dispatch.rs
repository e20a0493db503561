//! From Python objects to typed, well-behaved arrays and strided views: dtype dispatch, parameter
//! casting, `out=` checks and in-place aliasing. No math here.

use crate::errors::{type_error, value_error, Result};
use half::f16;
use numpy::{
    Element as NpElement, PyArrayDescrMethods, PyArrayDyn, PyArrayMethods, PyUntypedArray,
    PyUntypedArrayMethods,
};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use rsnorm_core::layout::{DimVec, Rows};
use rsnorm_core::rows::{ArrayMut, ArrayRef, RowsMut, RowsRef};

/// A storage dtype rsnorm accepts: a core element whose compute type NumPy also knows.
pub(crate) trait Storage: rsnorm_core::Element<Compute: NpElement> + NpElement {}
impl Storage for f16 {}
impl Storage for f32 {}
impl Storage for f64 {}

/// An input array of one of the accepted float dtypes.
pub(crate) enum FloatArray<'py> {
    F16(Bound<'py, PyArrayDyn<f16>>),
    F32(Bound<'py, PyArrayDyn<f32>>),
    F64(Bound<'py, PyArrayDyn<f64>>),
}

/// Runs a generic body on the typed array inside a [`FloatArray`]: the one dtype dispatch point.
macro_rules! with_float_array {
    ($array:expr, $arr:ident => $body:expr) => {
        match $array {
            $crate::dispatch::FloatArray::F16($arr) => $body,
            $crate::dispatch::FloatArray::F32($arr) => $body,
            $crate::dispatch::FloatArray::F64($arr) => $body,
        }
    };
}
pub(crate) use with_float_array;

/// The elements of `view` as one slice in C (ravel) order, or `None` when they are not laid out
/// so. rust-numpy's `as_slice` alone also takes a Fortran-ordered array, whose memory order is
/// not C order: a Fortran-ordered class target had been read transposed that way.
pub(crate) fn c_order_slice<'a, T: NpElement, D: numpy::ndarray::Dimension>(
    view: &'a numpy::PyReadonlyArray<'_, T, D>,
) -> Option<&'a [T]> {
    if !view.is_c_contiguous() {
        return None;
    }
    view.as_slice().ok()
}

/// The values of a native, C-contiguous float64 or float32 array of dimension `D`, in C order as
/// f64, or `None` when `obj` is not one (or is being written elsewhere). Read in place: NumPy's
/// cast (`astype`, then a copy out) costs about a microsecond, more than many small calls' work.
pub(crate) fn native_f64_values<D: numpy::ndarray::Dimension>(
    obj: &Bound<'_, PyAny>,
) -> Option<Vec<f64>> {
    fn read<T: NpElement + Copy + Into<f64>, D: numpy::ndarray::Dimension>(
        obj: &Bound<'_, PyAny>,
    ) -> Option<Vec<f64>> {
        let view = obj
            .cast::<numpy::PyArray<T, D>>()
            .ok()?
            .try_readonly()
            .ok()?;
        Some(c_order_slice(&view)?.iter().map(|&v| v.into()).collect())
    }
    read::<f64, D>(obj).or_else(|| read::<f32, D>(obj))
}

fn numpy(py: Python<'_>) -> Result<Bound<'_, PyModule>> {
    Ok(py.import("numpy")?)
}

fn dtype_name(arr: &Bound<'_, PyUntypedArray>) -> String {
    arr.dtype()
        .str()
        .map_or_else(|_| "?".to_string(), |s| s.to_string())
}

/// `np.asarray(obj)` unless `obj` already is an ndarray.
pub(crate) fn as_ndarray<'py>(obj: &Bound<'py, PyAny>) -> Result<Bound<'py, PyUntypedArray>> {
    if let Ok(arr) = obj.cast::<PyUntypedArray>() {
        return Ok(arr.clone());
    }
    Ok(numpy(obj.py())?
        .call_method1("asarray", (obj,))?
        .cast_into::<PyUntypedArray>()?)
}

/// Same values in native byte order, aligned, with strides that are whole elements — what the
/// kernels can address. A copy only for the rare arrays that are not.
fn well_behaved(arr: Bound<'_, PyUntypedArray>) -> Result<Bound<'_, PyUntypedArray>> {
    let itemsize = arr.dtype().itemsize() as isize;
    let native = arr.dtype().is_native_byteorder().unwrap_or(true);
    if native && arr.is_aligned() && arr.strides().iter().all(|s| s % itemsize == 0) {
        return Ok(arr);
    }
    let dtype = arr.dtype().call_method1("newbyteorder", ("=",))?;
    Ok(aligned_copy(&arr, &dtype)?.cast_into()?)
}

/// `obj` as a C-contiguous, aligned array of `dtype`, copied only when it is not one already.
/// Unlike `np.ascontiguousarray` this keeps a 0-d array 0-d, and unlike `np.asarray` it copies an
/// unaligned array.
pub(crate) fn aligned_copy<'py>(
    obj: &Bound<'py, PyAny>,
    dtype: &Bound<'py, PyAny>,
) -> Result<Bound<'py, PyAny>> {
    Ok(numpy(obj.py())?.call_method1("require", (obj, dtype, "CA"))?)
}

/// The input `x` of `op` as a float array; any other dtype is a `TypeError` naming it.
pub(crate) fn float_array<'py>(
    op: &str,
    name: &str,
    obj: &Bound<'py, PyAny>,
) -> Result<FloatArray<'py>> {
    let arr = as_ndarray(obj)?;
    let dtype = arr.dtype();
    if dtype.kind() != b'f' || !matches!(dtype.itemsize(), 2 | 4 | 8) {
        return Err(type_error(format!(
            "{op}: {name} has dtype {}; rsnorm computes on float16, float32 and float64 arrays",
            dtype_name(&arr)
        )));
    }
    let arr = well_behaved(arr)?;
    Ok(match arr.dtype().itemsize() {
        2 => FloatArray::F16(arr.cast_into()?),
        4 => FloatArray::F32(arr.cast_into()?),
        _ => FloatArray::F64(arr.cast_into()?),
    })
}

pub(crate) use rsnorm_core::error::shape_str;

/// A parameter (weight, bias) as a contiguous array of the compute type, after casting to the
/// input's dtype first (so f16 inputs see f16-rounded parameters, as PyTorch does).
pub(crate) fn param<'py, S: Storage>(
    py: Python<'py>,
    op: &str,
    name: &str,
    obj: Option<&Bound<'py, PyAny>>,
    expected_shape: &[usize],
) -> Result<Option<Bound<'py, PyArrayDyn<S::Compute>>>> {
    let Some(obj) = obj else { return Ok(None) };
    let arr = as_ndarray(obj)?;
    if arr.dtype().kind() != b'f' {
        return Err(type_error(format!(
            "{op}: {name} has dtype {}; expected a floating dtype",
            dtype_name(&arr)
        )));
    }
    if arr.shape() != expected_shape {
        return Err(value_error(format!(
            "{op}: {name} has shape {}, expected {} (the normalized shape)",
            shape_str(arr.shape()),
            shape_str(expected_shape)
        )));
    }
    if let Ok(typed) = arr.cast::<PyArrayDyn<S::Compute>>() {
        if S::NATIVE && typed.is_c_contiguous() && typed.as_untyped().is_aligned() {
            return Ok(Some(typed.clone()));
        }
    }
    let mut cast = aligned_copy(&arr, numpy::dtype::<S>(py).as_any())?;
    if !S::NATIVE {
        cast = cast.call_method1("astype", (numpy::dtype::<S::Compute>(py),))?;
    }
    Ok(Some(cast.cast_into()?))
}

/// Read-only slice of a contiguous parameter array.
pub(crate) fn param_slice<'a, T: NpElement>(
    arr: Option<&'a Bound<'_, PyArrayDyn<T>>>,
) -> Option<&'a [T]> {
    // SAFETY: `param` made the array C-contiguous; it is only read, and the Bound outlives the slice.
    arr.map(|a| unsafe { a.as_slice() }.expect("param arrays are contiguous"))
}

/// The WRITEABLE flag of an array (read-only arrays are never written).
pub(crate) fn is_writeable(arr: &Bound<'_, PyUntypedArray>) -> bool {
    array_flags(arr) & numpy::npyffi::NPY_ARRAY_WRITEABLE != 0
}

/// An array's flags field, as NumPy's PyArray_FLAGS reads it: `arr.flags.writeable` built a flags
/// object per call, a fifth of a (1, 64) LayerNorm's time with `out=`.
pub(crate) fn array_flags(arr: &Bound<'_, PyUntypedArray>) -> std::ffi::c_int {
    // SAFETY: `arr` is a live ndarray and the thread is attached (it holds a Bound).
    unsafe { (*numpy::npyffi::_PyArray_GET_ITEM_DATA(arr.as_array_ptr())).flags }
}

/// The strides of `arr`, an array of `T`s whose strides are whole elements (`well_behaved` or
/// `output` saw to it), in elements. The size comes from `T`, not the dtype: a dtype lookup and a
/// division per dim were 8% of a (1, 64) LayerNorm's time.
pub(crate) fn element_strides<T>(arr: &Bound<'_, PyUntypedArray>) -> DimVec<isize> {
    let itemsize = std::mem::size_of::<T>() as isize;
    arr.strides().iter().map(|s| s / itemsize).collect()
}

/// A per-channel parameter (weight, bias) of `channels` values, cast through the input dtype and
/// returned as f64 (they enter per-row scale/shift computed in f64).
pub(crate) fn channel_param<S: Storage>(
    py: Python<'_>,
    op: &str,
    name: &str,
    obj: Option<&Bound<'_, PyAny>>,
    channels: usize,
) -> Result<Option<Vec<f64>>> {
    let Some(arr) = param::<S>(py, op, name, obj, &[channels])? else {
        return Ok(None);
    };
    let values = param_slice(Some(&arr)).unwrap_or_default();
    Ok(Some(
        values
            .iter()
            .map(|v| rsnorm_core::Float::to_f64(*v))
            .collect(),
    ))
}

/// `arr` as core's read-only N-d view: where NumPy memory enters the core.
pub(crate) fn array_ref<'a, S: Storage>(arr: &'a Bound<'_, PyArrayDyn<S>>) -> ArrayRef<'a, S> {
    let untyped = arr.as_untyped();
    // SAFETY: NumPy's data pointer, shape and strides describe memory the array keeps alive
    // while `arr` is borrowed. Inputs are not written during the call: outputs are fresh or
    // the caller's `out`, which `unaliased` made an input's identical view or apart from it;
    // other Python threads must not write them meanwhile, as with any NumPy C routine.
    unsafe { ArrayRef::from_raw_parts(arr.data(), untyped.shape(), &element_strides::<S>(untyped)) }
}

/// `arr` as core's writeable N-d view (an output: `output` checked it writeable and free of
/// self-overlap).
pub(crate) fn array_mut<'a, S: Storage>(arr: &'a Bound<'_, PyArrayDyn<S>>) -> ArrayMut<'a, S> {
    let untyped = arr.as_untyped();
    // SAFETY: as in `array_ref`; besides, `output` refused a read-only or self-overlapping
    // array, and outputs of one call were checked apart (`no_overlap`).
    unsafe { ArrayMut::from_raw_parts(arr.data(), untyped.shape(), &element_strides::<S>(untyped)) }
}

/// `arr` seen as rows of its last `inner_ndim` dims.
pub(crate) fn rows_ref<'a, S: Storage>(
    arr: &'a Bound<'_, PyArrayDyn<S>>,
    inner_ndim: usize,
) -> RowsRef<'a, S> {
    let untyped = arr.as_untyped();
    let rows = Rows::split(untyped.shape(), &element_strides::<S>(untyped), inner_ndim);
    // SAFETY: as in `array_ref` (the same layout, split into rows without an N-d view first:
    // this is on every row op's per-call path).
    unsafe { RowsRef::from_raw_parts(arr.data(), rows) }
}

/// `arr` seen as writeable rows of its last `inner_ndim` dims.
pub(crate) fn rows_mut<'a, S: Storage>(
    arr: &'a Bound<'_, PyArrayDyn<S>>,
    inner_ndim: usize,
) -> RowsMut<'a, S> {
    let untyped = arr.as_untyped();
    let rows = Rows::split(untyped.shape(), &element_strides::<S>(untyped), inner_ndim);
    // SAFETY: as in `array_mut`.
    unsafe { RowsMut::from_raw_parts(arr.data(), rows) }
}

/// The output array: a fresh C-ordered one allocated by NumPy, or the caller's `out`, which
/// must have the right shape and dtype, be writeable, and not overlap itself.
pub(crate) fn output<'py, S: Storage>(
    py: Python<'py>,
    op: &str,
    name: &str,
    out: Option<&Bound<'py, PyAny>>,
    shape: &[usize],
) -> Result<Bound<'py, PyArrayDyn<S>>> {
    let Some(out) = out else {
        // SAFETY: every element is written by the kernel before the array is returned.
        return Ok(unsafe { PyArrayDyn::<S>::new(py, shape, false) });
    };
    let Ok(arr) = out.cast::<PyUntypedArray>() else {
        return Err(type_error(format!(
            "{op}: {name} must be a numpy.ndarray, got {}",
            out.get_type().name()?
        )));
    };
    if !arr.dtype().is_equiv_to(&numpy::dtype::<S>(py)) {
        return Err(value_error(format!(
            "{op}: {name} has dtype {}, expected {} (the dtype of x)",
            dtype_name(arr),
            S::NAME
        )));
    }
    if arr.shape() != shape {
        return Err(value_error(format!(
            "{op}: {name} has shape {}, expected {}",
            shape_str(arr.shape()),
            shape_str(shape)
        )));
    }
    if !is_writeable(arr) {
        return Err(value_error(format!("{op}: {name} is read-only")));
    }
    // The dtype is S's (checked above).
    let itemsize = std::mem::size_of::<S>() as isize;
    if !arr.is_aligned() || arr.strides().iter().any(|s| s % itemsize != 0) {
        return Err(value_error(format!(
            "{op}: {name} is not aligned to its dtype"
        )));
    }
    let typed = arr.cast::<PyArrayDyn<S>>()?.clone();
    // A C-contiguous array reaches each element once: the general test only for the others.
    if !arr.is_c_contiguous()
        && rsnorm_core::layout::has_internal_overlap(arr.shape(), &element_strides::<S>(arr))
    {
        return Err(value_error(format!(
            "{op}: {name} has overlapping elements (a zero or broadcast stride)"
        )));
    }
    Ok(typed)
}

/// Whether two arrays' byte ranges intersect (empty arrays overlap nothing).
pub(crate) fn memory_overlaps<S: Storage>(
    a: &Bound<'_, PyArrayDyn<S>>,
    b: &Bound<'_, PyArrayDyn<S>>,
) -> bool {
    ranges_meet(a.as_untyped(), b.as_untyped())
}

fn ranges_meet(a: &Bound<'_, PyUntypedArray>, b: &Bound<'_, PyUntypedArray>) -> bool {
    match (byte_range(a), byte_range(b)) {
        (Some((alo, ahi)), Some((blo, bhi))) => alo <= bhi && blo <= ahi,
        _ => false,
    }
}

/// Byte range `[lo, hi]` an array of any dtype and strides touches (`None` when empty): the
/// layout's extent taken with byte strides.
fn byte_range(arr: &Bound<'_, PyUntypedArray>) -> Option<(usize, usize)> {
    let (lo, hi) = rsnorm_core::layout::extent(arr.shape(), arr.strides());
    (hi >= lo).then(|| {
        // SAFETY: only the data pointer is read, which is the same whatever the element type.
        let base = unsafe { arr.cast_unchecked::<PyArrayDyn<u8>>() }.data() as usize;
        (
            base.wrapping_add_signed(lo),
            base.wrapping_add_signed(hi) + arr.dtype().itemsize() - 1,
        )
    })
}

/// An input that overlaps an output in any way other than being the very same view (true
/// in-place use, handled row by row by the kernels) is copied first, so results never depend on
/// the order rows are written in.
pub(crate) fn unaliased<'py, S: Storage>(
    input: Bound<'py, PyArrayDyn<S>>,
    outputs: &[&Bound<'py, PyArrayDyn<S>>],
) -> Result<Bound<'py, PyArrayDyn<S>>> {
    for out in outputs {
        if !memory_overlaps(&input, out) {
            continue;
        }
        let same_view = input.data() == out.data()
            && input.as_untyped().shape() == out.as_untyped().shape()
            && input.as_untyped().strides() == out.as_untyped().strides();
        if !same_view {
            return Ok(input.call_method0("copy")?.cast_into()?);
        }
    }
    Ok(input)
}

/// A second input that must have x's dtype and shape exactly (a residual, a gradient, q).
pub(crate) fn same_as_x<'py, S: Storage>(
    op: &str,
    name: &str,
    obj: &Bound<'py, PyAny>,
    shape: &[usize],
) -> Result<Bound<'py, PyArrayDyn<S>>> {
    let arr = with_float_array!(float_array(op, name, obj)?, a => a.into_any());
    let Ok(typed) = arr.cast_into::<PyArrayDyn<S>>() else {
        return Err(value_error(format!(
            "{op}: {name} must have the dtype of x ({})",
            S::NAME
        )));
    };
    if typed.shape() != shape {
        return Err(value_error(format!(
            "{op}: {name} has shape {}, x has {}",
            shape_str(typed.shape()),
            shape_str(shape)
        )));
    }
    Ok(typed)
}

/// f64 results as an array of dtype `S` and the given shape (a 0-d array for `&[]`).
pub(crate) fn f64_array<'py, S: Storage>(
    py: Python<'py>,
    values: &[f64],
    shape: &[usize],
) -> Result<Bound<'py, PyAny>> {
    let data: Vec<S> = values
        .iter()
        .map(|&v| S::store(<S::Compute as rsnorm_core::Float>::from_f64(v)))
        .collect();
    Ok(numpy::PyArray::from_vec(py, data)
        .reshape(shape)?
        .into_any())
}

/// As [`f64_array`], the dtype taken from `like` (for use inside a dtype dispatch).
pub(crate) fn f64_array_like<'py, S: Storage>(
    py: Python<'py>,
    _like: &Bound<'py, PyArrayDyn<S>>,
    values: &[f64],
    shape: &[usize],
) -> Result<Bound<'py, PyAny>> {
    f64_array::<S>(py, values, shape)
}

/// Resolves an axis against `ndim` (negative counts from the end).
pub(crate) fn resolve_axis(op: &str, axis: i64, ndim: usize) -> Result<usize> {
    Ok(rsnorm_core::error::resolve_axis(op, axis, ndim)?)
}

/// Whether two arrays share memory: their byte ranges intersect, and (for interleaved views,
/// whose ranges can intersect without a common element) NumPy's exact test agrees.
pub(crate) fn shares_memory(
    a: &Bound<'_, PyUntypedArray>,
    b: &Bound<'_, PyUntypedArray>,
) -> Result<bool> {
    if !ranges_meet(a, b) {
        return Ok(false);
    }
    // Bounded work: an undecided case counts as sharing.
    let kwargs = PyDict::new(a.py());
    kwargs.set_item("max_work", 1 << 16)?;
    match numpy(a.py())?.call_method("shares_memory", (a, b), Some(&kwargs)) {
        Ok(shared) => Ok(shared.is_truthy()?),
        Err(_) => Ok(true),
    }
}

/// A parameter that shares memory with an output is copied first: the kernels read parameters
/// for every row, and rows written earlier would change them for the rows after.
pub(crate) fn detached<'py, T: NpElement>(
    param: Option<Bound<'py, PyArrayDyn<T>>>,
    outputs: &[&Bound<'py, PyUntypedArray>],
) -> Result<Option<Bound<'py, PyArrayDyn<T>>>> {
    let Some(param) = param else { return Ok(None) };
    for out in outputs {
        if shares_memory(param.as_untyped(), out)? {
            return Ok(Some(param.call_method0("copy")?.cast_into()?));
        }
    }
    Ok(Some(param))
}

/// Arrays the call writes in place (`written`) may share no memory with any other argument:
/// `ValueError` naming both. Absent arguments are skipped.
pub(crate) fn check_disjoint(
    op: &str,
    written: &[(&str, Option<&Bound<'_, PyUntypedArray>>)],
    others: &[(&str, Option<&Bound<'_, PyUntypedArray>>)],
) -> Result<()> {
    for (i, &(name, arr)) in written.iter().enumerate() {
        let Some(arr) = arr else { continue };
        for &(other_name, other) in written[i + 1..].iter().chain(others) {
            let Some(other) = other else { continue };
            if shares_memory(arr, other)? {
                return Err(value_error(format!(
                    "{op}: {name} and {other_name} share memory; {name} is written in place, so \
                     pass arrays that do not overlap"
                )));
            }
        }
    }
    Ok(())
}
