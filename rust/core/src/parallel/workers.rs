//! rsnorm's own workers: threads that spin a while after a call, then sleep, and run the chunks
//! of [`super::for_each_range`] beside the caller (see the module above for why).

use std::any::Any;
use std::cell::UnsafeCell;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a worker that found its last call while spinning polls for the next one before it
/// sleeps: calls are coming in a loop, and this spans the Python between two of them. OpenMP
/// runtimes spin far longer by default.
const SPIN_WHILE_BUSY: Duration = Duration::from_micros(200);
/// How long a worker that had to be woken polls after its part. A woken vCPU can share a core
/// with the caller for a while, and its spinning then slows the caller: with 200 µs here, calls
/// ~0.1–1 ms apart ran a 1 MB copy in 45–220 µs instead of 25–45 (serial: 23). Long enough to
/// catch the next call of a tight loop, which makes the worker busy.
const SPIN_AFTER_WAKE: Duration = Duration::from_micros(20);

/// A call's work as the workers see it: a closure they all run, with their index (the caller 0,
/// workers from 1), which pulls chunks until none are left. The lifetime is erased;
/// [`Workers::run`] keeps the closure alive until no worker is in it.
type Task = dyn Fn(usize) + Sync + 'static;

/// What the calling thread and the workers share.
struct Board {
    /// `(epoch << 1) | open`: a call opens a new epoch, and closes it once its chunks are done.
    state: AtomicU64,
    /// The open call's task. Written only by the owner while closed; read by a worker only after
    /// it registered in `active` and then saw the call open (see [`Workers::run`]).
    task: UnsafeCell<*const Task>,
    /// Workers inside the check-and-run step; the owner waits for zero before the task dies.
    active: AtomicUsize,
    /// A call owns the board; another call meanwhile (another Python thread, or a nested call)
    /// runs serially on its own thread.
    owned: AtomicBool,
    /// Workers asleep, or about to be, on `wake`.
    sleepers: AtomicUsize,
    sleep_lock: Mutex<()>,
    wake: Condvar,
    stop: AtomicBool,
    /// Whether idle workers spin at all: not when there are more threads than CPUs to run them,
    /// where a spinning worker takes the CPU from the thread with the work (4 threads on one CPU:
    /// LayerNorm (256, 1024) at 0.75× with spinning).
    spin: bool,
    /// A panic from a worker's part of the task, rethrown on the owner's thread.
    panic: Mutex<Option<Box<dyn Any + Send>>>,
}

// SAFETY: `task` is only written by the owning call while no worker can read it, and read under the
// `state`/`active` protocol described at `Workers::run`; everything else is atomics and mutexes.
unsafe impl Sync for Board {}
unsafe impl Send for Board {}

impl Board {
    /// Wakes every sleeping worker. Taking the lock first means a worker between its last check
    /// of `state`/`stop` and its wait (it holds the lock there) is already waiting when notified.
    fn wake_sleepers(&self) {
        drop(
            self.sleep_lock
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        self.wake.notify_all();
    }

    fn opened_after(&self, last_epoch: u64) -> Option<u64> {
        let state = self.state.load(Ordering::SeqCst);
        (state & 1 == 1 && state >> 1 != last_epoch).then_some(state >> 1)
    }
}

/// rsnorm's worker threads for [`for_each_range`].
pub(super) struct Workers {
    board: Arc<Board>,
    pub(super) threads: usize,
    handles: Vec<JoinHandle<()>>,
    /// When the last mid-size call run serially ended ([`Workers::nanos_since_start`]; 0: none
    /// yet).
    last_serial_end: AtomicU64,
    started: Instant,
}

impl Workers {
    pub(super) fn start(threads: usize) -> Workers {
        let board = Arc::new(Board {
            state: AtomicU64::new(0),
            task: UnsafeCell::new(std::ptr::null::<fn(usize)>() as *const Task),
            active: AtomicUsize::new(0),
            owned: AtomicBool::new(false),
            sleepers: AtomicUsize::new(0),
            sleep_lock: Mutex::new(()),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
            spin: std::thread::available_parallelism().is_ok_and(|cpus| threads <= cpus.get()),
            panic: Mutex::new(None),
        });
        // A thread the system refuses (a process limit) leaves fewer workers, not a panic.
        let mut handles = Vec::new();
        for i in 1..threads {
            let board = board.clone();
            match std::thread::Builder::new()
                .name(format!("rsnorm-{i}"))
                .spawn(move || work_loop(&board, i))
            {
                Ok(handle) => handles.push(handle),
                Err(_) => break,
            }
        }
        Workers {
            board,
            threads: 1 + handles.len(),
            handles,
            last_serial_end: AtomicU64::new(0),
            started: Instant::now(),
        }
    }

    /// Nanoseconds since these workers started (at least 1).
    fn nanos_since_start(&self) -> u64 {
        self.started.elapsed().as_nanos() as u64 + 1
    }

    /// Whether a worker is awake (working or spinning), so that work handed over now is taken up
    /// without a wake-up.
    pub(super) fn any_awake(&self) -> bool {
        self.board.sleepers.load(Ordering::Relaxed) + 1 < self.threads
    }

