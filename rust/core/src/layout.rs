//! Strided memory described as rows: the outer dims index rows, the inner (normalized) dims
//! are one row. Strides are in elements and may be negative or zero (broadcast inputs).

/// Dims held inline up to this many (more spill to the heap): views are built on every call,
/// and their vectors' allocations and frees were 30% of a (1, 64) LayerNorm's time.
const INLINE_DIMS: usize = 6;

/// A shape or strides: a vector that stays inline for up to [`INLINE_DIMS`] dims.
pub type DimVec<T> = smallvec::SmallVec<[T; INLINE_DIMS]>;

/// Shape and element strides of some dims of an array.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Dims {
    pub shape: DimVec<usize>,
    pub strides: DimVec<isize>,
}

impl Dims {
    /// The dims of `shape`/`strides`, simplified: length-1 dims dropped and neighbours that step
    /// through memory as one dim merged, so a C-contiguous block becomes a single dim of stride 1
    /// and the fast paths see it as such (an empty array: one dim of length 0). Iteration order
    /// (C order over the original dims) is unchanged.
    pub fn new(shape: &[usize], strides: &[isize]) -> Self {
        assert_eq!(
            shape.len(),
            strides.len(),
            "shape and strides differ in length"
        );
        // Built by pushes, not copied and compacted: on every call's path (each view, each
        // overlap check), where the copy and its truncation cost a (1, 64) LayerNorm ~10%.
        let mut dims = Dims::default();
        if shape.contains(&0) {
            dims.shape.push(0);
            dims.strides.push(1);
            return dims;
        }
        for (&len, &stride) in shape.iter().zip(strides) {
            if len == 1 {
                continue;
            }
            match (dims.shape.last_mut(), dims.strides.last_mut()) {
                (Some(outer_len), Some(outer_stride)) if *outer_stride == stride * len as isize => {
                    *outer_len *= len;
                    *outer_stride = stride;
                }
                _ => {
                    dims.shape.push(len);
                    dims.strides.push(stride);
                }
            }
        }
        dims
    }

