//! Finite-batch training of many replicates in parallel (docs: theory-training-loop), each on
//! its own stream, with records at absolute step counts; and the one-step gradient study.

use crate::buffers::checked_len;
use crate::engine::batch::Batch;
use crate::engine::problem::Problem;
use crate::engine::state::{Grad, Replicate};
use crate::error::{KernelError, KernelResult};
use crate::objectives::{with_objective, Objective};
use crate::random::simd_rng::LaneStream;
use rayon::prelude::*;

/// Recording buffers for one chunk of steps: (R × n_rec), (R × n_rec × d) and, for the
/// scales, (R × n_rec × 2), row-major.
pub struct Records<'a> {
    pub weight: &'a mut [f64],
    pub old: &'a mut [f64],
    pub new: &'a mut [f64],
    pub starved: &'a mut [i64],
    pub scale: &'a mut [f64],
}

/// Number of records a chunk of `steps` steps after `done` steps holds: the steps s in
/// (done, done + steps] with s % record_every == 0 (records sit at absolute step counts, so
/// a run may be cut into chunks of any length with the same records).
pub fn records_in(done: u64, steps: u64, record_every: u64) -> usize {
    ((done + steps) / record_every - done / record_every) as usize
}

/// A run of any objective advanced chunk by chunk, as the bindings drive it ([`Simulation`],
/// `population::Flow`): the objective is dispatched once, when the run is made (see
/// [`simulation`]), and once per chunk through this trait; every step inside is monomorphised.
pub trait Run: Send + Sync {
    fn problem(&self) -> &Problem;
    /// Steps run so far.
    fn steps_done(&self) -> u64;
    /// Per replicate: stopped by a non-finite parameter or the runaway bound.
    fn diverged(&self) -> Vec<bool>;
    /// Advance by `steps`, recording at every absolute step count that is a multiple of
    /// `record_every` (`records_in(steps_done, steps, record_every)` records per replicate).
    fn advance(&mut self, steps: u64, record_every: u64, rec: Records) -> KernelResult<()>;
}

/// Finite-batch training of many replicates (docs: theory-training-loop), each on its own stream.
pub struct Simulation<O: Objective> {
    pub objective: O,
    pub problem: Problem,
    pub batch_size: usize,
    pub replicates: Vec<Replicate<O::Extra>>,
    /// Steps run so far (the same for every replicate; a diverged one is frozen, not behind).
    pub steps_done: u64,
}

/// A [`Simulation`] of the problem's objective.
pub fn simulation(
    problem: Problem,
    batch_size: usize,
    replicates: usize,
    key: [u64; 2],
) -> KernelResult<Box<dyn Run>> {
    with_objective!(problem.objective, o => {
        Ok(Box::new(Simulation::new(o, problem, batch_size, replicates, key)?) as Box<dyn Run>)
    })
}

impl<O: Objective> Run for Simulation<O> {
    fn problem(&self) -> &Problem {
        &self.problem
    }

    fn steps_done(&self) -> u64 {
        self.steps_done
    }

    fn diverged(&self) -> Vec<bool> {
        self.replicates.iter().map(|r| r.diverged).collect()
    }

    /// Advance every replicate by `steps`, recording at every absolute step count that is a
    /// multiple of `record_every` into `rec` (`records_in` records per replicate), so that
    /// the records do not depend on how a run is cut into calls. Parallel over replicates.
    fn advance(&mut self, steps: u64, record_every: u64, rec: Records) -> KernelResult<()> {
        self.advance_with(steps, record_every, rec)
    }
}

impl<O: Objective> Simulation<O> {
    pub fn new(
        objective: O,
        problem: Problem,
        batch_size: usize,
        replicates: usize,
        key: [u64; 2],
    ) -> KernelResult<Simulation<O>> {
        let mut reps = Vec::new();
        reps.try_reserve_exact(replicates).map_err(|_| {
            KernelError::OutOfMemory(format!(
                "cannot allocate the state of {replicates} replicates"
            ))
        })?;
        reps.extend((0..replicates).map(|r| problem.new_replicate(&objective, key, r as u64)));
        Ok(Simulation {
            objective,
            problem,
            batch_size,
            replicates: reps,
            steps_done: 0,
        })
    }

