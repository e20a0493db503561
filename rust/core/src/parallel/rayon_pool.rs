//! rsnorm's rayon pool, for `join` and the parallel sort.

use rayon::{ThreadPool, ThreadPoolBuilder};
use std::thread::JoinHandle;

use super::workers::join_all;

/// rsnorm's rayon pool (`None` when the system refuses its threads: work then runs serially), with
/// its threads, joined when it is dropped (see [`join_all`]).
pub(super) struct RayonPool {
    pub(super) pool: Option<ThreadPool>,
    handles: Vec<JoinHandle<()>>,
}

impl RayonPool {
    pub(super) fn start(threads: usize) -> RayonPool {
        let mut handles = Vec::new();
        let pool = ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("rsnorm-rayon-{i}"))
            .spawn_handler(|thread| {
                let mut builder = std::thread::Builder::new();
                if let Some(name) = thread.name() {
                    builder = builder.name(name.to_owned());
                }
                if let Some(size) = thread.stack_size() {
                    builder = builder.stack_size(size);
                }
                handles.push(builder.spawn(|| thread.run())?);
                Ok(())
            })
            .build()
            .ok();
        if pool.is_none() {
            // Threads of a pool that failed to start end without it; nothing will wake them to be
            // joined.
            handles.clear();
        }
        RayonPool { pool, handles }
    }
}

impl Drop for RayonPool {
    fn drop(&mut self) {
        // Dropping the pool tells its threads to end.
        drop(self.pool.take());
        join_all(std::mem::take(&mut self.handles));
    }
}
