//! The views through which the core reads and writes its callers' arrays: N-d arrays
//! ([`ArrayRef`], [`ArrayMut`]) and the rows made of them ([`RowsRef`], [`RowsMut`]), each
//! borrowing its memory for `'a` as a slice would.
//!
//! A view's layout (shape and strides, any sign) always lies inside the memory it borrows; that
//! is its invariant. Safe code makes views only from slices, or from other views by reordering
//! dims, so the invariant holds there by construction; the `unsafe` constructors are for memory
//! the borrow checker cannot see (NumPy's), and their callers promise it.

use crate::element::Wide;
use crate::layout::Rows;
use std::marker::PhantomData;

/// A read-only strided array seen as rows.
#[derive(Clone, Debug)]
pub struct RowsRef<'a, S> {
    ptr: *const S,
    rows: Rows,
    _borrow: PhantomData<&'a [S]>,
}

/// A writeable strided array seen as rows.
#[derive(Debug)]
pub struct RowsMut<'a, S> {
    ptr: *mut S,
    rows: Rows,
    _borrow: PhantomData<&'a mut [S]>,
}

/// A read-only strided N-d array as NumPy hands it over (element strides), from which an op makes
/// the row views its path needs.
#[derive(Clone, Debug)]
pub struct ArrayRef<'a, S> {
    ptr: *const S,
    shape: Vec<usize>,
    strides: Vec<isize>,
    _borrow: PhantomData<&'a [S]>,
}

/// A writeable strided N-d array (see [`ArrayRef`]).
#[derive(Debug)]
pub struct ArrayMut<'a, S> {
    ptr: *mut S,
    shape: Vec<usize>,
    strides: Vec<isize>,
    _borrow: PhantomData<&'a mut [S]>,
}

// SAFETY: a view is a borrow of its memory, like `&'a [S]` (Send and Sync when S is Sync) or
// `&'a mut [S]` (when S is Send). A writeable view shared between threads is written only
// through the row drivers, which give each row to one task (`super::map_rows`).
unsafe impl<S: Sync> Send for ArrayRef<'_, S> {}
unsafe impl<S: Sync> Sync for ArrayRef<'_, S> {}
unsafe impl<S: Send> Send for ArrayMut<'_, S> {}
unsafe impl<S: Send> Sync for ArrayMut<'_, S> {}
unsafe impl<S: Sync> Send for RowsRef<'_, S> {}
unsafe impl<S: Sync> Sync for RowsRef<'_, S> {}
unsafe impl<S: Send> Send for RowsMut<'_, S> {}
unsafe impl<S: Send> Sync for RowsMut<'_, S> {}

/// The read accessors every view has: its layout and its first element's address (for identity
/// and overlap tests; elements are reached through the row drivers).
macro_rules! view_accessors {
    ($view:ident { $($field:ident: $ty:ty),* }) => {
        impl<S> $view<'_, S> {
            $(
                pub fn $field(&self) -> &$ty {
                    &self.$field
                }
            )*

            pub fn as_ptr(&self) -> *const S {
                self.ptr
            }
        }
    };
}

view_accessors!(ArrayRef {
    shape: [usize],
    strides: [isize]
});
view_accessors!(ArrayMut {
    shape: [usize],
    strides: [isize]
});
view_accessors!(RowsRef { rows: Rows });
view_accessors!(RowsMut { rows: Rows });

/// The bytes a row view's elements take (its rows' elements, not the span between them).
macro_rules! rows_bytes {
    ($($view:ident),*) => {
        $(
            impl<S> $view<'_, S> {
                pub fn bytes(&self) -> usize {
                    self.rows.n_elements() * std::mem::size_of::<S>()
                }
            }
        )*
    };
}

rows_bytes!(RowsRef, RowsMut);

/// Element strides of a C-contiguous array of `shape`.
fn c_strides(shape: &[usize]) -> Vec<isize> {
    let mut strides = vec![1isize; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        strides[d] = strides[d + 1] * shape[d + 1] as isize;
    }
    strides
}

