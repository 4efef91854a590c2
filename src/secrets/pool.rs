//! Argon2id without unbounded memory: a fixed set of working buffers, one per worker, reused
//! for every digest of the process, and a cache so that no digest is computed twice.
//!
//! Each Argon2id digest needs its 19 MiB of working memory. Allocating it per digest let the
//! allocator keep the freed blocks (glibc's dynamic mmap threshold moves them onto its heaps),
//! so a run's peak memory grew with the number of secrets (issue 15). Here at most
//! [`Pool::size`] buffers ever exist, each allocated once and then reused.
//!
//! Invariants: at most `size` buffers exist and are in use at once (a caller waits for one
//! to come back); the cache's keys are HMACs under a key drawn at random when the process
//! starts, so neither key nor value of the cache is a secret in clear, and what it holds
//! is of no use outside this process.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};

use argon2::{Algorithm, Argon2, Block, Params, Version};
use hmac::{KeyInit, Mac};
use sha2::Sha256;

/// The parameters of every Argon2id digest and key derivation: OWASP's minimum for Argon2id
/// (19 MiB, 2 passes, 1 lane), 32 bytes out.
pub(super) fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, Some(32)).expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Working buffers of Argon2id, at most `size` of them, each allocated on first need and kept.
pub struct Pool {
    size: usize,
    state: Mutex<PoolState>,
    returned: Condvar,
}

#[derive(Default)]
struct PoolState {
    free: Vec<Box<[Block]>>,
    /// Buffers allocated so far (never more than `size`).
    created: usize,
    /// Buffers in use now, and the most ever in use at once.
    live: usize,
    peak: usize,
}

/// What a [`Pool`] did: the test of issue 15's memory bound reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// The most buffers the pool may hold.
    pub size: usize,
    /// Buffers allocated (each 19 MiB), never more than `size`.
    pub created: usize,
    /// The most Argon2id computations that ran at once.
    pub peak_live: usize,
}

impl Pool {
    /// A pool of `size` buffers (at least one).
    pub fn new(size: usize) -> Pool {
        Pool { size: size.max(1), state: Mutex::default(), returned: Condvar::new() }
    }

    /// Sized to the machine: one buffer per core this process may use, at most 8
    /// (152 MiB), however many digests a run needs.
    pub fn for_machine() -> Pool {
        Pool::new(std::thread::available_parallelism().map_or(1, |n| n.get()).min(8))
    }

    pub fn size(&self) -> usize {
        self.size
    }

