//! Threads that run recognition streams, kept for reuse.
//!
//! A stream runs for seconds to minutes on a thread of its own (never an
//! async worker). Starting a fresh thread per stream cost about 7 % more
//! CPU per utterance than reusing one (measured with libvosk called
//! directly, benches/asr.rs): a new thread starts with cold per-thread
//! state (allocator caches and the like). So a thread that finishes a
//! stream waits [`IDLE`] for the next one before it exits.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a thread waits for another stream before exiting.
pub(crate) const IDLE: Duration = Duration::from_secs(30);

type Job = Box<dyn FnOnce() + Send + 'static>;

struct Idle {
    next_id: u64,
    /// Waiting threads. A thread is removed either by a dispatcher (who
    /// then sends it a job) or by itself when it exits, always under the
    /// lock, so a popped thread is committed to receive its job.
    waiting: Vec<(u64, mpsc::Sender<Job>)>,
}

#[derive(Clone)]
pub(crate) struct Workers {
    idle: Arc<Mutex<Idle>>,
    name: &'static str,
}

impl Workers {
    pub(crate) fn new(name: &'static str) -> Workers {
        Workers {
            idle: Arc::new(Mutex::new(Idle {
                next_id: 0,
                waiting: Vec::new(),
            })),
            name,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Idle> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Threads waiting for work.
    #[cfg(test)]
    pub(crate) fn idle(&self) -> usize {
        self.lock().waiting.len()
    }

    /// Runs `job` on a waiting thread, or a new one.
    pub(crate) fn run(&self, job: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
        let mut job: Job = Box::new(job);
        loop {
            let Some((_, tx)) = self.lock().waiting.pop() else {
                break;
            };
            match tx.send(job) {
                Ok(()) => return Ok(()),
                // That thread died (a job panicked): try another.
                Err(mpsc::SendError(back)) => job = back,
            }
        }
        let (tx, rx) = mpsc::channel::<Job>();
        let id = {
            let mut idle = self.lock();
            idle.next_id += 1;
            idle.next_id
        };
        let workers = self.clone();
        std::thread::Builder::new()
            .name(self.name.into())
            .spawn(move || workers.serve(id, job, tx, rx))?;
        Ok(())
    }

    fn serve(&self, id: u64, first: Job, tx: mpsc::Sender<Job>, rx: mpsc::Receiver<Job>) {
        let mut job = first;
        loop {
            job();
            self.lock().waiting.push((id, tx.clone()));
            job = match rx.recv_timeout(IDLE) {
                Ok(next) => next,
                Err(RecvTimeoutError::Timeout) => {
                    let mut idle = self.lock();
                    match idle.waiting.iter().position(|(i, _)| *i == id) {
                        Some(at) => {
                            idle.waiting.swap_remove(at);
                            return;
                        }
                        // A dispatcher took this thread: its job is coming.
                        None => {
                            drop(idle);
                            match rx.recv() {
                                Ok(next) => next,
                                Err(_) => return,
                            }
                        }
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;

    #[test]
    fn threads_are_reused_and_jobs_all_run() {
        let workers = Workers::new("asr-test");
        let (tx, rx) = channel();
        for i in 0..20 {
            let tx = tx.clone();
            workers
                .run(move || {
                    let name = std::thread::current().id();
                    tx.send((i, name)).unwrap();
                })
                .unwrap();
            // Let the thread go back to waiting.
            while workers.idle() == 0 {
                std::thread::yield_now();
            }
        }
        drop(tx);
        let done: Vec<_> = rx.iter().collect();
        assert_eq!(done.len(), 20);
        let threads: std::collections::HashSet<_> = done.iter().map(|(_, t)| *t).collect();
        assert_eq!(threads.len(), 1, "one thread served every job in turn");
    }

    #[test]
    fn concurrent_jobs_get_their_own_threads_and_a_panic_is_survived() {
        let workers = Workers::new("asr-test");
        let (tx, rx) = channel();
        let gate = Arc::new(std::sync::Barrier::new(4));
        for _ in 0..4 {
            let (tx, gate) = (tx.clone(), gate.clone());
            workers
                .run(move || {
                    gate.wait();
                    tx.send(std::thread::current().id()).unwrap();
                })
                .unwrap();
        }
        let threads: std::collections::HashSet<_> = (0..4).map(|_| rx.recv().unwrap()).collect();
        assert_eq!(threads.len(), 4);
        while workers.idle() < 4 {
            std::thread::yield_now();
        }
        workers.run(|| panic!("job fails")).unwrap();
        let tx2 = tx.clone();
        workers
            .run(move || tx2.send(std::thread::current().id()).unwrap())
            .unwrap();
        assert!(rx.recv_timeout(Duration::from_secs(5)).is_ok());
    }
}