/// Shape and strides with the `leading` dims first (in that order), the others after in order.
fn with_leading(shape: &[usize], strides: &[isize], leading: &[usize]) -> (Vec<usize>, Vec<isize>) {
    let rest = (0..shape.len()).filter(|d| !leading.contains(d));
    let order = leading.iter().copied().chain(rest);
    order.map(|d| (shape[d], strides[d])).unzip()
}

/// Rows along `axis`: that dim innermost, the others in order. A 0-d array is one row of one.
fn axis_last(shape: &[usize], strides: &[isize], axis: usize) -> Rows {
    if shape.is_empty() {
        return Rows::contiguous(1, 1);
    }
    let others: Vec<usize> = (0..shape.len()).filter(|&d| d != axis).collect();
    let (shape, strides) = with_leading(shape, strides, &others);
    Rows::split(&shape, &strides, 1)
}

/// `shape` without `axis`: the shape of a reduction's result.
pub fn without_axis(shape: &[usize], axis: usize) -> Vec<usize> {
    let kept = shape.iter().enumerate().filter(|&(d, _)| d != axis);
    kept.map(|(_, &n)| n).collect()
}

/// One value per row of a reduction along an axis, and the shape they take (the input's without
/// that axis, or `[]` for a single value).
#[derive(Clone, Debug, PartialEq)]
pub struct Reduced {
    pub values: Vec<f64>,
    pub shape: Vec<usize>,
}

/// Panics unless `leading` names distinct dims of an `ndim`-d array: a reordering may not repeat
/// a dim (the view would then overlap itself).
fn check_leading(leading: &[usize], ndim: usize) {
    for (i, &d) in leading.iter().enumerate() {
        assert!(
            d < ndim && !leading[..i].contains(&d),
            "bad dim order {leading:?} for {ndim} dims"
        );
    }
}

/// Panics unless `axis` is a dim of an `ndim`-d array (0-d arrays take axis 0).
fn check_axis(axis: usize, ndim: usize) {
    assert!(
        axis < ndim.max(1),
        "axis {axis} out of range for {ndim} dims"
    );
}

impl<'a, S> ArrayRef<'a, S> {
    /// A view of the array NumPy (or any caller) describes by `ptr`, `shape` and element `strides`.
    ///
    /// # Safety
    /// Every element the layout reaches is valid to read for `'a`, and nothing writes it during
    /// `'a` except as the identical view of a [`RowsMut`] passed to the same call (in place).
    pub unsafe fn from_raw_parts(ptr: *const S, shape: &[usize], strides: &[isize]) -> Self {
        assert_eq!(shape.len(), strides.len(), "one stride per dim");
        ArrayRef {
            ptr,
            shape: shape.to_vec(),
            strides: strides.to_vec(),
            _borrow: PhantomData,
        }
    }

    /// A C-contiguous array of `shape` over a slice of exactly that many elements.
    pub fn from_slice(data: &'a [S], shape: &[usize]) -> Self {
        assert_eq!(
            data.len(),
            shape.iter().product::<usize>(),
            "slice and shape disagree"
        );
        // SAFETY: the C-contiguous layout of `shape` covers exactly the borrowed slice.
        unsafe { Self::from_raw_parts(data.as_ptr(), shape, &c_strides(shape)) }
    }

    /// The same array with its dims reordered: `leading` first (in that order), the others after.
    #[must_use]
    pub fn with_leading(&self, leading: &[usize]) -> ArrayRef<'a, S> {
        check_leading(leading, self.shape.len());
        let (shape, strides) = with_leading(&self.shape, &self.strides, leading);
        ArrayRef {
            ptr: self.ptr,
            shape,
            strides,
            _borrow: PhantomData,
        }
    }

    /// The array as rows along `axis`: that dim innermost, the others in order.
    pub fn rows_along(&self, axis: usize) -> RowsRef<'a, S> {
        check_axis(axis, self.shape.len());
        RowsRef {
            ptr: self.ptr,
            rows: axis_last(&self.shape, &self.strides, axis),
            _borrow: PhantomData,
        }
    }

    /// The same elements read as [`Wide`] (f64 compute).
    pub fn widened(&self) -> ArrayRef<'a, Wide<S>> {
        ArrayRef {
            // `Wide` is `repr(transparent)`: the same layout, element for element.
            ptr: self.ptr.cast(),
            shape: self.shape.clone(),
            strides: self.strides.clone(),
            _borrow: PhantomData,
        }
    }

    /// The array as rows of its last `inner_ndim` dims.
    pub fn rows(&self, inner_ndim: usize) -> RowsRef<'a, S> {
        RowsRef {
            ptr: self.ptr,
            rows: Rows::split(&self.shape, &self.strides, inner_ndim),
            _borrow: PhantomData,
        }
    }
}