    /// C-order contiguous dims of this shape.
    pub fn contiguous(shape: &[usize]) -> Self {
        let mut strides: DimVec<isize> = smallvec::smallvec![0; shape.len()];
        let mut step = 1isize;
        for (stride, &len) in strides.iter_mut().zip(shape).rev() {
            *stride = step;
            step *= len as isize;
        }
        Dims::new(shape, &strides)
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The one stride when these dims are a single arithmetic progression in memory
    /// (after simplification); `Some(1)` means contiguous. Inlined: short rows ask it once a row
    /// (out of line it was 3% of GroupNorm on 7×7 rows).
    #[inline(always)]
    pub fn single_stride(&self) -> Option<isize> {
        match self.strides.as_slice() {
            [] => Some(1),
            [s] => Some(*s),
            _ => None,
        }
    }

    /// Offset (in elements) of the element with C-order linear index `linear`.
    #[inline(always)]
    pub fn offset(&self, mut linear: usize) -> isize {
        // One dim (any C-contiguous block, merged by [`Dims::new`]): no division, which cost
        // more than a short row's arithmetic.
        if let [stride] = self.strides.as_slice() {
            return linear as isize * stride;
        }
        let mut off = 0isize;
        for (&len, &stride) in self.shape.iter().zip(&self.strides).rev() {
            off += (linear % len) as isize * stride;
            linear /= len;
        }
        off
    }

    /// Calls `f(k, offset)` for every element in C order, without division per element.
    #[inline(always)]
    pub fn for_each_offset(&self, mut f: impl FnMut(usize, isize)) {
        if let Some(stride) = self.single_stride() {
            for k in 0..self.len() {
                f(k, k as isize * stride);
            }
            return;
        }
        let ndim = self.shape.len();
        let mut index: DimVec<usize> = smallvec::smallvec![0; ndim];
        let mut off = 0isize;
        for k in 0..self.len() {
            f(k, off);
            // Odometer step over the dims, innermost first.
            for d in (0..ndim).rev() {
                index[d] += 1;
                off += self.strides[d];
                if index[d] < self.shape[d] {
                    break;
                }
                off -= self.strides[d] * self.shape[d] as isize;
                index[d] = 0;
            }
        }
    }

    /// Lowest and highest element offsets touched, relative to the base pointer.
    pub fn extent(&self) -> (isize, isize) {
        extent(&self.shape, &self.strides)
    }

    /// True when two distinct indices can land on the same element (a zero or overlapping
    /// stride). Writing such an array from several threads would race, so outputs must not.
    pub fn has_internal_overlap(&self) -> bool {
        overlap_within(self.shape.iter().zip(&self.strides))
    }
}

/// Lowest and highest offsets (in the strides' unit) that `shape`/`strides` touch from the base,
/// `(0, -1)` when empty; without building [`Dims`], whose simplification does not change it.
pub fn extent(shape: &[usize], strides: &[isize]) -> (isize, isize) {
    if shape.contains(&0) {
        return (0, -1);
    }
    let (mut lo, mut hi) = (0isize, 0isize);
    for (&len, &stride) in shape.iter().zip(strides) {
        let span = stride * (len as isize - 1);
        if span < 0 {
            lo += span;
        } else {
            hi += span;
        }
    }
    (lo, hi)
}

/// [`Dims::has_internal_overlap`] of `shape`/`strides` as given, without building [`Dims`].
pub fn has_internal_overlap(shape: &[usize], strides: &[isize]) -> bool {
    overlap_within(shape.iter().zip(strides))
}

/// Whether (len, stride) dims can reach one element twice. A sufficient test: sorted by stride,
/// each must step past everything the smaller dims span. Length-1 dims reach one offset whatever
/// their stride and are skipped; an empty array overlaps nothing.
fn overlap_within<'a>(dims: impl Iterator<Item = (&'a usize, &'a isize)> + Clone) -> bool {
    if dims.clone().any(|(&len, _)| len == 0) {
        return false;
    }
    let mut sorted: smallvec::SmallVec<[(usize, usize); 2 * INLINE_DIMS]> = dims
        .filter(|(&len, _)| len != 1)
        .map(|(&len, &stride)| (stride.unsigned_abs(), len))
        .collect();
    sorted.sort_unstable();
    let mut span = 0usize;
    for (stride, len) in sorted {
        if stride <= span {
            return true;
        }
        span += stride * (len - 1);
    }
    false
}

/// An array seen as `n_rows` rows of `row_len` elements: the last `inner_ndim` dims form a row.
/// Its counts and extent are computed once, when it is built: the per-call checks (row counts,
/// overlaps, the store mode) read them several times a call, and recomputing them from the dims
/// was a tenth of a (1, 64) LayerNorm's time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rows {
    outer: Dims,
    inner: Dims,
    /// Number of rows.
    count: usize,
    row_len: usize,
    extent: (isize, isize),
}

impl Rows {
    fn from_dims(outer: Dims, inner: Dims) -> Self {
        let (n_rows, row_len) = (outer.len(), inner.len());
        let extent = if n_rows == 0 || row_len == 0 {
            (0, -1)
        } else {
            let (olo, ohi) = outer.extent();
            let (ilo, ihi) = inner.extent();
            (olo + ilo, ohi + ihi)
        };
        Rows {
            outer,
            inner,
            count: n_rows,
            row_len,
            extent,
        }
    }

    /// Splits `shape`/`strides` (element strides) so the last `inner_ndim` dims form a row.
    pub fn split(shape: &[usize], strides: &[isize], inner_ndim: usize) -> Self {
        assert!(inner_ndim <= shape.len(), "more row dims than array dims");
        let cut = shape.len() - inner_ndim;
        Rows::from_dims(
            Dims::new(&shape[..cut], &strides[..cut]),
            Dims::new(&shape[cut..], &strides[cut..]),
        )
    }

    /// C-contiguous rows.
    pub fn contiguous(n_rows: usize, row_len: usize) -> Self {
        Rows::from_dims(
            Dims::contiguous(&[n_rows]).scaled(row_len),
            Dims::contiguous(&[row_len]),
        )
    }

    /// The dims that index rows (simplified, as [`Dims::new`] makes them).
    #[inline(always)]
    pub fn outer(&self) -> &Dims {
        &self.outer
    }

    /// The dims of one row (simplified).
    #[inline(always)]
    pub fn inner(&self) -> &Dims {
        &self.inner
    }

