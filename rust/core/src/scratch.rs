//! Large temporary buffers that do not pay a page fault every 4 KB.
//!
//! A fresh buffer's pages are mapped on first touch, one fault each. In this VM a fault cost
//! about 2 µs, so the Wasserstein sort's 16 MB of fresh keys and scratch per million values
//! (4096 faults) cost as much as the sort itself, on every call: the allocator hands such sizes
//! back to the system when they are freed. On Linux, buffers from [`MAPPED_FROM`] bytes are mapped
//! with `MADV_HUGEPAGE`, so the kernel backs them with 2 MB pages where transparent huge pages
//! are enabled ("always" or "madvise"): one fault per 2 MB. Elsewhere, or if the mapping fails,
//! they are plain `Vec`s. Freed mappings, up to [`map::KEEP_BYTES`] together, are kept for the
//! next buffers, whose pages are then already there: a 100k-value Wasserstein distance called from
//! Python's main thread had its heap buffers trimmed and faulted in again on every call (360
//! faults, 0.7 of 2.2 ms).

use std::ops::{Deref, DerefMut};

/// Plain-data element types: every bit pattern is a valid value, zeros (fresh pages) and whatever
/// an earlier buffer left in a reused mapping.
///
/// # Safety
/// Implement only for types whose every bit pattern, all-zero included, is a valid value.
pub(crate) unsafe trait Plain: Copy + Default + Send + Sync {}

// SAFETY: every bit pattern is an integer, or a float (NaNs included); zero bits are 0 and +0.0.
unsafe impl Plain for u64 {}
// SAFETY: as above.
unsafe impl Plain for f64 {}
// SAFETY: a tuple of such types (no padding here: both are 8 bytes).
unsafe impl Plain for (u64, f64) {}

/// Buffers from this many bytes are mapped (below, the faults are few).
const MAPPED_FROM: usize = 256 << 10;

/// A buffer of `len` `T`s, each written before it is read; see the module docs.
pub(crate) struct Scratch<T: Plain> {
    backing: Backing<T>,
}

enum Backing<T> {
    Heap(Vec<T>),
    #[cfg(target_os = "linux")]
    Mapped(map::Mapping<T>),
}

impl<T: Plain> Scratch<T> {
    /// `len` elements of any values (zeros, or what a reused mapping's last buffer left), for a
    /// caller that writes each one before reading it: the sorts' destinations. Zeroing a reused
    /// mapping would write the whole buffer once more (16 MB a call for a 1M-value distance).
    pub(crate) fn unwritten(len: usize) -> Self {
        #[cfg(target_os = "linux")]
        if len.saturating_mul(size_of::<T>()) >= MAPPED_FROM {
            if let Some(mapping) = map::Mapping::new(len) {
                return Scratch {
                    backing: Backing::Mapped(mapping),
                };
            }
        }
        Scratch {
            backing: Backing::Heap(vec![T::default(); len]),
        }
    }

    /// `f(i)` for i in 0..len, on the pool's threads where `len` is worth it (a 1M-value
    /// Wasserstein distance's keys had been built on one thread while the other waited).
    pub(crate) fn from_fn(len: usize, f: impl Fn(usize) -> T + Sync) -> Self {
        let mut buffer = Self::unwritten(len);
        let at = buffer.as_mut_ptr() as usize;
        crate::parallel::for_each_range(len, 1, |range| {
            // SAFETY: the ranges are disjoint and inside the buffer's `len` elements, which
            // outlive the call.
            let part = unsafe {
                std::slice::from_raw_parts_mut((at as *mut T).add(range.start), range.len())
            };
            for (slot, i) in part.iter_mut().zip(range) {
                *slot = f(i);
            }
        });
        buffer
    }

    /// Each element mapped by `f` into a `U` of the same size and alignment, in place (no second
    /// buffer, so no second set of faults).
    pub(crate) fn map_in_place<U: Plain>(self, f: impl Fn(T) -> U + Sync) -> Scratch<U> {
        assert!(
            size_of::<T>() == size_of::<U>() && align_of::<T>() == align_of::<U>(),
            "map_in_place: the element types differ in layout"
        );
        let backing = match self.backing {
            // The standard library maps a `Vec` in place when the layouts match.
            Backing::Heap(v) => Backing::Heap(v.into_iter().map(f).collect()),
            #[cfg(target_os = "linux")]
            Backing::Mapped(mapping) => Backing::Mapped(mapping.map_in_place(f)),
        };
        Scratch { backing }
    }
}

