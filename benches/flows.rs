//! 10,000 concurrent IVR flow sessions: step latency and memory.
//!
//! Each session runs `flows/main-menu.rhai` (business hours, contact
//! lookup, a menu with retries, a queue) the way a call does: it advances
//! the flow (a step is a replay of the script to its next command), waits
//! the caller's "think time" (a prompt, a key: 0.5-1.5 s, random), then
//! answers the command and advances again. Sessions start spread over one
//! second, so all 10,000 are live at once. We time every step (the
//! synchronous `FlowEngine::advance` call, on the 2 runtime worker threads)
//! and report the median, p99 and max, steps per second, the peak of live
//! sessions, and the heap each live session holds (a counting allocator).
//!
//!     cargo bench --bench flows                 # 10,000 sessions
//!     cargo bench --bench flows -- 2000 5       # sessions, rounds

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

/// Counts live heap bytes.
struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        LIVE.fetch_add(n as isize - l.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

use serde_json::{Value, json};
use switchboard::ivr::{Command, Context, Entry, FlowEngine, Limits, Next};

const FLOW: &str = include_str!("../flows/main-menu.rhai");

fn heap() -> isize {
    LIVE.load(Ordering::Relaxed)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// What a caller does: a wrong key first for a third of them, then 1-3.
fn answer(c: &Command, session: usize, asked: &mut u32) -> Value {
    match c {
        Command::Gather { .. } => {
            *asked += 1;
            if session.is_multiple_of(3) && *asked == 1 {
                json!("9")
            } else {
                json!(((session % 3) + 1).to_string())
            }
        }
        // In office hours (New York): a Tuesday at 10:00.
        Command::Now => json!("2026-12-01T10:00:00-05:00"),
        Command::Lookup => {
            if session.is_multiple_of(5) {
                json!({ "id": "c", "name": "Grace Hopper", "tags": ["vip"] })
            } else {
                Value::Null
            }
        }
        Command::Record { .. } => json!({ "recording": null, "secs": 0, "transcript": "" }),
        _ => Value::Null,
    }
}

async fn session(
    engine: Arc<FlowEngine>,
    flow: Arc<switchboard::ivr::Flow>,
    n: usize,
) -> (Vec<u32>, &'static str) {
    let ctx = Arc::new(Context {
        channel: "voice".into(),
        caller: format!("+1202555{n:04}"),
        ..Context::default()
    });
    let mut journal: Vec<Entry> = Vec::new();
    let mut latencies = Vec::with_capacity(16);
    let mut asked = 0;
    let mut seed = (n as u64)
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    loop {
        let t = Instant::now();
        let (next, j) = engine.advance(&flow, &ctx, journal);
        latencies.push(t.elapsed().as_nanos() as u32);
        journal = j;
        match next {
            Next::End { end, .. } => {
                let kind = match end {
                    switchboard::ivr::End::Queue { .. } => "queue",
                    switchboard::ivr::End::Error { .. } => "error",
                    _ => "other",
                };
                return (latencies, kind);
            }
            Next::Do { command, line } => {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                let think = 500 + (seed >> 33) % 1000;
                tokio::time::sleep(Duration::from_millis(think)).await;
                let answer = answer(&command, n, &mut asked);
                journal.push(Entry {
                    command,
                    answer,
                    line,
                });
            }
        }
    }
}

fn pct(sorted: &[u32], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sessions = args.first().copied().unwrap_or(10_000);
    let rounds = args.get(1).copied().unwrap_or(3);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let engine = Arc::new(FlowEngine::new(Limits::default()));
    let flow = Arc::new(
        engine
            .compile("main-menu", 1, FLOW)
            .expect("the example flow compiles"),
    );
    println!(
        "{sessions} concurrent sessions of flows/main-menu.rhai, {rounds} rounds, 2 worker threads"
    );
    println!(
        "round  steps   p50 µs  p99 µs  max µs  steps/s  peak sessions  heap/session KiB  RSS MiB  queued"
    );
    let mut p99s = Vec::new();
    let mut p50s = Vec::new();
    let mut per_session = Vec::new();
    for round in 1..=rounds {
        let before = heap();
        let live = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let peak = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let peak_heap = Arc::new(AtomicIsize::new(0));
        let started = Instant::now();
        let results = rt.block_on(async {
            let mut handles = Vec::with_capacity(sessions);
            for n in 0..sessions {
                let (e, f, live, peak, peak_heap) = (
                    engine.clone(),
                    flow.clone(),
                    live.clone(),
                    peak.clone(),
                    peak_heap.clone(),
                );
                handles.push(tokio::spawn(async move {
                    // Arrivals spread over the first second.
                    tokio::time::sleep(Duration::from_micros(
                        (n as u64 * 1_000_000) / sessions as u64,
                    ))
                    .await;
                    let now = live.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                    // The heap while the most sessions are live (sampled).
                    if now > peak.fetch_max(now, std::sync::atomic::Ordering::SeqCst)
                        && now.is_multiple_of(100)
                    {
                        peak_heap.fetch_max(heap(), Ordering::SeqCst);
                    }
                    let r = session(e, f, n).await;
                    live.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                    r
                }));
            }
            let mut out = Vec::with_capacity(sessions);
            for h in handles {
                out.push(h.await.unwrap());
            }
            out
        });
        let wall = started.elapsed().as_secs_f64();
        let queued = results.iter().filter(|(_, k)| *k == "queue").count();
        let mut lat: Vec<u32> = results.into_iter().flat_map(|(l, _)| l).collect();
        lat.sort_unstable();
        let peak_sessions = peak.load(std::sync::atomic::Ordering::SeqCst);
        // Includes each session's task, timer and journal.
        let grown = peak_heap.load(Ordering::SeqCst) - before;
        let per = grown as f64 / 1024.0 / peak_sessions.max(1) as f64;
        println!(
            "{round:>5}  {:>6}  {:>6.1}  {:>6.1}  {:>6.1}  {:>7.0}  {peak_sessions:>13}  {per:>16.1}  {:>7}  {queued}",
            lat.len(),
            pct(&lat, 0.5),
            pct(&lat, 0.99),
            *lat.last().unwrap() as f64 / 1000.0,
            lat.len() as f64 / wall,
            rss_kib() / 1024,
        );
        assert_eq!(queued, sessions, "every session should end in a queue");
        p50s.push(pct(&lat, 0.5));
        p99s.push(pct(&lat, 0.99));
        per_session.push(per);
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    };
    println!(
        "median of rounds: p50 {:.1} µs, p99 {:.1} µs per step, {:.1} KiB of heap per live session",
        med(&mut p50s),
        med(&mut p99s),
        med(&mut per_session)
    );
}