    #[inline(always)]
    pub fn n_rows(&self) -> usize {
        self.count
    }

    #[inline(always)]
    pub fn row_len(&self) -> usize {
        self.row_len
    }

    /// Elements of all rows together.
    #[inline(always)]
    pub fn n_elements(&self) -> usize {
        self.count * self.row_len
    }

    /// Offset of the first element of row `row`.
    #[inline(always)]
    pub fn row_offset(&self, row: usize) -> isize {
        self.outer.offset(row)
    }

    /// Lowest and highest element offsets touched by the whole view (`(0, -1)` when empty).
    #[inline(always)]
    pub fn extent(&self) -> (isize, isize) {
        self.extent
    }

    pub fn has_internal_overlap(&self) -> bool {
        let outer = self.outer.shape.iter().zip(&self.outer.strides);
        overlap_within(outer.chain(self.inner.shape.iter().zip(&self.inner.strides)))
    }

    /// The total length when all rows together are one run of unit stride (a C-contiguous
    /// block; 0 when empty), else None.
    pub fn contiguous_len(&self) -> Option<usize> {
        if self.n_rows() == 0 || self.row_len() == 0 {
            return Some(0);
        }
        let inner = self.inner.shape.iter().zip(&self.inner.strides).rev();
        let outer = self.outer.shape.iter().zip(&self.outer.strides).rev();
        let mut expected = 1usize;
        for (&len, &stride) in inner.chain(outer) {
            // A length-1 dim steps nowhere, whatever its stride.
            if len != 1 && stride != expected as isize {
                return None;
            }
            expected *= len;
        }
        Some(expected)
    }
}

impl Dims {
    fn scaled(mut self, factor: usize) -> Self {
        for s in &mut self.strides {
            *s *= factor as isize;
        }
        self
    }
}

