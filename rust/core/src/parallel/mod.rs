//! The thread pool and how work is split.
//!
//! Row and element kernels run on rsnorm's own workers ([`for_each_range`]): `threads − 1`
//! threads that, after a call, spin a while (`workers::SPIN_WHILE_BUSY`, `SPIN_AFTER_WAKE`) waiting
//! for the next one before they sleep. Back-to-back calls from a Python loop then hand work over
//! through one cache line instead of waking a sleeping thread (a futex wake plus an idle vCPU's
//! wake-up, 10–30 µs on a VM, which rayon's scope had paid on every call: a 1 MB copy took longer
//! on 2 threads than on 1). A caller never waits for a worker that has not started: it takes
//! every chunk left itself. [`join`] (the Wasserstein sorts) runs on the same workers. The pool is
//! rebuilt on the next use after `set_num_threads`, and a forked child drops the parent's. Small
//! calls never touch a pool: below
//! [`MIN_AWAKE_PARALLEL_WORK`] elements (or [`MIN_PARALLEL_WORK`] when every worker sleeps) they
//! run on the caller's thread, where a (1, 64) LayerNorm costs well under a microsecond.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

mod workers;

use workers::Workers;

/// Elements of work from which a call wakes sleeping workers. Waking one costs the caller 20–30
/// µs on this VM (the futex wake of an idle vCPU), as much as the serial run of a 1 MB copy; below
/// this a call uses only workers that are awake (see [`MIN_AWAKE_PARALLEL_WORK`]).
pub const MIN_PARALLEL_WORK: usize = 1 << 18;
/// Elements of work from which a call shares its chunks with workers that are awake (spinning
/// after a recent call). Handing work to a spinning worker costs about a microsecond.
pub const MIN_AWAKE_PARALLEL_WORK: usize = 1 << 15;
/// Smallest chunk handed to one task, in elements of work.
const MIN_CHUNK_WORK: usize = 1 << 14;
/// Chunks per thread: enough to balance uneven progress, few enough to keep overhead low.
const CHUNKS_PER_THREAD: usize = 4;
struct PoolState {
    threads: usize,
    workers: Option<Arc<Workers>>,
}

/// The pool state behind a lock that is itself replaceable: a forked child cannot use the
/// parent's lock, which a parent thread that does not exist in the child may hold forever (a
/// thread building the pool, or in `set_num_threads`, at the moment of the fork). The child
/// swaps in a fresh lock without touching the old one ([`forget_pool_after_fork`]).
static POOL: AtomicPtr<RwLock<PoolState>> = AtomicPtr::new(std::ptr::null_mut());

/// The current pool lock, allocated on first use.
fn pool_state() -> &'static RwLock<PoolState> {
    let current = POOL.load(Ordering::Acquire);
    if !current.is_null() {
        // SAFETY: a published lock is leaked, never freed.
        return unsafe { &*current };
    }
    let fresh = Box::into_raw(Box::new(RwLock::new(PoolState {
        threads: 0,
        workers: None,
    })));
    match POOL.compare_exchange(
        std::ptr::null_mut(),
        fresh,
        Ordering::AcqRel,
        Ordering::Acquire,
    ) {
        // SAFETY: just leaked, and published for good.
        Ok(_) => unsafe { &*fresh },
        Err(existing) => {
            // SAFETY: `fresh` was never published; `existing` is leaked like every published one.
            drop(unsafe { Box::from_raw(fresh) });
            unsafe { &*existing }
        }
    }
}

/// Most threads [`set_num_threads`] accepts. Each worker reserves a stack (2 MiB of address
/// space), so a count far beyond the CPUs buys nothing and can exhaust a process's
/// address-space limit, where the allocation failure aborts instead of erring.
pub const MAX_THREADS: usize = 1024;

