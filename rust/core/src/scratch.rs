//! Large temporary buffers that do not pay a page fault every 4 KB.
//!
//! A fresh buffer's pages are mapped on first touch, one fault each. In this VM a fault cost
//! about 2 µs, so the Wasserstein sort's 16 MB of fresh keys and scratch per million values
//! (4096 faults) cost as much as the sort itself, on every call: the allocator hands such sizes
//! back to the system when they are freed. On Linux, buffers from [`MAPPED_FROM`] bytes are mapped
//! with `MADV_HUGEPAGE`, so the kernel backs them with 2 MB pages where transparent huge pages
//! are enabled ("always" or "madvise"): one fault per 2 MB. Elsewhere, or if the mapping fails,
//! they are plain `Vec`s.

use std::ops::{Deref, DerefMut};

/// Element types for which all-zero bytes are a valid value (fresh pages are zeroed).
///
/// # Safety
/// Implement only for types whose every bit pattern of zeros is a valid value.
pub(crate) unsafe trait Zeroed: Copy + Default + Send + Sync {}

// SAFETY: zero bits are 0 and +0.0.
unsafe impl Zeroed for u64 {}
// SAFETY: as above.
unsafe impl Zeroed for f64 {}
// SAFETY: a tuple of such types (no padding here: both are 8 bytes).
unsafe impl Zeroed for (u64, f64) {}

/// Buffers from this many bytes are mapped (two huge pages; below, the faults are few).
const MAPPED_FROM: usize = 4 << 20;

/// A buffer of `len` zeroed `T`s; see the module docs.
pub(crate) struct Scratch<T: Zeroed> {
    backing: Backing<T>,
}

enum Backing<T> {
    Heap(Vec<T>),
    #[cfg(target_os = "linux")]
    Mapped(map::Mapping<T>),
}

impl<T: Zeroed> Scratch<T> {
    /// `len` zeroed elements.
    pub(crate) fn zeroed(len: usize) -> Self {
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

    /// `f(i)` for i in 0..len.
    pub(crate) fn from_fn(len: usize, f: impl Fn(usize) -> T) -> Self {
        let mut buffer = Self::zeroed(len);
        for (i, slot) in buffer.iter_mut().enumerate() {
            *slot = f(i);
        }
        buffer
    }

    /// Each element mapped by `f` into a `U` of the same size and alignment, in place (no second
    /// buffer, so no second set of faults).
    pub(crate) fn map_in_place<U: Zeroed>(self, f: impl Fn(T) -> U) -> Scratch<U> {
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

impl<T: Zeroed> Deref for Scratch<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        match &self.backing {
            Backing::Heap(v) => v,
            #[cfg(target_os = "linux")]
            Backing::Mapped(m) => m.as_slice(),
        }
    }
}

impl<T: Zeroed> DerefMut for Scratch<T> {
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
    use super::Zeroed;
    use std::marker::PhantomData;
    use std::ptr::NonNull;

    /// The huge page size the mapping is aligned to (x86-64 and aarch64 with 4 KB base pages).
    const HUGE_PAGE: usize = 2 << 20;

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

    impl<T: Zeroed> Mapping<T> {
        /// None if the mapping fails (the caller falls back to the heap).
        pub(super) fn new(len: usize) -> Option<Self> {
            let bytes = len.checked_mul(size_of::<T>())?;
            // Room to align the start to a huge page.
            let size = bytes.checked_add(HUGE_PAGE)?;
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
            // SAFETY: `len` elements, zeroed by the kernel (valid for `Zeroed` types) or written
            // since; aligned (a huge page boundary).
            unsafe { std::slice::from_raw_parts(self.data.as_ptr(), self.len) }
        }

        pub(super) fn as_mut_slice(&mut self) -> &mut [T] {
            // SAFETY: as in `as_slice`, and `&mut self` makes the access unique.
            unsafe { std::slice::from_raw_parts_mut(self.data.as_ptr(), self.len) }
        }

        /// Rewrites each element as `f` of it, in place; the caller checked that U has T's
        /// layout.
        pub(super) fn map_in_place<U: Zeroed>(self, f: impl Fn(T) -> U) -> Mapping<U> {
            let (data, len) = (self.data.as_ptr(), self.len);
            for i in 0..len {
                // SAFETY: i < len; element i is read as a T before the U is written over it.
                unsafe { data.cast::<U>().add(i).write(f(data.add(i).read())) };
            }
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
            // SAFETY: the mapping made in `new`, unmapped once.
            unsafe { libc::munmap(self.base, self.size) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::float_cmp)] // exact small integers and halves
    fn scratch_buffers_are_zeroed_writable_and_mapped_in_place() {
        // Both sides of MAPPED_FROM.
        for len in [0, 10, MAPPED_FROM / 8 + 3] {
            let mut keys = Scratch::<u64>::zeroed(len);
            assert!(keys.iter().all(|&k| k == 0));
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