/// An operand of an elementwise op over positions (models, merged statistics): a value per
/// position, or one value for every position (length 1), as f64 or as i64 counts.
#[derive(Clone, Copy, Debug)]
pub enum Values<'a> {
    F64(&'a [f64]),
    I64(&'a [i64]),
}

impl Values<'_> {
    pub fn len(&self) -> usize {
        match self {
            Values::F64(v) => v.len(),
            Values::I64(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The values of positions `start..start + buf.len()` as f64 (the one value, repeated).
    #[inline(always)]
    pub(crate) fn fill(&self, start: usize, buf: &mut [f64]) {
        match *self {
            Values::F64([one]) => buf.fill(*one),
            Values::I64([one]) => buf.fill(*one as f64),
            Values::F64(v) => buf.copy_from_slice(&v[start..start + buf.len()]),
            Values::I64(v) => {
                let len = buf.len();
                for (b, &x) in buf.iter_mut().zip(&v[start..start + len]) {
                    *b = x as f64;
                }
            }
        }
    }

    /// Position `i`'s value as Python prints it (integers as integers), for messages.
    pub(crate) fn show(&self, i: usize) -> String {
        let i = if self.len() == 1 { 0 } else { i };
        match *self {
            Values::I64(v) => v[i].to_string(),
            Values::F64(v) => {
                let x = v[i];
                match x {
                    _ if x.is_nan() => "nan".into(),
                    f64::INFINITY => "inf".into(),
                    f64::NEG_INFINITY => "-inf".into(),
                    _ => format!("{x:?}"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c_contiguous_block_merges_to_one_unit_stride() {
        let d = Dims::new(&[4, 6, 33], &[198, 33, 1]);
        assert_eq!(d.single_stride(), Some(1));
        assert_eq!(d.len(), 792);
    }

    #[test]
    fn transposed_view_keeps_two_dims_and_offsets_follow_c_order() {
        // x.T of a (3, 4) C array: shape (4, 3), strides (1, 4).
        let d = Dims::new(&[4, 3], &[1, 4]);
        assert_eq!(d.single_stride(), None);
        let mut seen = vec![];
        d.for_each_offset(|k, off| {
            assert_eq!(off, d.offset(k));
            seen.push(off);
        });
        assert_eq!(seen, vec![0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]);
    }

    #[test]
    fn more_dims_than_held_inline_simplify_alike() {
        // 9 dims (past INLINE_DIMS): length-1 dims dropped, C-contiguous neighbours merged,
        // the last two dims left apart (their strides do not chain).
        let d = Dims::new(
            &[2, 1, 3, 4, 1, 5, 2, 1, 3],
            &[720, 9, 240, 60, 7, 12, 1, 5, 2],
        );
        assert_eq!(d.shape.as_slice(), [120, 2, 3]);
        assert_eq!(d.strides.as_slice(), [12, 1, 2]);
        assert_eq!(d.offset(1), 2);
        let empty = Dims::new(&[3, 0, 2, 1, 1, 1, 1, 4], &[8, 8, 4, 1, 1, 1, 1, 1]);
        assert_eq!((empty.shape.as_slice(), empty.len()), ([0].as_slice(), 0));
    }

    #[test]
    fn negative_strides_extent() {
        let d = Dims::new(&[5], &[-2]);
        assert_eq!(d.extent(), (-8, 0));
        assert_eq!(d.offset(4), -8);
    }

    #[test]
    fn overlap_detection() {
        assert!(Dims::new(&[3, 4], &[0, 1]).has_internal_overlap());
        assert!(Dims::new(&[3, 4], &[2, 1]).has_internal_overlap());
        assert!(!Dims::new(&[3, 4], &[1, 3]).has_internal_overlap());
        assert!(!Dims::new(&[3, 4], &[-4, 1]).has_internal_overlap());
    }

    #[test]
    fn rows_split_and_row_offsets() {
        let r = Rows::split(&[2, 3, 5], &[15, 5, 1], 1);
        assert_eq!(r.n_rows(), 6);
        assert_eq!(r.row_len(), 5);
        assert_eq!(r.row_offset(4), 20);
        let c = Rows::contiguous(3, 7);
        assert_eq!(c.row_offset(2), 14);
        assert_eq!(c.inner.single_stride(), Some(1));
    }

    #[test]
    fn empty_dims() {
        let d = Dims::new(&[3, 0], &[0, 1]);
        assert!(d.is_empty());
        assert_eq!(d.extent(), (0, -1));
    }

    #[test]
    fn unsimplified_checks_agree_with_the_simplified_dims() {
        // The per-call checks (extent, overlap, contiguity) read the raw shape and strides; over
        // every layout of up to 3 dims of lengths 0-3 and strides -7..7 they agree with the
        // simplified Dims (length-1 and empty dims with odd strides included).
        let (lens, strides) = ([0usize, 1, 2, 3], [-7isize, -3, -1, 0, 1, 2, 3, 4, 6, 7]);
        let mut checked = 0;
        for ndim in 0..=3u32 {
            for code in 0..(lens.len() * strides.len()).pow(ndim) {
                let (mut shape, mut st, mut c) = (vec![], vec![], code);
                for _ in 0..ndim {
                    shape.push(lens[c % lens.len()]);
                    st.push(strides[(c / lens.len()) % strides.len()]);
                    c /= lens.len() * strides.len();
                }
                let d = Dims::new(&shape, &st);
                assert_eq!(extent(&shape, &st), d.extent(), "{shape:?} {st:?}");
                let overlap = has_internal_overlap(&shape, &st);
                assert_eq!(overlap, d.has_internal_overlap(), "{shape:?} {st:?}");
                for cut in 0..=shape.len() {
                    let rows = Rows::split(&shape, &st, cut);
                    assert_eq!(
                        rows.has_internal_overlap(),
                        overlap,
                        "{shape:?} {st:?} {cut}"
                    );
                    let flat = (d.single_stride() == Some(1)).then(|| d.len());
                    assert_eq!(rows.contiguous_len(), flat, "{shape:?} {st:?} {cut}");
                    // The counts and extent cached at the split are those of the dims.
                    let (outer, inner) = (&shape[..shape.len() - cut], &shape[shape.len() - cut..]);
                    let rows_len = (outer.iter().product(), inner.iter().product());
                    assert_eq!((rows.n_rows(), rows.row_len()), rows_len, "{shape:?} {cut}");
                    assert_eq!(rows.extent(), extent(&shape, &st), "{shape:?} {st:?} {cut}");
                }
                checked += 1;
            }
        }
        assert_eq!(checked, 1 + 40 + 1600 + 64000);
    }
}