impl<'a, S> ArrayMut<'a, S> {
    /// A writeable view of the array described by `ptr`, `shape` and element `strides`.
    ///
    /// # Safety
    /// Every element the layout reaches is valid to read and write for `'a`; no two indices
    /// reach the same element; nothing else reads or writes it during `'a`, except the identical
    /// view as an input of the same call (in place).
    pub unsafe fn from_raw_parts(ptr: *mut S, shape: &[usize], strides: &[isize]) -> Self {
        assert_eq!(shape.len(), strides.len(), "one stride per dim");
        ArrayMut {
            ptr,
            shape: shape.to_vec(),
            strides: strides.to_vec(),
            _borrow: PhantomData,
        }
    }

    /// A C-contiguous array of `shape` over a mutable slice of exactly that many elements.
    pub fn from_slice(data: &'a mut [S], shape: &[usize]) -> Self {
        assert_eq!(
            data.len(),
            shape.iter().product::<usize>(),
            "slice and shape disagree"
        );
        // SAFETY: the C-contiguous layout of `shape` covers exactly the borrowed slice.
        unsafe { Self::from_raw_parts(data.as_mut_ptr(), shape, &c_strides(shape)) }
    }

    /// The same array with its dims reordered (see [`ArrayRef::with_leading`]), in place of this one.
    #[must_use]
    pub fn with_leading(self, leading: &[usize]) -> ArrayMut<'a, S> {
        check_leading(leading, self.shape.len());
        let (shape, strides) = with_leading(&self.shape, &self.strides, leading);
        ArrayMut {
            ptr: self.ptr,
            shape,
            strides,
            _borrow: PhantomData,
        }
    }

    /// The array as rows along `axis` (see [`ArrayRef::rows_along`]), borrowing this one.
    pub fn rows_along(&self, axis: usize) -> RowsMut<'_, S> {
        check_axis(axis, self.shape.len());
        RowsMut {
            ptr: self.ptr,
            rows: axis_last(&self.shape, &self.strides, axis),
            _borrow: PhantomData,
        }
    }

    /// The array as rows of its last `inner_ndim` dims, in place of this one.
    pub fn into_rows(self, inner_ndim: usize) -> RowsMut<'a, S> {
        RowsMut {
            ptr: self.ptr,
            rows: Rows::split(&self.shape, &self.strides, inner_ndim),
            _borrow: PhantomData,
        }
    }

    /// The array as rows of its last `inner_ndim` dims, borrowing this one.
    pub fn rows(&self, inner_ndim: usize) -> RowsMut<'_, S> {
        RowsMut {
            ptr: self.ptr,
            rows: Rows::split(&self.shape, &self.strides, inner_ndim),
            _borrow: PhantomData,
        }
    }
}

impl<'a, S> RowsRef<'a, S> {
    /// Rows of `ptr` laid out as `rows`.
    ///
    /// # Safety
    /// As [`ArrayRef::from_raw_parts`].
    pub unsafe fn from_raw_parts(ptr: *const S, rows: Rows) -> Self {
        RowsRef {
            ptr,
            rows,
            _borrow: PhantomData,
        }
    }

    /// C-contiguous rows over a slice.
    pub fn from_slice(data: &'a [S], row_len: usize) -> Self {
        let n_rows = data.len().checked_div(row_len).unwrap_or(0);
        // SAFETY: `n_rows` whole rows of `row_len` lie inside the borrowed slice.
        unsafe { Self::from_raw_parts(data.as_ptr(), Rows::contiguous(n_rows, row_len)) }
    }