    /// Whether a mid-size call that ran serially (every worker asleep) ended less than
    /// [`SPIN_AFTER_WAKE`] ago: calls are coming in a tight loop, where one wake-up keeps the
    /// workers spinning from call to call and pays for itself.
    pub(super) fn in_tight_loop(&self) -> bool {
        let ended = self.last_serial_end.load(Ordering::Relaxed);
        self.board.spin
            && ended != 0
            && self.nanos_since_start().saturating_sub(ended) < SPIN_AFTER_WAKE.as_nanos() as u64
    }

    pub(super) fn serial_call_ended(&self) {
        self.last_serial_end
            .store(self.nanos_since_start(), Ordering::Relaxed);
    }

    /// Runs `task` on the calling thread and on every worker that arrives while it is open,
    /// waking sleeping workers if `wake`; returns `false` without running it when another call
    /// owns the workers.
    ///
    /// Protocol: the owner writes the task, then opens a new epoch; a worker registers in
    /// `active`, then reads `state`, and runs the task only if it saw an epoch open that it has
    /// not run. After its own part the owner closes the epoch, then waits for `active` to reach
    /// zero. All four accesses are SeqCst, so either the owner sees a worker registered (and waits
    /// for it), or that worker sees the epoch closed (and leaves the task alone).
    pub(super) fn run(&self, task: &(dyn Fn(usize) + Sync), wake: bool) -> bool {
        let board = &*self.board;
        if board
            .owned
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        // SAFETY: only the lifetime changes (an `as` cast may not lengthen a trait object's); the
        // task is not used after `active` is zero below.
        #[allow(clippy::transmute_ptr_to_ptr)]
        let erased: *const Task =
            unsafe { std::mem::transmute::<*const (dyn Fn(usize) + Sync + '_), *const Task>(task) };
        // SAFETY: the epoch is closed and `active` was zero when the last call returned, so no
        // worker reads `task` now.
        unsafe { *board.task.get() = erased };
        let epoch = (board.state.load(Ordering::Relaxed) >> 1) + 1;
        board.state.store(epoch << 1 | 1, Ordering::SeqCst);
        if wake && board.sleepers.load(Ordering::SeqCst) > 0 {
            board.wake_sleepers();
        }
        let own = catch_unwind(AssertUnwindSafe(|| task(0)));
        board.state.store(epoch << 1, Ordering::SeqCst);
        let mut polls = 0u32;
        while board.active.load(Ordering::SeqCst) != 0 {
            polls += 1;
            if polls < 1 << 12 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        let worker_panic = board
            .panic
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        board.owned.store(false, Ordering::Release);
        if let Err(payload) = own {
            resume_unwind(payload);
        }
        if let Some(payload) = worker_panic {
            resume_unwind(payload);
        }
        true
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.board.stop.store(true, Ordering::SeqCst);
        self.board.wake_sleepers();
        join_all(std::mem::take(&mut self.handles));
    }
}

/// Waits for a dropped pool's threads to end. A thread still exiting while another thread forks
/// can leave the child's C library inconsistent: with detached threads, 1 in ~5 runs of 300 forks
/// beside a thread calling `set_num_threads` had a child abort with "double free or corruption"
/// on its first thread spawn. Joined, the threads are gone before `set_num_threads` returns (under
/// the GIL, so no fork can happen meanwhile).
pub(super) fn join_all(handles: Vec<JoinHandle<()>>) {
    let me = std::thread::current().id();
    for handle in handles {
        if handle.thread().id() != me {
            // A worker's panic was caught where it ran; nothing is left to report.
            let _ = handle.join();
        }
    }
}

/// A worker: waits for an epoch it has not run (spinning, then asleep), runs its part, repeats.
fn work_loop(board: &Board, index: usize) {
    let mut last_epoch = 0;
    let (after_wake, while_busy) = if board.spin {
        (SPIN_AFTER_WAKE, SPIN_WHILE_BUSY)
    } else {
        (Duration::ZERO, Duration::ZERO)
    };
    let mut spin_for = after_wake;
    loop {
        let spin_start = Instant::now();
        let mut polls = 0u32;
        let mut slept = false;
        while board.opened_after(last_epoch).is_none() {
            if board.stop.load(Ordering::Relaxed) {
                return;
            }
            polls = polls.wrapping_add(1);
            if polls.is_multiple_of(256) && spin_start.elapsed() > spin_for {
                sleep_until_opened(board, last_epoch);
                slept = true;
            } else {
                std::hint::spin_loop();
            }
        }
        spin_for = if slept { after_wake } else { while_busy };
        board.active.fetch_add(1, Ordering::SeqCst);
        if let Some(epoch) = board.opened_after(last_epoch) {
            last_epoch = epoch;
            // SAFETY: registered in `active` before seeing the epoch open, so the owner keeps the
            // task alive until this worker leaves (see `Workers::run`).
            let task = unsafe { &**board.task.get() };
            if let Err(payload) = catch_unwind(AssertUnwindSafe(|| task(index))) {
                *board.panic.lock().unwrap_or_else(PoisonError::into_inner) = Some(payload);
            }
        }
        board.active.fetch_sub(1, Ordering::SeqCst);
    }
}

fn sleep_until_opened(board: &Board, last_epoch: u64) {
    let mut guard = board
        .sleep_lock
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    board.sleepers.fetch_add(1, Ordering::SeqCst);
    while board.opened_after(last_epoch).is_none() && !board.stop.load(Ordering::SeqCst) {
        guard = board
            .wake
            .wait(guard)
            .unwrap_or_else(PoisonError::into_inner);
    }
    board.sleepers.fetch_sub(1, Ordering::SeqCst);
}
