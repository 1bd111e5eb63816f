//! ns per standard normal on one thread: the vectorised generator (simd_rng::LaneStream, 8
//! Xoshiro256++ lanes, Ziggurat with gathers) against the scalar one every kernel uses today
//! (rng::Stream + rand_distr's Ziggurat), plus raw words and uniforms.
//! Run: `cargo bench --bench rng_normals` (optional argument: the fill length, default 4096).

use std::hint::black_box;
use std::time::Instant;

use _core::random::rng::{normal, Stream};
use _core::random::simd_rng::LaneStream;

/// Best of 5 rounds of ≥ 0.2 s each: nanoseconds per value.
fn time(name: &str, per_call: usize, mut f: impl FnMut()) -> f64 {
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let t = Instant::now();
        let mut calls = 0usize;
        while t.elapsed().as_secs_f64() < 0.2 {
            for _ in 0..64 {
                f();
            }
            calls += 64;
        }
        best = best.min(t.elapsed().as_secs_f64() / (calls * per_call) as f64 * 1e9);
    }
    println!("{name:<34} {best:7.3} ns");
    best
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(4096);
    println!("fill length {n}, one thread");
    let mut out = vec![0.0f64; n];
    let mut words = vec![0u64; n];
    let mut lanes = LaneStream::new([1, 2], 3);
    let mut scalar = Stream::new([1, 2], 3);
    let simd = time("LaneStream::fill_normal", n, || {
        lanes.fill_normal(black_box(&mut out));
    });
    let zig = time("rng::normal (scalar Ziggurat)", n, || {
        for v in black_box(&mut out).iter_mut() {
            *v = normal(&mut scalar);
        }
    });
    time("LaneStream::fill_u64", n, || {
        lanes.fill_u64(black_box(&mut words));
    });
    time("Stream::next_u64 (scalar)", n, || {
        for w in black_box(&mut words).iter_mut() {
            *w = scalar.next_u64();
        }
    });
    time("LaneStream::fill_uniform", n, || {
        lanes.fill_uniform(black_box(&mut out));
    });
    time("LaneStream::fill_open_uniform", n, || {
        lanes.fill_open_uniform(black_box(&mut out));
    });
    println!(
        "normal speed-up, vectorised over scalar: {:.2}x",
        zig / simd
    );
}