    /// The same memory as rows of another layout.
    ///
    /// # Safety
    /// `rows` reaches only elements this view reaches.
    pub(crate) unsafe fn relayout(&self, rows: Rows) -> RowsRef<'a, S> {
        RowsRef {
            ptr: self.ptr,
            rows,
            _borrow: PhantomData,
        }
    }
}

impl<'a, S> RowsMut<'a, S> {
    /// Writeable rows of `ptr` laid out as `rows`.
    ///
    /// # Safety
    /// As [`ArrayMut::from_raw_parts`].
    pub unsafe fn from_raw_parts(ptr: *mut S, rows: Rows) -> Self {
        RowsMut {
            ptr,
            rows,
            _borrow: PhantomData,
        }
    }

    /// C-contiguous rows over a mutable slice.
    pub fn from_slice(data: &'a mut [S], row_len: usize) -> Self {
        let n_rows = data.len().checked_div(row_len).unwrap_or(0);
        // SAFETY: `n_rows` whole rows of `row_len` lie inside the exclusively borrowed slice.
        unsafe { Self::from_raw_parts(data.as_mut_ptr(), Rows::contiguous(n_rows, row_len)) }
    }

    pub(crate) fn as_mut_ptr(&self) -> *mut S {
        self.ptr
    }

    /// This view as an input, for a pass that reads what an earlier pass wrote: the identical
    /// view, which the row drivers treat as in place.
    pub fn as_input(&self) -> RowsRef<'_, S> {
        RowsRef {
            ptr: self.ptr,
            rows: self.rows.clone(),
            _borrow: PhantomData,
        }
    }

    /// The same memory as rows of another layout, borrowing this view.
    ///
    /// # Safety
    /// `rows` reaches only elements this view reaches, no element twice.
    pub(crate) unsafe fn relayout(&self, rows: Rows) -> RowsMut<'_, S> {
        RowsMut {
            ptr: self.ptr,
            rows,
            _borrow: PhantomData,
        }
    }
}

/// Memory a kernel may prefetch while it works on a row: the next row's input, so that its load
/// from DRAM overlaps this row's arithmetic instead of following it, and possibly other rows of
/// the same length (a second input, the outputs) touched at the same offsets.
#[derive(Clone, Copy, Debug)]
pub struct Ahead {
    /// The regions; unused ones have no bytes. The first sets the pace ([`Ahead::bytes`]).
    ptr: [*const u8; Ahead::REGIONS],
    bytes: [usize; Ahead::REGIONS],
}

impl Ahead {
    /// Regions one target holds: a fused-add norm's x, residual, y and sum.
    const REGIONS: usize = 4;

    pub const NONE: Ahead = Ahead {
        ptr: [std::ptr::null(); Ahead::REGIONS],
        bytes: [0; Ahead::REGIONS],
    };

    /// This target and `other`'s first region (a row of the same length) touched together,
    /// offset for offset; `other` is dropped when every region is taken.
    #[inline(always)]
    #[must_use]
    pub fn and(mut self, other: Ahead) -> Ahead {
        if let Some(free) = self.bytes.iter().position(|&b| b == 0) {
            self.ptr[free] = other.ptr[0];
            self.bytes[free] = other.bytes[0];
        }
        self
    }

    /// Bytes per prefetch: one cache line.
    pub const LINE: usize = 64;

    /// Rows shorter than this are not prefetch targets: the hardware prefetcher follows
    /// such rows anyway, and the prefetch's setup cost more than it saved (BatchNorm eval on
    /// 7×7 rows 15% faster without it, LayerNorm on 49-value rows 6%).
    pub const MIN_ROW_BYTES: usize = 1024;