impl<T: Plain> Deref for Scratch<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        match &self.backing {
            Backing::Heap(v) => v,
            #[cfg(target_os = "linux")]
            Backing::Mapped(m) => m.as_slice(),
        }
    }
}

impl<T: Plain> DerefMut for Scratch<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        match &mut self.backing {
            Backing::Heap(v) => v,
            #[cfg(target_os = "linux")]
            Backing::Mapped(m) => m.as_mut_slice(),
        }
    }
}

#[cfg(target_os = "linux")]
mod map {
    use super::Plain;
    use std::marker::PhantomData;
    use std::ptr::NonNull;
    use std::sync::{Mutex, MutexGuard, TryLockError};

    /// The huge page size the mapping is aligned to (x86-64 and aarch64 with 4 KB base pages).
    const HUGE_PAGE: usize = 2 << 20;

    /// Mapped bytes kept for reuse once freed (the latest buffers first): a 1M-value Wasserstein
    /// distance's keys and sort buffers.
    pub(super) const KEEP_BYTES: usize = 32 << 20;

    /// Freed mappings kept for reuse, as (base, size). Held only for a push or a removal, and
    /// never waited on for long ([`kept`]).
    static KEPT: Mutex<Vec<(usize, usize)>> = Mutex::new(Vec::new());

