//! CPU-heavy work (argon2 password hashing, RSA key generation, SHA-512 crypt) behind a bounded
//! queue (SPEC section 6).
//!
//! Without it, every request that hashes a password takes a thread of the blocking pool (512 by
//! default) and, for argon2, 19 MiB of memory: fifty concurrent sign-ins took a server from 74 MB
//! to about 1 GB. Here at most `workers` jobs run at once and at most `waiting` more wait their
//! turn; any further caller is refused at once with [`CoreError::Busy`], before any work, so a
//! flood costs the server a refusal, not memory or a thread.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use keyplane_core::CoreError;
use tokio::sync::Semaphore;

/// Callers that may wait for a worker beyond those running, per worker.
pub const WAITING_PER_WORKER: usize = 8;

pub struct CpuQueue {
    /// One permit per job allowed to run now.
    running: Arc<Semaphore>,
    /// One permit per job admitted (running or waiting); none left means busy.
    admitted: Arc<Semaphore>,
    started: AtomicU64,
}

impl Default for CpuQueue {
    /// As many workers as the machine has cores, and [`WAITING_PER_WORKER`] waiting per worker.
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::new(cores, cores * WAITING_PER_WORKER)
    }
}

impl CpuQueue {
    /// At most `workers` jobs at once (at least one) and `waiting` more queued.
    pub fn new(workers: usize, waiting: usize) -> Self {
        let workers = workers.max(1);
        Self {
            running: Arc::new(Semaphore::new(workers)),
            admitted: Arc::new(Semaphore::new(workers + waiting)),
            started: AtomicU64::new(0),
        }
    }

    /// Runs `job` on the blocking pool when a worker is free; `Busy` at once when the queue is
    /// full.
    pub async fn run<T, F>(&self, job: F) -> Result<T, CoreError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let ticket = self
            .admitted
            .clone()
            .try_acquire_owned()
            .map_err(|_| CoreError::Busy)?;
        let slot = self
            .running
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| CoreError::Busy)?;
        self.started.fetch_add(1, Ordering::Relaxed);
        // The permits move into the job: a caller that gives up (a request timeout drops its
        // future) does not stop the thread, so the job keeps its place until it really ends.
        tokio::task::spawn_blocking(move || {
            let _held = (ticket, slot);
            job()
        })
        .await
        .map_err(|e| CoreError::Internal(format!("CPU job: {e}")))
    }

    /// How many jobs have started since the server did (tests check that a path went through the
    /// queue).
    pub fn jobs_started(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Barrier;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn callers_beyond_running_and_waiting_are_refused_at_once() {
        let queue = Arc::new(CpuQueue::new(2, 1));
        // The two running jobs and the test meet here, so the jobs hold their workers until the
        // test has seen the refusal.
        let release = Arc::new(Barrier::new(3));
        let started = Arc::new(Barrier::new(3));
        let mut running = Vec::new();
        for _ in 0..2 {
            let (q, release, started) = (queue.clone(), release.clone(), started.clone());
            running.push(tokio::spawn(async move {
                q.run(move || {
                    started.wait();
                    release.wait();
                    7
                })
                .await
            }));
        }
        let s = started.clone();
        tokio::task::spawn_blocking(move || s.wait()).await.unwrap();
        // The third caller waits for a worker (the queue's one waiting place).
        let q = queue.clone();
        let waiting = tokio::spawn(async move { q.run(|| 8).await });
        while queue.admitted.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        // The fourth is refused without waiting.
        assert!(matches!(queue.run(|| 9).await, Err(CoreError::Busy)));
        assert_eq!(queue.jobs_started(), 2);
        let r = release.clone();
        tokio::task::spawn_blocking(move || r.wait()).await.unwrap();
        for job in running {
            assert_eq!(job.await.unwrap().unwrap(), 7);
        }
        assert_eq!(waiting.await.unwrap().unwrap(), 8);
        // Once the jobs end their places are free again.
        assert_eq!(queue.run(|| 10).await.unwrap(), 10);
        assert_eq!(queue.jobs_started(), 4);
    }
}
