//! The thread pool and how work is split.
//!
//! rsnorm owns one rayon pool (not rayon's global one) so `set_num_threads` can resize it at run
//! time and a forked child can drop the parent's pool. Small calls never touch the pool: below
//! [`MIN_PARALLEL_WORK`] elements they run on the caller's thread, where a (1, 64) LayerNorm
//! costs well under a microsecond instead of a cross-thread wake-up.

use rayon::{ThreadPool, ThreadPoolBuilder};
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

/// Elements of work below which a call stays on the caller's thread. Waking a pool worker costs
/// ~5-10 µs: measured on 2 cores, (64, 768) LayerNorm (98K elements of work) ran 13 µs serial
/// and 19 µs split; (256, 768) ran 55 µs serial and 42 µs split.
pub const MIN_PARALLEL_WORK: usize = 1 << 18;
/// Smallest chunk handed to one task, in elements of work.
const MIN_CHUNK_WORK: usize = 1 << 14;
/// Chunks per thread: enough to balance uneven progress, few enough to keep overhead low.
const CHUNKS_PER_THREAD: usize = 4;

struct PoolState {
    threads: usize,
    pool: Option<Arc<ThreadPool>>,
}

static POOL: RwLock<PoolState> = RwLock::new(PoolState {
    threads: 0,
    pool: None,
});

/// Threads used when nothing was set: `RSNORM_NUM_THREADS`, else the number of logical CPUs.
/// Read once: `available_parallelism` reads cgroup files, ~35 µs, more than a small call's work.
fn default_threads() -> usize {
    static DEFAULT: OnceLock<usize> = OnceLock::new();
    *DEFAULT.get_or_init(|| {
        std::env::var("RSNORM_NUM_THREADS")
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|&n| n > 0)
            .unwrap_or_else(|| {
                std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
            })
    })
}

/// Number of threads compute calls use.
pub fn num_threads() -> usize {
    let threads = POOL.read().map_or(0, |state| state.threads);
    if threads == 0 {
        default_threads()
    } else {
        threads
    }
}

/// Sets the number of threads; `0` restores the default. The pool is rebuilt on next use.
pub fn set_num_threads(threads: usize) {
    let mut state = POOL
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    state.threads = threads;
    state.pool = None;
}

/// Forgets the pool without joining it. For a forked child, where the parent's worker threads
/// do not exist: joining them would hang, so the pool is leaked and a new one built on demand.
pub fn forget_pool_after_fork() {
    let mut state = POOL
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(pool) = state.pool.take() {
        std::mem::forget(pool);
    }
}

fn pool() -> Arc<ThreadPool> {
    if let Some(pool) = POOL.read().ok().and_then(|state| state.pool.clone()) {
        return pool;
    }
    let mut state = POOL
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(pool) = &state.pool {
        return pool.clone();
    }
    let threads = if state.threads == 0 {
        default_threads()
    } else {
        state.threads
    };
    let pool = Arc::new(
        ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("rsnorm-{i}"))
            .build()
            .expect("rsnorm: cannot start worker threads"),
    );
    state.pool = Some(pool.clone());
    pool
}

/// Splits `0..n_items` into contiguous ranges and calls `f` on each, in parallel when the total
/// work (`n_items * work_per_item` elements) is worth it, else once on the caller's thread.
/// Every item is processed by exactly one call, so per-item results do not depend on the split.
///
/// The calling thread takes part: it and `threads − 1` pool workers pull ranges from a shared
/// counter. Only the workers must be woken (on a VM, waking an idle vCPU costs tens of µs), and
/// the caller's thread, already running, starts at once.
pub fn for_each_range(n_items: usize, work_per_item: usize, f: impl Fn(Range<usize>) + Sync) {
    let total_work = n_items.saturating_mul(work_per_item.max(1));
    let threads = num_threads();
    if n_items <= 1 || threads <= 1 || total_work < MIN_PARALLEL_WORK {
        f(0..n_items);
        return;
    }
    let chunks = (threads * CHUNKS_PER_THREAD)
        .min(total_work / MIN_CHUNK_WORK)
        .clamp(2, n_items);
    let chunk_range = |c: usize| (c * n_items / chunks)..((c + 1) * n_items / chunks);
    let next = AtomicUsize::new(0);
    let work = || loop {
        let c = next.fetch_add(1, Ordering::Relaxed);
        if c >= chunks {
            break;
        }
        f(chunk_range(c));
    };
    pool().in_place_scope(|scope| {
        for _ in 1..threads.min(chunks) {
            scope.spawn(|_| work());
        }
        work();
    });
}

/// Runs two closures in parallel on the pool (inside it, so rayon's parallel iterators they use,
/// such as `par_sort`, run on rsnorm's threads too) when there are threads to spare.
pub fn join<A: Send, B: Send>(
    a: impl FnOnce() -> A + Send,
    b: impl FnOnce() -> B + Send,
) -> (A, B) {
    if num_threads() <= 1 {
        return (a(), b());
    }
    pool().install(|| rayon::join(a, b))
}

/// Copies `src` into `dst` with the pool: the memory-bandwidth ceiling benchmarks compare
/// kernels against (bytes read + written per second by the same threads).
pub fn parallel_copy<T: Copy + Send + Sync>(src: &[T], dst: &mut [T]) {
    assert_eq!(src.len(), dst.len(), "parallel_copy: lengths differ");
    let dst_ptr = dst.as_mut_ptr() as usize;
    for_each_range(src.len(), 1, |range| {
        // SAFETY: ranges are disjoint and inside both slices.
        let dst = unsafe {
            std::slice::from_raw_parts_mut((dst_ptr as *mut T).add(range.start), range.len())
        };
        dst.copy_from_slice(&src[range]);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn every_item_visited_once() {
        for &(n, work) in &[
            (0usize, 1usize),
            (1, 1 << 20),
            (7, 1 << 20),
            (1000, 1000),
            (5, 3),
        ] {
            let hits: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
            for_each_range(n, work, |r| {
                for i in r {
                    hits[i].fetch_add(1, Ordering::Relaxed);
                }
            });
            assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
        }
    }

    #[test]
    fn parallel_copy_copies() {
        let src: Vec<f32> = (0..200_000).map(|i| i as f32).collect();
        let mut dst = vec![0.0f32; src.len()];
        parallel_copy(&src, &mut dst);
        assert_eq!(src, dst);
    }
}
