//! Throughput measurement: split work into one contiguous share per thread,
//! run the shares on scoped threads, repeat, keep the median.

use std::time::Instant;

/// Each timed run lasts at least this long, so thread start-up and timer
/// resolution stay negligible against the work.
const MIN_RUN_SECS: f64 = 0.05;

/// Median wall time (seconds) of one `work(thread, threads)` pass on
/// `threads` threads, over `repeats` timed runs after a warm-up. Fast work
/// is repeated inside each run (every thread loops over its own share) and
/// the time divided by the loop count.
pub fn median_secs(threads: usize, repeats: usize, work: impl Fn(usize, usize) + Sync) -> f64 {
    let run = |iters: usize| {
        let t = Instant::now();
        if threads == 1 {
            for _ in 0..iters {
                work(0, 1);
            }
        } else {
            std::thread::scope(|s| {
                for i in 0..threads {
                    let w = &work;
                    s.spawn(move || {
                        for _ in 0..iters {
                            w(i, threads)
                        }
                    });
                }
            });
        }
        t.elapsed().as_secs_f64() / iters as f64
    };
    let once = run(1);
    let iters = ((MIN_RUN_SECS / once.max(1e-9)).ceil() as usize).clamp(1, 100_000);
    // A full-length untimed run first, so every core is awake and clocked up.
    run(iters);
    median((0..repeats.max(1)).map(|_| run(iters)).collect())
}

/// The middle value (upper middle for an even count) of a non-empty list.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// The share of `blocks` blocks that thread `i` of `n` owns.
pub fn share(blocks: usize, i: usize, n: usize) -> std::ops::Range<usize> {
    (blocks * i / n)..(blocks * (i + 1) / n)
}