    /// Records that `advance(steps, record_every)` writes per replicate.
    pub fn records_in(&self, steps: u64, record_every: u64) -> usize {
        records_in(self.steps_done, steps, record_every)
    }

    fn advance_with(&mut self, steps: u64, record_every: u64, rec: Records) -> KernelResult<()> {
        let n_rec = self.records_in(steps, record_every);
        let d = self.problem.dim;
        let done = self.steps_done;
        let problem = &self.problem;
        let objective = &self.objective;
        let b = self.batch_size;
        let width = checked_len(&[n_rec, d], "the records")?;
        let r = self.replicates.len();
        if rec.weight.len() != r * n_rec
            || rec.old.len() != r * width
            || rec.scale.len() != r * n_rec * 2
        {
            return Err(format!(
                "record buffers of {} and {} values do not hold {r} replicates × {n_rec} records",
                rec.weight.len(),
                rec.old.len()
            )
            .into());
        }
        // Each replicate's slices of the records (empty ones for a chunk without records).
        type Outs<'s> = (
            &'s mut [f64],
            &'s mut [f64],
            &'s mut [f64],
            &'s mut [i64],
            &'s mut [f64],
        );
        let outs: Vec<Outs> = if n_rec == 0 {
            (0..r).map(|_| Outs::default()).collect()
        } else {
            rec.weight
                .chunks_mut(n_rec)
                .zip(rec.old.chunks_mut(width))
                .zip(rec.new.chunks_mut(width))
                .zip(rec.starved.chunks_mut(n_rec))
                .zip(rec.scale.chunks_mut(n_rec * 2))
                .map(|((((w, o), n), s), sc)| (w, o, n, s, sc))
                .collect()
        };
        self.replicates.par_iter_mut().zip(outs).try_for_each(
            |(rep, (w_out, o_out, n_out, s_out, sc_out))| {
                let mut models = problem.models_at(objective, rep);
                let mut batch = Batch::try_new(d, b)?;
                let mut grad = Grad::zeros(d);
                let mut previous = rep.theta.clone();
                let mut k = 0;
                for step in done + 1..=done + steps {
                    if !rep.diverged {
                        problem.refresh(objective, &mut models, rep);
                        let old_count = problem.batch_gradient(
                            objective,
                            &models,
                            &mut rep.rng,
                            &mut batch,
                            &mut grad,
                        );
                        rep.starved += (old_count == 0) as i64;
                        problem.apply_update(objective, rep, &grad, &mut previous);
                    }
                    if step % record_every == 0 {
                        problem.record(rep, k, (w_out, o_out, n_out, s_out, sc_out));
                        k += 1;
                    }
                }
                Ok::<(), KernelError>(())
            },
        )?;
        self.steps_done += steps;
        Ok(())
    }
}

/// Batches drawn from one random stream by `estimate_gradient`: a study cut into calls at
/// multiples of this (with `first_stream` advanced by the streams used) gives the same
/// numbers as one call.
pub const BATCHES_PER_STREAM: usize = 256;

/// One-step Monte Carlo study: independent finite-batch gradients at the start state (one
/// row of `grads` and one entry of `old_counts` per batch), with old counts. The c-th run of
/// [`BATCHES_PER_STREAM`] batches uses stream (key, first_stream + c).
pub fn estimate_gradient(
    problem: &Problem,
    batch_size: usize,
    key: [u64; 2],
    first_stream: u64,
    grads: &mut [f64],
    old_counts: &mut [i64],
) -> KernelResult<()> {
    with_objective!(problem.objective, o => {
        estimate_gradient_with(&o, problem, batch_size, key, first_stream, grads, old_counts)
    })
}

