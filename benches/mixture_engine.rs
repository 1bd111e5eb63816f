//! ns per sample on one thread of a ReverseKL training step (d = 1, B = 64, no replay): the
//! K-component engine (mixture_engine) at K = 2, 3, 4 against the two-mode engine (issue 20
//! asks K = 4 at most 2.5× the two-mode cost per sample).
//! Run: `cargo bench --bench mixture_engine`.

use std::time::Instant;

use _core::engine::problem::Problem as TwoModeProblem;
use _core::engine::training::{records_in, simulation, Records};
use _core::mixture_engine::Update;
use _core::mixture_engine::{MixtureObjective, MixtureRecords, Problem, ProblemSpec, Simulation};
use _core::model::mixture::{Cov, Gaussian};
use _core::model::params::{Params, WeightParam};
use _core::model::two_mode::Mix2;
use _core::objectives::{Baseline, ObjectiveSpec, ReverseKL};
use _core::random::starvation::Slots;

const BATCH: usize = 64;
const REPLICATES: usize = 64;
const STEPS: u64 = 400;

fn objective() -> ReverseKL {
    ReverseKL {
        replay: 0.0,
        replay_slots: Slots::Bernoulli,
        weight_cap: None,
        baseline: Baseline::Loo,
    }
}

/// Best of 5 runs: nanoseconds per sample.
fn best(mut f: impl FnMut()) -> f64 {
    let samples = (BATCH * REPLICATES) as f64 * STEPS as f64;
    (0..5)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() / samples * 1e9
        })
        .fold(f64::INFINITY, f64::min)
}

fn two_mode() -> f64 {
    let cov = Cov::scalar(1.0).unwrap();
    let g = |m: f64| Gaussian::new(vec![m], cov.clone());
    let problem = TwoModeProblem {
        dim: 1,
        target: Mix2::new(0.4, g(-3.0), g(3.0)),
        model_old_cov: cov.clone(),
        model_new_cov: cov.clone(),
        start: Params::from_alpha(0.5, vec![-2.5], vec![2.5], WeightParam::Logit),
        objective: ObjectiveSpec::ReverseKL(objective()),
        weight_param: WeightParam::Logit,
        lr: 0.01,
        lr_scale: [1.0; 3],
        scales: None,
        update: _core::engine::problem::Update::Sgd,
    };
    best(|| {
        let mut sim = simulation(problem.clone(), BATCH, REPLICATES, [1, 2]).unwrap();
        let n = records_in(0, STEPS, STEPS) * REPLICATES;
        let (mut w, mut o, mut m, mut s, mut sc) = (
            vec![0.0; n],
            vec![0.0; n],
            vec![0.0; n],
            vec![0; n],
            vec![0.0; 2 * n],
        );
        let rec = Records {
            weight: &mut w,
            old: &mut o,
            new: &mut m,
            starved: &mut s,
            scale: &mut sc,
        };
        sim.advance(STEPS, STEPS, rec).unwrap();
    })
}

fn k_component(k: usize) -> f64 {
    let covs = || (0..k).map(|_| Cov::scalar(1.0).unwrap()).collect();
    let target_means: Vec<f64> = (0..k).map(|j| 6.0 * j as f64).collect();
    let start_means: Vec<f64> = target_means.iter().map(|m| m + 0.5).collect();
    let weights = vec![1.0 / k as f64; k];
    let problem = Problem::new(ProblemSpec {
        dim: 1,
        target_weights: &weights,
        target_means: &target_means,
        target_covs: covs(),
        model_covs: covs(),
        start_weights: &weights,
        start_means: &start_means,
        objective: MixtureObjective::ReverseKL(objective()),
        new_components: &[k as i64 - 1],
        replay_mix: &vec![1.0 / (k - 1) as f64; k - 1],
        label_rewards: &[],
        lr: 0.01,
        lr_weight: 1.0,
        lr_means: 1.0,
        update: Update::Sgd,
    })
    .unwrap();
    best(|| {
        let mut sim = Simulation::new(problem.clone(), BATCH, REPLICATES, [1, 2]).unwrap();
        let n = REPLICATES * k;
        let (mut w, mut m, mut s) = (vec![0.0; n], vec![0.0; n], vec![0; n]);
        let rec = MixtureRecords {
            weights: &mut w,
            means: &mut m,
            starved: &mut s,
        };
        sim.advance(STEPS, STEPS, rec).unwrap();
    })
}

fn main() {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    pool.install(|| {
        let base = two_mode();
        println!("ReverseKL, d = 1, B = {BATCH}, one thread: ns per sample");
        println!("two-mode engine          {base:7.2}");
        for k in [2, 3, 4] {
            let t = k_component(k);
            println!(
                "K-component engine K={k}   {t:7.2}  ({:.2}x two-mode)",
                t / base
            );
        }
    });
}
