//! How kernels store their outputs: through the cache, or (large outputs, where the CPU gains)
//! non-temporally, a segment at a time.

use super::{views_apart, Ahead, RowsMut, RowsRef};
use crate::element::Element;
use crate::layout::Rows;
use crate::simd;

/// How a kernel stores its output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stores {
    /// Plain stores: each line is read before it is written, and stays in the cache.
    Cached,
    /// Non-temporal stores (see [`Stores::for_outputs`]).
    NonTemporal,
}

impl Stores {
    /// Non-temporal where this CPU gains from them ([`simd::nontemporal_stores`]), for a call
    /// whose arrays hold at least [`simd::NONTEMPORAL_FOOTPRINT`] bytes together (they no longer
    /// stay in the cache from one call to the next) and whose outputs are the caller's memory
    /// itself (the compute type's layout, rows of stride 1), each apart from every input: in
    /// place the line was just read, and LayerNorm (8192, 4096) in place ran 1.45× slower with
    /// them. LayerNorm, RMSNorm and their backward's dx use it; SELU, softmax and the fused-add
    /// norms measured no faster or slower with them (docs/decisions.md).
    pub(crate) fn for_outputs<S: Element, const NI: usize, const NO: usize>(
        inputs: [&RowsRef<S>; NI],
        outputs: [&RowsMut<S>; NO],
    ) -> Stores {
        let bytes = |rows: &Rows| rows.n_rows() * rows.row_len() * std::mem::size_of::<S>();
        let footprint = inputs.iter().map(|x| bytes(x.rows())).sum::<usize>()
            + outputs.iter().map(|y| bytes(y.rows())).sum::<usize>();
        let streamable = |y: &&RowsMut<S>| {
            y.rows().inner().single_stride() == Some(1) && inputs.iter().all(|x| views_apart(x, y))
        };
        if simd::nontemporal_stores()
            && footprint >= simd::NONTEMPORAL_FOOTPRINT
            && S::NATIVE
            && outputs.iter().all(streamable)
        {
            Stores::NonTemporal
        } else {
            Stores::Cached
        }
    }
}

/// Elements per segment: 2 KB of f32, so each burst is 32 prefetches (512 measured a little
/// faster than 256 and 1024 at (8192, 4096)).
const SEGMENT: usize = 512;

/// A segment's staging buffer for non-temporal stores, aligned to a cache line.
#[repr(C, align(64))]
struct Staged<T>([T; SEGMENT]);

/// Calls `body(start, segment)` on consecutive segments of `y`; before each, the matching share of
/// `ahead` is prefetched, so the next row streams in from memory while this one is computed
/// (without it, a core's loads and arithmetic take turns instead of overlapping). With
/// [`Stores::NonTemporal`], `body` writes each segment into a staging buffer in L1, which is then
/// copied out with non-temporal stores (segments start on y's cache lines), in segments of 2 KB:
/// one burst a 16 KB row ran at 25 GB/s where 2 KB ones ran at 43–50 and plain stores at 30 (a
/// two-thread scratch program). The fence that orders them ends each task of
/// [`simd::for_each_range`], which every kernel that streams runs under.
#[inline(always)]
pub(crate) fn in_segments<T: Copy + Default>(
    ahead: Ahead,
    stores: Stores,
    y: &mut [T],
    mut body: impl FnMut(usize, &mut [T]),
) {
    let nontemporal = stores == Stores::NonTemporal;
    if !nontemporal && ahead.bytes() == 0 {
        // Nothing to prefetch: one plain loop (segment bookkeeping cost a short row 30%).
        body(0, y);
        return;
    }
    // Non-temporal segments start on y's cache lines; the values before the first are written
    // directly.
    let head = if nontemporal {
        let size = std::mem::size_of::<T>().max(1);
        ((y.as_ptr() as usize).wrapping_neg() % simd::LINE / size).min(y.len())
    } else {
        0
    };
    let (first, rest) = y.split_at_mut(head);
    if head > 0 {
        body(0, first);
    }
    let mut staged = nontemporal.then(|| Staged([T::default(); SEGMENT]));
    let step = ahead.bytes().div_ceil(rest.len().div_ceil(SEGMENT).max(1));
    for (k, segment) in rest.chunks_mut(SEGMENT).enumerate() {
        ahead.touch_span(k * step, step);
        let at = head + k * SEGMENT;
        match staged.as_mut() {
            Some(staged) => {
                let buffer = &mut staged.0[..segment.len()];
                body(at, buffer);
                simd::copy_nontemporal(buffer, segment);
            }
            None => body(at, segment),
        }
    }
}