    pub fn stats(&self) -> PoolStats {
        let s = self.lock();
        PoolStats { size: self.size, created: s.created, peak_live: s.peak }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` with a working buffer of [`argon2`]'s size, waiting while every buffer is
    /// in use. The buffer goes back to the pool afterwards, even if `f` panics.
    pub fn with<R>(&self, f: impl FnOnce(&mut [Block]) -> R) -> R {
        let kept = {
            let mut s = self.lock();
            let kept = loop {
                if let Some(b) = s.free.pop() {
                    break Some(b);
                }
                if s.created < self.size {
                    s.created += 1;
                    break None;
                }
                s = self.returned.wait(s).unwrap_or_else(|p| p.into_inner());
            };
            s.live += 1;
            s.peak = s.peak.max(s.live);
            kept
        };
        let mut back = Back { pool: self, buf: None };
        // A new buffer is allocated outside the lock: zeroing 19 MiB takes milliseconds.
        let mut buf = kept.unwrap_or_else(|| vec![Block::new(); argon2().params().block_count()].into_boxed_slice());
        let r = f(&mut buf);
        back.buf = Some(buf);
        r
    }
}

/// Gives a buffer back (or, after a panic, its place) when dropped.
struct Back<'a> {
    pool: &'a Pool,
    buf: Option<Box<[Block]>>,
}

impl Drop for Back<'_> {
    fn drop(&mut self) {
        let mut s = self.pool.lock();
        s.live -= 1;
        match self.buf.take() {
            Some(b) => s.free.push(b),
            // Lost with the panic: another may be allocated in its place.
            None => s.created -= 1,
        }
        drop(s);
        self.pool.returned.notify_one();
    }
}

/// A process's Argon2id machinery: the buffer pool, the digests already made, and counts.
pub struct Engine {
    pub(super) pool: Pool,
    /// Raw Argon2id outputs by [`Engine::cache_key`].
    cache: Mutex<HashMap<[u8; 32], [u8; 32]>>,
    /// Drawn when the engine is made; keys the cache so it holds no value's plain hash.
    cache_secret: [u8; 32],
    computed: AtomicUsize,
    reused: AtomicUsize,
}

/// What an [`Engine`] did in this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineStats {
    /// Argon2id computations (digests and key derivations).
    pub computed: usize,
    /// Digests answered from the cache instead.
    pub reused: usize,
    pub pool: PoolStats,
}

impl Engine {
    pub fn new(pool: Pool) -> Engine {
        Engine {
            pool,
            cache: Mutex::default(),
            cache_secret: rand::random(),
            computed: AtomicUsize::new(0),
            reused: AtomicUsize::new(0),
        }
    }

    pub fn stats(&self) -> EngineStats {
        EngineStats {
            computed: self.computed.load(Ordering::Relaxed),
            reused: self.reused.load(Ordering::Relaxed),
            pool: self.pool.stats(),
        }
    }

    /// The cache's key for `input` under `salt`: an HMAC under this process's own random key,
    /// so the cache never holds a value, nor a hash of it anyone could test guesses against.
    fn cache_key(&self, salt: &[u8; 16], input: &[u8]) -> [u8; 32] {
        let mut m = hmac::Hmac::<Sha256>::new_from_slice(&self.cache_secret).expect("HMAC takes any key length");
        m.update(salt);
        m.update(input);
        m.finalize().into_bytes().into()
    }

    fn cached(&self, key: &[u8; 32]) -> Option<[u8; 32]> {
        let hit = self.cache.lock().unwrap_or_else(|p| p.into_inner()).get(key).copied();
        if hit.is_some() {
            self.reused.fetch_add(1, Ordering::Relaxed);
        }
        hit
    }

    fn compute(&self, salt: &[u8; 16], input: &[u8], mem: &mut [Block]) -> [u8; 32] {
        let mut out = [0u8; 32];
        argon2().hash_password_into_with_memory(input, salt, &mut out, mem).expect("argon2 with fixed-size output");
        self.computed.fetch_add(1, Ordering::Relaxed);
        out
    }

    /// Argon2id of `input` under `salt`, from the cache when this process made it before.
    pub fn hash(&self, salt: &[u8; 16], input: &[u8]) -> [u8; 32] {
        let key = self.cache_key(salt, input);
        if let Some(out) = self.cached(&key) {
            return out;
        }
        let out = self.pool.with(|mem| self.compute(salt, input, mem));
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).insert(key, out);
        out
    }

    /// Argon2id of each `(salt, input)` not cached yet, on up to [`Pool::size`] threads, each
    /// holding one buffer for the whole batch. Returns when all are in the cache.
    pub fn hash_all(&self, jobs: &[([u8; 16], &[u8])]) {
        let mut seen = std::collections::HashSet::new();
        // (cache key, job) of each distinct job not cached yet.
        type Todo<'j, 'v> = ([u8; 32], &'j ([u8; 16], &'v [u8]));
        let todo: Vec<Todo> = jobs
            .iter()
            .map(|j| (self.cache_key(&j.0, j.1), j))
            .filter(|(k, _)| seen.insert(*k))
            .filter(|(k, _)| self.cached(k).is_none())
            .collect();
        if todo.is_empty() {
            return;
        }
        let next = AtomicUsize::new(0);
        let workers = self.pool.size().min(todo.len());
        let work = || {
            self.pool.with(|mem| {
                while let Some((key, (salt, input))) = todo.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let out = self.compute(salt, input, mem);
                    self.cache.lock().unwrap_or_else(|p| p.into_inner()).insert(*key, out);
                }
            })
        };
        if workers == 1 {
            return work();
        }
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(work);
            }
        });
    }

    /// One Argon2id computation, never cached (a key derivation: its output is a key).
    pub fn derive(&self, salt: &[u8; 16], input: &[u8]) -> zeroize::Zeroizing<[u8; 32]> {
        let mut out = zeroize::Zeroizing::new([0u8; 32]);
        *out = self.pool.with(|mem| self.compute(salt, input, mem));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 15: memory is bounded by the pool, not by how many digests are asked for or by
    /// how many threads ask. 32 digests from 16 threads on a pool of 2: never more than 2
    /// buffers exist or are in use, and each digest is computed once.
    #[test]
    fn live_argon2_contexts_never_exceed_the_pool() {
        let engine = Engine::new(Pool::new(2));
        let values: Vec<String> = (0..32).map(|i| format!("value-{i}")).collect();
        std::thread::scope(|s| {
            for t in 0..16 {
                let (engine, values) = (&engine, &values);
                s.spawn(move || {
                    for v in values.iter().skip(t % 4).step_by(4) {
                        engine.hash(&[7; 16], v.as_bytes());
                    }
                });
            }
        });
        let st = engine.stats();
        assert!(st.pool.created <= 2 && st.pool.peak_live <= 2, "{st:?}");
        assert!(st.pool.peak_live >= 1);
        // 32 distinct values asked 4 times each over the threads: some asks may race to
        // compute the same value, but never more than the threads asking at once.
        assert!(st.computed >= 32 && st.computed + st.reused == 16 * 8, "{st:?}");

        // A batch: one computation per distinct (salt, value), the rest from the cache.
        let engine = Engine::new(Pool::new(3));
        let jobs: Vec<([u8; 16], &[u8])> = (0..40).map(|i| ([(i % 2) as u8; 16], values[i % 10].as_bytes())).collect();
        engine.hash_all(&jobs);
        let st = engine.stats();
        assert_eq!(st.computed, 10, "{st:?}");
        assert!(st.pool.created <= 3 && st.pool.peak_live <= 3, "{st:?}");
        engine.hash_all(&jobs);
        for (salt, v) in &jobs {
            engine.hash(salt, v);
        }
        assert_eq!(engine.stats().computed, 10, "nothing computed twice");
    }

    #[test]
    fn pooled_digests_equal_argon2id_with_fresh_memory() {
        let engine = Engine::new(Pool::new(1));
        let mut want = [0u8; 32];
        argon2().hash_password_into(b"hunter2", &[1; 16], &mut want).unwrap();
        // The buffer is reused: what an earlier digest left in it changes nothing.
        engine.hash(&[9; 16], b"something else");
        assert_eq!(engine.hash(&[1; 16], b"hunter2"), want);
        engine.hash_all(&[([2; 16], b"x"), ([1; 16], b"hunter2")]);
        assert_eq!(engine.hash(&[1; 16], b"hunter2"), want);
    }
}
