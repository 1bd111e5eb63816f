//! Where a replicate-step of W1 goes at small batches (issue 23): ns per replicate-step on one
//! thread for ReverseKL d = 1 (LOO baseline, no replay, the default problem), split into the
//! batch gradient (draw + densities + score), the update (refresh + apply_update with the
//! runaway rule) and the whole training loop (`Simulation::advance`, R = 1000).
//! Fixed cost: fit ns/step = a + b·B over B ∈ {4, 8, 16, 32, 64}; `a` is printed.
//! Run: `cargo bench --bench small_batch`.

use std::hint::black_box;
use std::time::Instant;

use _core::engine::batch::Batch;
use _core::engine::problem::{Problem, Update};
use _core::engine::state::Grad;
use _core::engine::training::{Records, Run, Simulation};
use _core::model::mixture::{Cov, Gaussian};
use _core::model::params::{Params, WeightParam};
use _core::model::two_mode::Mix2;
use _core::objectives::{Baseline, ObjectiveSpec, ReverseKL};
use _core::random::starvation::Slots;

/// Best of 40 short rounds (≥ 5 ms each, so that some run between the scheduler's
/// interruptions on a loaded machine): nanoseconds per unit (`per_call` units per call).
fn time(per_call: usize, mut f: impl FnMut()) -> f64 {
    let mut best = f64::INFINITY;
    for _ in 0..40 {
        let t = Instant::now();
        let mut calls = 0usize;
        while t.elapsed().as_secs_f64() < 0.005 {
            f();
            calls += 1;
        }
        best = best.min(t.elapsed().as_secs_f64() / (calls * per_call) as f64 * 1e9);
    }
    best
}

/// The default problem of the benchmarks (`mixforget.bench._shared.default_problem`, d = 1).
fn w1_problem(objective: ReverseKL) -> Problem {
    let cov = Cov::scalar(1.0).unwrap();
    let g = |m: f64| Gaussian::new(vec![m], cov.clone());
    Problem {
        dim: 1,
        target: Mix2::new(0.75, g(-3.0), g(3.5)),
        model_old_cov: cov.clone(),
        model_new_cov: cov.clone(),
        start: Params::from_alpha(0.75, vec![-3.0], vec![0.5], WeightParam::Logit),
        objective: ObjectiveSpec::ReverseKL(objective),
        weight_param: WeightParam::Logit,
        lr: 0.05,
        lr_scale: [1.0, 1.0, 1.0],
        scales: None,
        update: Update::Sgd,
    }
}

fn main() {
    let objective = ReverseKL {
        replay: 0.0,
        replay_slots: Slots::Bernoulli,
        weight_cap: None,
        baseline: Baseline::Loo,
    };
    let p = w1_problem(objective);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    println!("ns per replicate-step, one thread (ReverseKL d=1, LOO)");
    println!(
        "{:>5} {:>10} {:>10} {:>10} {:>12}",
        "B", "gradient", "update", "advance", "per sample"
    );
    let mut fit = Vec::new();
    // SMALL_BATCH_B=8 times one batch size (for a profiler)
    let sizes: Vec<usize> = match std::env::var("SMALL_BATCH_B") {
        Ok(v) if !v.is_empty() => vec![v.parse().expect("SMALL_BATCH_B: a batch size")],
        _ => vec![4, 8, 16, 32, 64, 512],
    };
    for b in sizes {
        let mut rep = p.new_replicate(&objective, [1, 2], 0);
        let mut models = p.models_at(&objective, &rep);
        let mut batch = Batch::new(1, b);
        let mut grad = Grad::zeros(1);
        let gradient = time(1, || {
            black_box(p.batch_gradient(&objective, &models, &mut rep.rng, &mut batch, &mut grad));
        });
        // the update on a fixed small gradient (so that θ stays in range)
        let small = Grad {
            weight: 1e-9,
            old: vec![1e-9],
            new: vec![-1e-9],
            scale: [0.0; 2],
        };
        let mut previous = rep.theta.clone();
        let update = time(1, || {
            p.refresh(&objective, &mut models, &rep);
            p.apply_update(&objective, &mut rep, &small, &mut previous);
            black_box(&rep.theta);
        });
        let (r, steps) = (1000usize, (2_000 / b).clamp(1, 500) as u64);
        let mut sim = Simulation::new(objective, p.clone(), b, r, [3, 4]).unwrap();
        let advance = pool.install(|| {
            time(r * steps as usize, || {
                let (mut w, mut o, mut n, mut s, mut sc) = (vec![], vec![], vec![], vec![], vec![]);
                let rec = Records {
                    weight: &mut w,
                    old: &mut o,
                    new: &mut n,
                    starved: &mut s,
                    scale: &mut sc,
                };
                sim.advance(steps, u64::MAX, rec).unwrap();
            })
        });
        println!(
            "{b:>5} {gradient:>10.1} {update:>10.1} {advance:>10.1} {:>12.2}",
            advance / b as f64
        );
        if b <= 64 {
            fit.push((b as f64, advance));
        }
    }
    if fit.len() < 2 {
        return;
    }
    // least squares ns/step = a + b·B
    let n = fit.len() as f64;
    let (sx, sy) = fit
        .iter()
        .fold((0.0, 0.0), |(a, c), &(x, y)| (a + x, c + y));
    let (mx, my) = (sx / n, sy / n);
    let sxy: f64 = fit.iter().map(|&(x, y)| (x - mx) * (y - my)).sum();
    let sxx: f64 = fit.iter().map(|&(x, _)| (x - mx) * (x - mx)).sum();
    let slope = sxy / sxx;
    println!(
        "fit over B ≤ 64: fixed {:.1} ns/step + {:.2} ns/sample",
        my - slope * mx,
        slope
    );
}