    /// The kept mappings, if their lock comes free within a few thousand polls: two threads
    /// freeing their sorts' buffers at once take turns, while a forked child that finds the lock
    /// held by a thread it does not have maps and unmaps as if nothing were kept.
    fn kept() -> Option<MutexGuard<'static, Vec<(usize, usize)>>> {
        for _ in 0..4096 {
            match KEPT.try_lock() {
                Ok(guard) => return Some(guard),
                Err(TryLockError::Poisoned(poisoned)) => return Some(poisoned.into_inner()),
                Err(TryLockError::WouldBlock) => std::hint::spin_loop(),
            }
        }
        None
    }

    /// A kept mapping of at least `size` bytes (and at most twice that, so a small buffer does
    /// not take a large one), removed from the kept ones.
    fn reuse(size: usize) -> Option<(*mut libc::c_void, usize)> {
        let mut kept = kept()?;
        let at = kept
            .iter()
            .rposition(|&(_, s)| s >= size && s <= size.saturating_mul(2))?;
        let (base, size) = kept.remove(at);
        Some((base as *mut libc::c_void, size))
    }

    /// Keeps a freed mapping for reuse, unmapping the oldest kept ones to stay within
    /// [`KEEP_BYTES`]; unmaps it instead if it is larger than that, or the list is busy.
    fn keep_or_unmap(base: *mut libc::c_void, size: usize) {
        let unmap = |base: usize, size: usize| {
            // SAFETY: a mapping made by `Mapping::new`, no longer referenced, unmapped once.
            unsafe { libc::munmap(base as *mut libc::c_void, size) };
        };
        let Some(mut kept) = kept() else {
            return unmap(base as usize, size);
        };
        if size > KEEP_BYTES {
            drop(kept);
            return unmap(base as usize, size);
        }
        let mut total: usize = kept.iter().map(|&(_, s)| s).sum::<usize>() + size;
        while total > KEEP_BYTES {
            let (old_base, old_size) = kept.remove(0);
            total -= old_size;
            unmap(old_base, old_size);
        }
        kept.push((base as usize, size));
    }

    /// `len` `T`s at a 2 MB-aligned address inside an anonymous private mapping.
    pub(super) struct Mapping<T> {
        data: NonNull<T>,
        len: usize,
        base: *mut libc::c_void,
        size: usize,
        owns: PhantomData<T>,
    }

    // SAFETY: the mapping is owned by this value alone, like a Vec's allocation.
    unsafe impl<T: Send> Send for Mapping<T> {}
    // SAFETY: shared access only reads through `as_slice`.
    unsafe impl<T: Sync> Sync for Mapping<T> {}

    impl<T: Plain> Mapping<T> {
        /// None if the mapping fails (the caller falls back to the heap). A kept mapping is
        /// reused with the values its last buffer left (a fresh one is zeroed by the kernel).
        pub(super) fn new(len: usize) -> Option<Self> {
            let bytes = len.checked_mul(size_of::<T>())?;
            // Room to align the start to a huge page.
            let size = bytes.checked_add(HUGE_PAGE)?;
            if let Some((base, size)) = reuse(size) {
                let offset = (base as usize).next_multiple_of(HUGE_PAGE) - base as usize;
                // SAFETY: offset < HUGE_PAGE and offset + bytes ≤ size, inside the mapping.
                let start = unsafe { base.cast::<u8>().add(offset) };
                return Some(Mapping {
                    data: NonNull::new(start.cast::<T>())?,
                    len,
                    base,
                    size,
                    owns: PhantomData,
                });
            }
            // SAFETY: an anonymous private mapping of `size` bytes at an address the kernel picks.
            let base = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    size,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            if base == libc::MAP_FAILED {
                return None;
            }
            let offset = (base as usize).next_multiple_of(HUGE_PAGE) - base as usize;
            // SAFETY: offset < HUGE_PAGE, inside the mapping.
            let start = unsafe { base.cast::<u8>().add(offset) };
            // SAFETY: the range lies inside the mapping. A failure (huge pages disabled, an old
            // kernel) only leaves 4 KB pages, so the result is ignored.
            unsafe { libc::madvise(start.cast(), size - offset, libc::MADV_HUGEPAGE) };
            Some(Mapping {
                data: NonNull::new(start.cast::<T>())?,
                len,
                base,
                size,
                owns: PhantomData,
            })
        }

        pub(super) fn as_slice(&self) -> &[T] {
            // SAFETY: `len` elements, zeroed by the kernel, left by an earlier buffer or written
            // since (every bit pattern is valid for `Plain` types); aligned (a huge page boundary).
            unsafe { std::slice::from_raw_parts(self.data.as_ptr(), self.len) }
        }

        pub(super) fn as_mut_slice(&mut self) -> &mut [T] {
            // SAFETY: as in `as_slice`, and `&mut self` makes the access unique.
            unsafe { std::slice::from_raw_parts_mut(self.data.as_ptr(), self.len) }
        }

        /// Rewrites each element as `f` of it, in place; the caller checked that U has T's
        /// layout.
        /// On the pool's threads, as `Scratch::from_fn`.
        pub(super) fn map_in_place<U: Plain>(self, f: impl Fn(T) -> U + Sync) -> Mapping<U> {
            let (at, len) = (self.data.as_ptr() as usize, self.len);
            crate::parallel::for_each_range(len, 1, |range| {
                let data = at as *mut T;
                for i in range {
                    // SAFETY: i < len, each i in one range; element i is read as a T before
                    // the U is written over it.
                    unsafe { data.cast::<U>().add(i).write(f(data.add(i).read())) };
                }
            });
            let mapped = Mapping {
                data: self.data.cast::<U>(),
                len,
                base: self.base,
                size: self.size,
                owns: PhantomData,
            };
            std::mem::forget(self); // the mapping now belongs to `mapped`
            mapped
        }
    }

    impl<T> Drop for Mapping<T> {
        fn drop(&mut self) {
            keep_or_unmap(self.base, self.size);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A freed mapping is kept and handed out again: `unwritten` gives it with what the last
    /// buffer left, `from_fn` writes every element over that. (Other tests may take a kept
    /// mapping first, so this checks values, not addresses.)
    #[test]
    fn reused_mappings_are_overwritten() {
        let len = MAPPED_FROM / 8 * 3 + 5;
        for round in 0..6u64 {
            let mut keys = Scratch::<u64>::unwritten(len);
            assert_eq!(keys.len(), len);
            keys.iter_mut().for_each(|k| *k = u64::MAX - round);
            assert!(keys.iter().all(|&k| k == u64::MAX - round), "round {round}");
            drop(keys);
            let values = Scratch::<f64>::from_fn(len, |i| i as f64);
            assert!(values
                .iter()
                .enumerate()
                .all(|(i, &v)| v.to_bits() == (i as f64).to_bits()));
        }
    }

    #[test]
    #[allow(clippy::float_cmp)] // exact small integers and halves
    fn scratch_buffers_are_writable_and_mapped_in_place() {
        // Both sides of MAPPED_FROM.
        for len in [0, 10, MAPPED_FROM / 8 + 3] {
            let mut keys = Scratch::<u64>::unwritten(len);
            assert_eq!(keys.len(), len);
            for (i, k) in keys.iter_mut().enumerate() {
                *k = i as u64 * 3;
            }
            let values = keys.map_in_place(|k| k as f64 + 0.5);
            assert_eq!(values.len(), len);
            assert!(values
                .iter()
                .enumerate()
                .all(|(i, &v)| v == i as f64 * 3.0 + 0.5));
            let pairs = Scratch::from_fn(len, |i| (i as u64, 1.0 / (i as f64 + 1.0)));
            let pairs = pairs.map_in_place(|(k, w)| (k * 2, w));
            assert!(pairs
                .iter()
                .enumerate()
                .all(|(i, &(k, _))| k == i as u64 * 2));
        }
    }
}