fn estimate_gradient_with<O: Objective>(
    objective: &O,
    problem: &Problem,
    batch_size: usize,
    key: [u64; 2],
    first_stream: u64,
    grads: &mut [f64],
    old_counts: &mut [i64],
) -> KernelResult<()> {
    let d = problem.dim;
    let width = problem.grad_width();
    let rep = problem.new_replicate(objective, key, 0);
    let models = problem.models_at(objective, &rep);
    grads
        .par_chunks_mut(BATCHES_PER_STREAM * width)
        .zip(old_counts.par_chunks_mut(BATCHES_PER_STREAM))
        .enumerate()
        .try_for_each(|(c, (g_out, n_out))| {
            let mut rng = LaneStream::new(key, first_stream + c as u64);
            let mut batch = Batch::try_new(d, batch_size)?;
            let mut grad = Grad::zeros(d);
            for (g_row, count) in g_out.chunks_mut(width).zip(n_out.iter_mut()) {
                *count = problem.batch_gradient(objective, &models, &mut rng, &mut batch, &mut grad)
                    as i64;
                grad.write_flat(g_row);
            }
            Ok(())
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::problem::Scales;
    use crate::model::mixture::{Cov, Gaussian};
    use crate::model::params::{Params, ScaleParam, WeightParam};
    use crate::model::two_mode::Mix2;
    use crate::objectives::ObjectiveSpec;
    use crate::random::starvation::Slots;

    use crate::objectives::ForwardKL;

    fn problem(objective: ObjectiveSpec) -> Problem {
        let cov = Cov::scalar(1.0).unwrap();
        let g = |m: f64| Gaussian::new(vec![m], cov.clone());
        Problem {
            dim: 1,
            target: Mix2::new(0.75, g(-3.0), g(3.5)),
            model_old_cov: cov.clone(),
            model_new_cov: cov.clone(),
            start: Params::from_alpha(0.75, vec![-3.0], vec![0.5], WeightParam::Logit),
            objective,
            weight_param: WeightParam::Logit,
            lr: 0.05,
            lr_scale: [1.0, 1.0, 1.0],
            scales: None,
            update: Default::default(),
        }
    }

    #[test]
    fn forward_kl_forgets_mass_and_simulation_is_deterministic() {
        let p = problem(ObjectiveSpec::ForwardKL(ForwardKL {
            replay: 0.0,
            replay_slots: Slots::Bernoulli,
        }));
        let run = |threads: usize| {
            let mut sim = simulation(p.clone(), 32, 8, [5, 6]).unwrap();
            let (mut w, mut o, mut n, mut s, mut sc) = (
                vec![0.0; 8 * 4],
                vec![0.0; 8 * 4],
                vec![0.0; 8 * 4],
                vec![0i64; 8 * 4],
                vec![0.0; 8 * 4 * 2],
            );
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| {
                    sim.advance(
                        200,
                        50,
                        Records {
                            weight: &mut w,
                            old: &mut o,
                            new: &mut n,
                            starved: &mut s,
                            scale: &mut sc,
                        },
                    )
                })
                .unwrap();
            (w, o, n, s)
        };
        let a = run(1);
        assert_eq!(a, run(2));
        assert!(a.0.iter().skip(3).step_by(4).all(|&w| w < 0.3), "{:?}", a.0);
        // every batch is starved without replay
        assert!(a.3.iter().skip(3).step_by(4).all(|&s| s == 200));
    }

    fn run_in_chunks(p: &Problem, chunks: &[u64], record_every: u64) -> (Vec<f64>, Vec<bool>) {
        let mut sim = simulation(p.clone(), 16, 3, [7, 8]).unwrap();
        let mut weights = vec![Vec::new(); 3];
        for &n in chunks {
            let k = records_in(sim.steps_done(), n, record_every);
            let (mut w, mut o, mut m, mut s, mut sc) = (
                vec![0.0; 3 * k],
                vec![0.0; 3 * k],
                vec![0.0; 3 * k],
                vec![0i64; 3 * k],
                vec![0.0; 3 * k * 2],
            );
            let rec = Records {
                weight: &mut w,
                old: &mut o,
                new: &mut m,
                starved: &mut s,
                scale: &mut sc,
            };
            sim.advance(n, record_every, rec).unwrap();
            for (r, out) in weights.iter_mut().enumerate() {
                out.extend_from_slice(&w[r * k..(r + 1) * k]);
            }
        }
        let diverged = sim.diverged();
        (weights.concat(), diverged)
    }

    #[test]
    fn records_do_not_depend_on_how_a_run_is_cut_into_calls() {
        let p = problem(ObjectiveSpec::ForwardKL(ForwardKL {
            replay: 0.2,
            replay_slots: Slots::Bernoulli,
        }));
        let whole = run_in_chunks(&p, &[120], 40);
        assert_eq!(whole.0.len(), 3 * 3);
        for cut in [&[1, 2, 37, 80][..], &[39, 1, 1, 79], &[8; 15]] {
            let total: u64 = cut.iter().sum();
            assert_eq!(
                run_in_chunks(&p, cut, 40).0[..],
                whole.0[..],
                "{cut:?} ({total})"
            );
        }
    }

    #[test]
    fn gradient_study_cut_at_stream_boundaries_matches_one_call() {
        let p = problem(ObjectiveSpec::ForwardKL(ForwardKL {
            replay: 0.0,
            replay_slots: Slots::Bernoulli,
        }));
        let (n, width) = (3 * BATCHES_PER_STREAM + 5, 3);
        let mut g = vec![0.0; n * width];
        let mut c = vec![0i64; n];
        estimate_gradient(&p, 8, [1, 2], 0, &mut g, &mut c).unwrap();
        let split = 2 * BATCHES_PER_STREAM;
        let mut g2 = vec![0.0; n * width];
        let mut c2 = vec![0i64; n];
        let (ga, gb) = g2.split_at_mut(split * width);
        let (ca, cb) = c2.split_at_mut(split);
        estimate_gradient(&p, 8, [1, 2], 0, ga, ca).unwrap();
        estimate_gradient(&p, 8, [1, 2], 2, gb, cb).unwrap();
        assert_eq!(g, g2);
        assert_eq!(c, c2);
    }

    #[test]
    fn runaway_replicates_are_flagged_and_frozen() {
        let mut p = problem(ObjectiveSpec::ForwardKL(ForwardKL {
            replay: 0.0,
            replay_slots: Slots::Bernoulli,
        }));
        let start = p.start.clone();
        assert!(!p.runaway(&start));
        let far = |shift: f64| Params {
            old_mean: vec![start.old_mean[0] + shift],
            ..start.clone()
        };
        assert!(!p.runaway(&far(0.99e6)));
        assert!(p.runaway(&far(1.01e6)));
        assert!(p.runaway(&far(-1e300 * 1e10)));
        let at = |eta: f64| Params {
            weight: eta,
            ..start.clone()
        };
        assert!(p.runaway(&at(-691.0)) && p.runaway(&at(691.0)));
        // α rounds to exactly 1 from η ≈ 36.7 on: the recorded α = 1.0 is flagged
        assert!(!p.runaway(&at(-690.0)) && !p.runaway(&at(36.0)));
        assert!(p.runaway(&at(37.0)) && p.runaway(&at(100.0)));
        // trained scales: σ beyond RUNAWAY_SCALE times the target's scale, either way
        let target_sd = p.target.new.cov.scale(p.dim);
        for param in [ScaleParam::Log, ScaleParam::Direct] {
            p.scales = Some(Scales {
                param,
                lr_scale: [1.0, 1.0],
                shape: [p.model_old_cov.clone(), p.model_new_cov.clone()],
            });
            let sigma = |new_sd: f64| Params {
                scale: [param.value(1.0), param.value(new_sd)],
                ..start.clone()
            };
            assert!(!p.runaway(&sigma(target_sd)));
            assert!(!p.runaway(&sigma(target_sd * 0.99e6)));
            assert!(p.runaway(&sigma(target_sd * 1.01e6)));
            assert!(!p.runaway(&sigma(target_sd / 0.99e6)));
            assert!(p.runaway(&sigma(target_sd / 1.01e6)));
        }
        p.scales = None;
        // lr = 10: the means run away within a few steps; afterwards the records stand still
        p.lr = 10.0;
        let (w, diverged) = run_in_chunks(&p, &[200], 1);
        assert!(diverged.iter().all(|&d| d), "{diverged:?}");
        for rep in w.chunks(200) {
            assert_eq!(rep[198], rep[199]);
        }
    }
}