    /// Outputs below this are not prefetched by [`RowsMut::ahead_beyond_cache`]: the prefetches
    /// cost the norms more than they saved (LayerNorm with the next row's output prefetched:
    /// (1024, 4096) 0.86–0.93×, (2048, 4096) 1.04–1.07×, (4096, 4096) 1.24–1.37×). A
    /// log_softmax row, whose write pass follows the exponentials, gains at any size
    /// ((4096, 1024): 0.78× without).
    pub const MIN_OUTPUT_BYTES: usize = 32 << 20;

    /// The `len` values from `ptr` (any address: prefetches never fault).
    #[inline(always)]
    pub fn of<T>(ptr: *const T, len: usize) -> Ahead {
        let mut target = Ahead::NONE;
        target.ptr[0] = ptr.cast();
        target.bytes[0] = len * std::mem::size_of::<T>();
        target
    }

    /// Prefetches the line at `offset` bytes (ignored past the end). Prefetches never fault.
    #[inline(always)]
    pub fn touch(self, offset: usize) {
        for (&ptr, &bytes) in self.ptr.iter().zip(&self.bytes) {
            Self::fetch(ptr, bytes, offset);
        }
    }

    /// Prefetches the line at `offset` of the `bytes` from `ptr`, if within them. (A write
    /// prefetch, `prefetchw`, measured 0.9–1.0× this read prefetch for outputs.)
    #[inline(always)]
    fn fetch(ptr: *const u8, bytes: usize, offset: usize) {
        if offset < bytes {
            crate::simd::prefetch(ptr.wrapping_add(offset));
        }
    }

    /// Prefetches the lines of `len` bytes from `offset`.
    #[inline(always)]
    pub fn touch_span(self, offset: usize, len: usize) {
        let mut at = offset;
        while at < offset + len {
            self.touch(at);
            at += Self::LINE;
        }
    }

    pub fn bytes(self) -> usize {
        self.bytes[0]
    }

    /// The first `limit` bytes of this target.
    #[inline(always)]
    #[must_use]
    pub fn capped(self, limit: usize) -> Ahead {
        Ahead {
            bytes: self.bytes.map(|b| b.min(limit)),
            ..self
        }
    }
}

/// Row `row` of `rows` from `ptr` as prefetch target: nothing when out of range, not a
/// contiguous run, or shorter than [`Ahead::MIN_ROW_BYTES`].
#[inline(always)]
fn row_target<S>(ptr: *const S, rows: &Rows, row: usize) -> Ahead {
    // The length first: a short row, the common case here, needs no look at the strides.
    if row >= rows.n_rows()
        || rows.row_len() * std::mem::size_of::<S>() < Ahead::MIN_ROW_BYTES
        || rows.inner().single_stride() != Some(1)
    {
        return Ahead::NONE;
    }
    Ahead::of(ptr.wrapping_offset(rows.row_offset(row)), rows.row_len())
}

impl<S> RowsMut<'_, S> {
    /// The row after `row` as prefetch target (see [`RowsRef::prefetch_target`]): its lines
    /// fetched before the row is written spare the stores their wait for them.
    #[inline(always)]
    pub fn ahead(&self, row: usize) -> Ahead {
        row_target(self.ptr.cast_const(), &self.rows, row + 1)
    }

    /// [`RowsMut::ahead`] when the output spans at least [`Ahead::MIN_OUTPUT_BYTES`], for
    /// kernels whose stores follow the row's loads closely (the norms' one write pass).
    #[inline(always)]
    pub fn ahead_beyond_cache(&self, row: usize) -> Ahead {
        if self.bytes() < Ahead::MIN_OUTPUT_BYTES {
            return Ahead::NONE;
        }
        self.ahead(row)
    }
}

impl<S> RowsRef<'_, S> {
    /// The row after `row` as prefetch target (see [`RowsRef::prefetch_target`]).
    #[inline(always)]
    pub fn ahead(&self, row: usize) -> Ahead {
        self.prefetch_target(row + 1)
    }

    /// Row `row` as prefetch target: nothing when out of range, not a contiguous run, or
    /// shorter than [`Ahead::MIN_ROW_BYTES`].
    #[inline(always)]
    pub fn prefetch_target(&self, row: usize) -> Ahead {
        row_target(self.ptr, &self.rows, row)
    }
}