/// Threads used when nothing was set: `RSNORM_NUM_THREADS` (capped at [`MAX_THREADS`]), else
/// the number of logical CPUs. Read once: `available_parallelism` reads cgroup files, ~35 µs, more
/// than a small call's work. An atomic, not a `OnceLock`: a child forked while another thread
/// was initializing a `OnceLock` would wait for that thread forever.
fn default_threads() -> usize {
    static DEFAULT: AtomicUsize = AtomicUsize::new(0);
    let known = DEFAULT.load(Ordering::Relaxed);
    if known != 0 {
        return known;
    }
    let threads = std::env::var("RSNORM_NUM_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        })
        .min(MAX_THREADS);
    DEFAULT.store(threads, Ordering::Relaxed);
    threads
}

fn configured_threads(state: &PoolState) -> usize {
    if state.threads == 0 {
        default_threads()
    } else {
        state.threads
    }
}

/// Number of threads compute calls use.
pub fn num_threads() -> usize {
    pool_state()
        .read()
        .map_or_else(|_| default_threads(), |state| configured_threads(&state))
}

/// Sets the number of threads (at most [`MAX_THREADS`]; more is capped there); `0` restores the
/// default. The pool is rebuilt on next use.
pub fn set_num_threads(threads: usize) {
    let old_pool = {
        let mut state = pool_state().write().unwrap_or_else(PoisonError::into_inner);
        state.threads = threads.min(MAX_THREADS);
        state.workers.take()
    };
    // Outside the lock: dropping the last reference joins the pool's threads.
    drop(old_pool);
}

/// Forgets the pools without stopping, joining or even locking them. For a forked child, where
/// the parent's worker threads do not exist and the parent's pool lock may be held by a thread
/// that does not exist either: the old lock and pools are leaked untouched, and new ones built on
/// demand.
pub fn forget_pool_after_fork() {
    POOL.store(std::ptr::null_mut(), Ordering::SeqCst);
    // No spawn was in progress at the fork (see `hold_spawns_for_fork`), and none exists here.
    SPAWNS_IN_FLIGHT.store(0, Ordering::SeqCst);
    FORK_PENDING.store(false, Ordering::SeqCst);
}

/// Thread spawns in progress ([`spawning`]), and whether a fork is waiting for them to end
/// ([`hold_spawns_for_fork`]).
static SPAWNS_IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
static FORK_PENDING: AtomicBool = AtomicBool::new(false);

/// Runs `spawn`, which starts threads, never while a fork is under way. glibc's `pthread_create`,
/// reusing a cached stack, moves it to the in-use list and then frees its old thread-local blocks
/// before clearing their pointers; a fork in between puts that stack back in the child's cache
/// with the freed pointers in it, and the child's first thread spawn frees them again ("double
/// free or corruption" in `get_cached_stack`: 1 child in ~12 runs of 300 forks beside a thread
/// rebuilding the pools).
fn spawning<R>(spawn: impl FnOnce() -> R) -> R {
    /// Ends the spawn's count however `spawn` returns.
    struct Done;
    impl Drop for Done {
        fn drop(&mut self) {
            SPAWNS_IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
        }
    }
    loop {
        // SeqCst on both sides: a fork that set the flag before this increment sees it in
        // `hold_spawns_for_fork`, or this load sees the flag.
        SPAWNS_IN_FLIGHT.fetch_add(1, Ordering::SeqCst);
        if !FORK_PENDING.load(Ordering::SeqCst) {
            break;
        }
        SPAWNS_IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
        while FORK_PENDING.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
    }
    let _done = Done;
    spawn()
}

/// Before a fork: keeps new thread spawns from starting and waits for those in progress (a pool
/// being built, which takes microseconds and needs no lock the forking thread can hold). Undone by
/// [`release_spawns_after_fork`] in the parent and [`forget_pool_after_fork`] in the child.
pub fn hold_spawns_for_fork() {
    FORK_PENDING.store(true, Ordering::SeqCst);
    while SPAWNS_IN_FLIGHT.load(Ordering::SeqCst) != 0 {
        std::thread::yield_now();
    }
}

/// After a fork, in the parent: spawns may start again.
pub fn release_spawns_after_fork() {
    FORK_PENDING.store(false, Ordering::SeqCst);
}

/// The worker pool, started on first use.
fn workers() -> Arc<Workers> {
    let lock = pool_state();
    if let Some(pool) = lock.read().ok().and_then(|state| state.workers.clone()) {
        return pool;
    }
    let mut state = lock.write().unwrap_or_else(PoisonError::into_inner);
    let threads = configured_threads(&state);
    state
        .workers
        .get_or_insert_with(|| Arc::new(spawning(|| Workers::start(threads))))
        .clone()
}

/// Splits `0..n_items` into contiguous ranges and calls `f` on each, in parallel when the total
/// work (`n_items * work_per_item` elements) is worth it, else once on the caller's thread.
/// Every item is processed by exactly one call, so per-item results do not depend on the split.
///
/// The calling thread takes part: it and the workers pull ranges from a shared counter, and the
/// caller, already running, starts at once.
pub fn for_each_range(n_items: usize, work_per_item: usize, f: impl Fn(Range<usize>) + Sync) {
    let total_work = n_items.saturating_mul(work_per_item.max(1));
    if n_items <= 1 || total_work < MIN_AWAKE_PARALLEL_WORK {
        f(0..n_items);
        return;
    }
    // One thread configured builds workers with none started: one read of the pool state serves
    // both checks.
    let workers = workers();
    if workers.threads <= 1 {
        f(0..n_items);
        return;
    }
    let mut wake = total_work >= MIN_PARALLEL_WORK;
    if !wake && !workers.any_awake() {
        if !workers.in_tight_loop() {
            f(0..n_items);
            workers.serial_call_ended();
            return;
        }
        wake = true;
    }
    let chunks = balanced_chunks(workers.threads, total_work, n_items);
    let chunk_range = |c: usize| (c * n_items / chunks)..((c + 1) * n_items / chunks);
    // The caller takes chunks from the front, workers from the back: with two threads, each keeps
    // its half of a repeated call's data (an optimizer's parameters, a benchmark's arrays) in its
    // own core's cache, where a shared counter had handed the halves out by arrival and moved
    // them between the cores' caches on many calls ((64, 1000) softmax_backward: 2 threads slower
    // than 1).
    let claims = Claims::new(chunks);
    let work = |thread: usize| {
        while let Some(c) = claims.take(thread == 0) {
            f(chunk_range(c));
        }
    };
    if !workers.run(&work, wake) {
        f(0..n_items);
    }
}

/// The chunks of one call not yet taken, `front..back`, in one word (front in the high half), so
/// that a claim from either end is one compare-and-swap.
struct Claims(AtomicU64);

// A call's chunks (at most CHUNKS_PER_THREAD a thread, see `balanced_chunks`) fit each half.
const _: () = assert!(MAX_THREADS * CHUNKS_PER_THREAD <= u32::MAX as usize);

impl Claims {
    fn new(chunks: usize) -> Self {
        Claims(AtomicU64::new(chunks as u64))
    }

    /// The next chunk from the front (the caller) or from the back (the workers); `None` once
    /// none is left.
    fn take(&self, front: bool) -> Option<usize> {
        let mut seen = self.0.load(Ordering::Relaxed);
        loop {
            let (lo, hi) = (seen >> 32, seen & u64::from(u32::MAX));
            if lo >= hi {
                return None;
            }
            let (next, chunk) = if front {
                (seen + (1 << 32), lo)
            } else {
                (seen - 1, hi - 1)
            };
            match self
                .0
                .compare_exchange_weak(seen, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Some(chunk as usize),
                Err(now) => seen = now,
            }
        }
    }
}

/// How many chunks a call of `total_work` over `n_items` splits into on `threads` threads: up to
/// [`CHUNKS_PER_THREAD`] a thread, none under [`MIN_CHUNK_WORK`], and, from one a thread, a
/// multiple of the threads (3 chunks on 2 threads leave one thread 2/3 of the work; 2 or 4, half).
fn balanced_chunks(threads: usize, total_work: usize, n_items: usize) -> usize {
    let chunks = (threads * CHUNKS_PER_THREAD).min(total_work / MIN_CHUNK_WORK);
    let chunks = if chunks > threads {
        chunks - chunks % threads
    } else {
        chunks
    };
    chunks.clamp(2, n_items)
}

/// A closure run once, by whichever thread claims it, and its result.
struct Once<F, R>(Mutex<(Option<F>, Option<R>)>);
impl<F: FnOnce() -> R, R> Once<F, R> {
    fn run(&self) {
        let lock = || self.0.lock().unwrap_or_else(PoisonError::into_inner);
        // Taken in a statement of its own: the lock is not held while `f` runs.
        let f = lock().0.take();
        if let Some(f) = f {
            let result = f();
            lock().1 = Some(result);
        }
    }
    fn result(self) -> R {
        let (f, result) = self.0.into_inner().unwrap_or_else(PoisonError::into_inner);
        result.unwrap_or_else(|| f.expect("a closure not run is still there")())
    }
}

/// Runs `a` and `b`, in parallel when a worker takes `b` (the Wasserstein sorts' halves): the
/// caller runs `a`, then `b` too if no worker has taken it by then, so a worker slow to start
/// costs at most the serial time. (In rayon's pool, which the caller waited on, a call after
/// 0.3 s idle took 28–40 ms on two threads against 27–31 on one: this VM's idle vCPU is slow to
/// take work up again.) A nested call, or one beside another call that owns the workers, runs
/// both on its own thread.
pub fn join<A: Send, B: Send>(
    a: impl FnOnce() -> A + Send,
    b: impl FnOnce() -> B + Send,
) -> (A, B) {
    let workers = workers();
    if workers.threads <= 1 {
        return (a(), b());
    }
    let (a, b) = (
        Once(Mutex::new((Some(a), None))),
        Once(Mutex::new((Some(b), None))),
    );
    let claims = Claims::new(2);
    let work = |thread: usize| {
        while let Some(c) = claims.take(thread == 0) {
            if c == 0 {
                a.run();
            } else {
                b.run();
            }
        }
    };
    // Closures `run` left untouched (the workers owned elsewhere) run here, in `result`.
    workers.run(&work, true);
    (a.result(), b.result())
}

/// Copies `src` into `dst` with the pool: the memory-bandwidth ceiling benchmarks compare
/// kernels against (bytes read + written per second by the same threads). Large copies store
/// as the norms do (non-temporal where [`crate::simd::nontemporal_stores`], from
/// [`crate::simd::NONTEMPORAL_FROM`] bytes), so the ceiling is the fastest way to write that memory.
pub fn parallel_copy<T: Copy + Send + Sync>(src: &[T], dst: &mut [T]) {
    assert_eq!(src.len(), dst.len(), "parallel_copy: lengths differ");
    let nontemporal = std::mem::size_of_val(dst) >= crate::simd::NONTEMPORAL_FROM
        && crate::simd::nontemporal_stores();
    let dst_ptr = dst.as_mut_ptr() as usize;
    for_each_range(src.len(), 1, |range| {
        // SAFETY: ranges are disjoint and inside both slices.
        let dst = unsafe {
            std::slice::from_raw_parts_mut((dst_ptr as *mut T).add(range.start), range.len())
        };
        if nontemporal {
            crate::simd::copy_nontemporal(&src[range], dst);
            crate::simd::nontemporal_fence();
        } else {
            dst.copy_from_slice(&src[range]);
        }
    });
}

/// Work items over arrays of lengths `lens`: (array, start, end) chunks of at most `chunk`
/// elements, so that small arrays batch and large ones split.
pub(crate) fn chunk_items(
    lens: impl IntoIterator<Item = usize>,
    chunk: usize,
) -> Vec<(usize, usize, usize)> {
    let mut items = Vec::new();
    for (i, len) in lens.into_iter().enumerate() {
        let mut start = 0;
        while start < len {
            let end = (start + chunk).min(len);
            items.push((i, start, end));
            start = end;
        }
    }
    items
}

/// Multiplies every element of `parts` by `factor` in place with the worker threads, compiled
/// for the active SIMD level: an in-place stream (each byte read once and written back), the
/// ceiling the benchmarks hold in-place updates such as optimizer steps to. A copy is not that
/// ceiling: it also reads the destination's lines before writing them. The parts (an optimizer
/// step's parameters, gradients and state, each its own allocation) are cut into chunks of
/// `optim::CHUNK` elements as the step cuts its tensors, so the stream runs over the very memory of
/// the update it is the ceiling of.
pub fn parallel_scale<T: crate::Element>(parts: &mut [&mut [T]], factor: f64) {
    use crate::Float;
    let factor = T::Compute::from_f64(factor);
    let chunk = crate::optim::CHUNK;
    let items = chunk_items(parts.iter().map(|part| part.len()), chunk);
    let ptrs: Vec<usize> = parts
        .iter_mut()
        .map(|part| part.as_mut_ptr() as usize)
        .collect();
    crate::simd::for_each_range(
        items.len(),
        chunk,
        #[inline(always)]
        |range| {
            for &(i, start, end) in &items[range] {
                // SAFETY: items are disjoint chunks inside distinct parts.
                let values = unsafe {
                    std::slice::from_raw_parts_mut((ptrs[i] as *mut T).add(start), end - start)
                };
                for v in values {
                    *v = T::store(v.load() * factor);
                }
            }
        },
    );
}

/// Σ data, read by the worker threads compiled for the active SIMD level: a read-only stream,
/// the ceiling the benchmarks hold reductions (losses, divergences, moments) to. The ranges'
/// sums are added in the order they finish, so the last bits may differ between calls.
pub fn parallel_sum<T: crate::Float>(data: &[T]) -> f64 {
    let partials = std::sync::Mutex::new(0.0f64);
    crate::simd::for_each_range(
        data.len(),
        1,
        #[inline(always)]
        |range| {
            let part = crate::reduce::sum(&data[range]);
            *partials
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) += part;
        },
    );
    partials
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn a_spawn_waits_while_a_fork_is_pending() {
        hold_spawns_for_fork();
        let spawned = Arc::new(AtomicBool::new(false));
        let waiter = {
            let spawned = spawned.clone();
            std::thread::spawn(move || spawning(|| spawned.store(true, Ordering::SeqCst)))
        };
        std::thread::sleep(std::time::Duration::from_millis(50));
        let during_fork = spawned.load(Ordering::SeqCst);
        release_spawns_after_fork();
        waiter.join().unwrap();
        assert!(!during_fork);
        assert!(spawned.load(Ordering::SeqCst));
        // The count is back to zero: a fork does not wait for a finished spawn.
        hold_spawns_for_fork();
        release_spawns_after_fork();
    }

    #[test]
    fn chunks_are_a_multiple_of_the_threads_from_one_a_thread() {
        let chunk = MIN_CHUNK_WORK;
        // (threads, total work, items) -> chunks
        for &(threads, work, items, chunks) in &[
            (2, 3 * chunk, 64, 2),
            (2, 7 * chunk, 64, 6),
            (2, 100 * chunk, 64, 8),
            (2, 100 * chunk, 3, 3),
            (16, 6 * chunk, 64, 6),
            (16, 40 * chunk, 64, 32),
            (3, 10 * chunk, 64, 9),
            (2, chunk, 64, 2),
        ] {
            assert_eq!(
                balanced_chunks(threads, work, items),
                chunks,
                "{threads} {work} {items}"
            );
        }
    }

    #[test]
    fn claims_hand_out_each_chunk_once_front_to_caller_back_to_workers() {
        // Alone, the caller takes them in order and a worker in reverse.
        let claims = Claims::new(4);
        assert_eq!(claims.take(true), Some(0));
        assert_eq!(claims.take(false), Some(3));
        assert_eq!(claims.take(false), Some(2));
        assert_eq!(claims.take(true), Some(1));
        assert_eq!((claims.take(true), claims.take(false)), (None, None));
        // Racing from both ends on four threads: every chunk once, none twice.
        for round in 0..50 {
            let chunks = 1 + round % 37;
            let claims = Claims::new(chunks);
            let hits: Vec<AtomicUsize> = (0..chunks).map(|_| AtomicUsize::new(0)).collect();
            std::thread::scope(|scope| {
                for thread in 0..4 {
                    let (claims, hits) = (&claims, &hits);
                    scope.spawn(move || {
                        while let Some(c) = claims.take(thread % 2 == 0) {
                            hits[c].fetch_add(1, Ordering::Relaxed);
                        }
                    });
                }
            });
            assert!(
                hits.iter().all(|h| h.load(Ordering::Relaxed) == 1),
                "{chunks}"
            );
        }
    }

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

    /// Callers on several threads at once (one owns the workers, the others run serially), calls
    /// that wake the workers and calls that only use awake ones, and calls nested in a task.
    #[test]
    fn concurrent_and_nested_callers_visit_every_item_once() {
        std::thread::scope(|scope| {
            for caller in 0..4usize {
                scope.spawn(move || {
                    for call in 0..300usize {
                        let (n, work) = if (call + caller) % 2 == 0 {
                            (64, MIN_PARALLEL_WORK / 64)
                        } else {
                            (16, MIN_AWAKE_PARALLEL_WORK / 8)
                        };
                        let nested = call % 7 == 0;
                        let hits: Vec<AtomicUsize> =
                            (0..n * 4).map(|_| AtomicUsize::new(0)).collect();
                        for_each_range(n, work, |range| {
                            for i in range {
                                if nested {
                                    for_each_range(4, MIN_PARALLEL_WORK, |inner| {
                                        for j in inner {
                                            hits[i * 4 + j].fetch_add(1, Ordering::Relaxed);
                                        }
                                    });
                                } else {
                                    for j in 0..4 {
                                        hits[i * 4 + j].fetch_add(1, Ordering::Relaxed);
                                    }
                                }
                            }
                        });
                        assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
                    }
                });
            }
        });
    }

    /// A panic in a worker's task or the caller's own reaches the caller; the workers are released
    /// and serve the next call.
    #[test]
    fn a_panic_in_a_task_reaches_the_caller_and_the_workers_stay_usable() {
        let _alone = ON_WORKERS.lock().unwrap_or_else(PoisonError::into_inner);
        let mut worker_panics = 0;
        for call in 0..200 {
            let everywhere = call % 2 == 0;
            let result = std::panic::catch_unwind(|| {
                for_each_range(64, MIN_PARALLEL_WORK / 16, |_| {
                    assert!(!(everywhere || on_worker()), "task failed");
                    // Slow enough for a worker to take some ranges.
                    std::thread::sleep(std::time::Duration::from_micros(20));
                });
            });
            if everywhere {
                assert!(result.is_err());
            } else if result.is_err() {
                worker_panics += 1;
            }
            let mut out = vec![0u32; 1 << 16];
            let src: Vec<u32> = (0..1 << 16).collect();
            parallel_copy(&src, &mut out);
            assert_eq!(out, src);
            if worker_panics >= 3 {
                break;
            }
        }
        if num_threads() > 1 {
            assert!(worker_panics > 0, "no task ran on a worker");
        }
    }

    /// Tests that need a task to reach a worker take turns: while one owns the workers, the
    /// other's calls run on its own thread.
    static ON_WORKERS: Mutex<()> = Mutex::new(());

    /// Whether this code runs on one of the pool's workers.
    fn on_worker() -> bool {
        std::thread::current()
            .name()
            .is_some_and(|name| name.starts_with("rsnorm-"))
    }

    /// `join` returns each closure's own result, runs each exactly once, sometimes on a worker
    /// (when there is one), nests (the inner call runs on its thread), and passes a panic on.
    #[test]
    fn join_runs_each_closure_once_and_returns_its_result() {
        let _alone = ON_WORKERS.lock().unwrap_or_else(PoisonError::into_inner);
        let runs = AtomicUsize::new(0);
        let mut b_on_worker = 0;
        let calls = 200u64;
        for call in 0..calls {
            let (a, (b, worker)) = join(
                || {
                    runs.fetch_add(1, Ordering::Relaxed);
                    let (x, y) = join(|| call * 3, || call + 7);
                    // Long enough for a spinning worker to claim `b`.
                    std::thread::sleep(std::time::Duration::from_micros(50));
                    (x, y)
                },
                || {
                    runs.fetch_add(1, Ordering::Relaxed);
                    (format!("b{call}"), on_worker())
                },
            );
            assert_eq!((a, b), ((call * 3, call + 7), format!("b{call}")));
            b_on_worker += usize::from(worker);
        }
        assert_eq!(runs.load(Ordering::Relaxed), 2 * calls as usize);
        if num_threads() > 1 {
            assert!(b_on_worker > 0, "b never ran on a worker");
        }
        let panicked = std::panic::catch_unwind(|| join(|| 1, || panic!("b failed")));
        assert!(panicked.is_err());
        assert_eq!(join(|| 2, || 3), (2, 3));
    }

    #[test]
    fn parallel_copy_copies() {
        let src: Vec<f32> = (0..200_000).map(|i| i as f32).collect();
        let mut dst = vec![0.0f32; src.len()];
        parallel_copy(&src, &mut dst);
        assert_eq!(src, dst);
    }

    #[test]
    fn parallel_scale_scales_every_element_of_every_part() {
        let values = |n: usize, k: usize| (0..n).map(move |i| (i * 3 + k) as f32);
        // One large part split into chunks, an empty one, and parts around a chunk's length.
        let sizes = [200_000, 0, 1, (1 << 14) - 1, 1 << 14, (1 << 14) + 1, 50_000];
        let mut parts: Vec<Vec<f32>> = sizes
            .iter()
            .enumerate()
            .map(|(k, &n)| values(n, k).collect())
            .collect();
        let mut slices: Vec<&mut [f32]> = parts.iter_mut().map(|p| &mut p[..]).collect();
        parallel_scale(&mut slices, 0.5);
        for (k, part) in parts.iter().enumerate() {
            assert_eq!(part.len(), sizes[k]);
            assert!(part
                .iter()
                .zip(values(sizes[k], k))
                .all(|(&v, want)| v.to_bits() == (want * 0.5).to_bits()));
        }
    }

    #[test]
    fn parallel_sum_sums_every_element() {
        let data: Vec<f32> = (0..200_000).map(|i| (i % 7) as f32).collect();
        let want: f64 = data.iter().map(|&v| f64::from(v)).sum();
        assert_eq!(parallel_sum(&data).to_bits(), want.to_bits());
    }
}
