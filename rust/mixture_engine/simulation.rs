//! Finite-batch training of many replicates of a K-component problem in parallel, each on
//! its own stream (key, replicate), with records at absolute step counts (as the two-mode
//! `engine::training`); and the one-step gradient study at the start.

use crate::buffers::checked_len;
use crate::engine::training::records_in;
use crate::error::{KernelError, KernelResult};
use crate::mixture_engine::batch::{draw, gradient, ModelState, Workspace};
use crate::mixture_engine::problem::Problem;
use crate::random::simd_rng::LaneStream;
use rayon::prelude::*;

/// One replicate: θ (flat), per-component cumulative starved counts, its runaway flag and
/// its stream.
#[derive(Clone, Debug)]
pub struct Replicate {
    pub theta: Vec<f64>,
    pub starved: Vec<i64>,
    pub diverged: bool,
    pub rng: LaneStream,
}

/// Recording buffers of one chunk: weights (R × n × K), means (R × n × K × d) and starved
/// counts (R × n × K), row-major.
pub struct MixtureRecords<'a> {
    pub weights: &'a mut [f64],
    pub means: &'a mut [f64],
    pub starved: &'a mut [i64],
}

/// Finite-batch training of many replicates.
pub struct Simulation {
    pub problem: Problem,
    pub batch_size: usize,
    pub replicates: Vec<Replicate>,
    pub steps_done: u64,
}

impl Simulation {
    pub fn new(
        problem: Problem,
        batch_size: usize,
        replicates: usize,
        key: [u64; 2],
    ) -> KernelResult<Simulation> {
        if batch_size == 0 || replicates == 0 {
            return Err("batch_size and replicates must be >= 1".into());
        }
        let mut reps = Vec::new();
        reps.try_reserve_exact(replicates).map_err(|_| {
            KernelError::OutOfMemory(format!(
                "cannot allocate the state of {replicates} replicates"
            ))
        })?;
        reps.extend((0..replicates).map(|r| Replicate {
            theta: problem.start.clone(),
            starved: vec![0; problem.k],
            diverged: false,
            rng: LaneStream::new(key, r as u64),
        }));
        Ok(Simulation {
            problem,
            batch_size,
            replicates: reps,
            steps_done: 0,
        })
    }

    /// Per replicate: stopped by a non-finite θ or the runaway bound.
    pub fn diverged(&self) -> Vec<bool> {
        self.replicates.iter().map(|r| r.diverged).collect()
    }

    /// Advance every replicate by `steps`, recording at every absolute step count that is a
    /// multiple of `record_every` (`records_in(steps_done, steps, record_every)` records per
    /// replicate). Parallel over replicates; the results do not depend on the thread count.
    pub fn advance(
        &mut self,
        steps: u64,
        record_every: u64,
        rec: MixtureRecords,
    ) -> KernelResult<()> {
        let n_rec = records_in(self.steps_done, steps, record_every);
        let (k, d) = (self.problem.k, self.problem.dim);
        let r = self.replicates.len();
        let per_rep = checked_len(&[n_rec, k], "the records")?;
        if rec.weights.len() != r * per_rep
            || rec.starved.len() != r * per_rep
            || rec.means.len() != r * per_rep * d
        {
            return Err(format!(
                "record buffers do not hold {r} replicates × {n_rec} records of {k} components"
            )
            .into());
        }
        let outs: Vec<(&mut [f64], &mut [f64], &mut [i64])> = if n_rec == 0 {
            (0..r).map(|_| Default::default()).collect()
        } else {
            rec.weights
                .chunks_mut(per_rep)
                .zip(rec.means.chunks_mut(per_rep * d))
                .zip(rec.starved.chunks_mut(per_rep))
                .map(|((w, m), s)| (w, m, s))
                .collect()
        };
        let (problem, b, done) = (&self.problem, self.batch_size, self.steps_done);
        self.replicates.par_iter_mut().zip(outs).try_for_each(
            |(rep, (w_out, m_out, s_out))| -> KernelResult<()> {
                let mut model = ModelState::new(problem, &rep.theta);
                let mut ws = Workspace::try_new(problem, b)?;
                let mut grad = vec![0.0; problem.width()];
                let mut previous = rep.theta.clone();
                let mut scratch = vec![0.0; d];
                let mut at = 0;
                for step in done + 1..=done + steps {
                    if !rep.diverged {
                        draw(problem, &model, &mut rep.rng, &mut ws);
                        gradient(problem, &model, &mut ws, &mut grad);
                        for (s, seen) in rep.starved.iter_mut().zip(&ws.seen) {
                            *s += !seen as i64;
                        }
                        previous.copy_from_slice(&rep.theta);
                        problem.step(&mut rep.theta, &mut grad, &model.weights);
                        let finite = rep.theta.iter().all(|v| v.is_finite());
                        if !finite {
                            rep.theta.copy_from_slice(&previous);
                        }
                        // the model follows θ (the next batch, the runaway test, the records)
                        model.set(problem, &rep.theta);
                        // frozen where it crossed the bound (finite, so the records show it)
                        rep.diverged =
                            !finite || problem.runaway(&rep.theta, &model.weights, &mut scratch);
                    }
                    if step % record_every == 0 {
                        w_out[at * k..(at + 1) * k].copy_from_slice(&model.weights);
                        m_out[at * k * d..(at + 1) * k * d].copy_from_slice(&rep.theta[k - 1..]);
                        s_out[at * k..(at + 1) * k].copy_from_slice(&rep.starved);
                        at += 1;
                    }
                }
                Ok(())
            },
        )?;
        self.steps_done += steps;
        Ok(())
    }
}

/// One-step study: row r of `grads` (R × width) is the finite-batch ĝ at the start drawn
/// from stream (key, r), the same batch as replicate r's first step in a [`Simulation`].
pub fn estimate_gradient(
    problem: &Problem,
    batch_size: usize,
    key: [u64; 2],
    grads: &mut [f64],
    starved: &mut [bool],
    old_counts: &mut [i64],
) -> KernelResult<()> {
    if batch_size == 0 {
        return Err("batch_size must be >= 1".into());
    }
    let (width, k) = (problem.width(), problem.k);
    let model = ModelState::new(problem, &problem.start);
    let mut is_old = vec![false; k];
    for &j in &problem.old_components {
        is_old[j] = true;
    }
    grads
        .par_chunks_mut(width)
        .zip(starved.par_chunks_mut(k))
        .zip(old_counts.par_iter_mut())
        .enumerate()
        .try_for_each(|(r, ((row, starved_row), old_count))| -> KernelResult<()> {
            let mut rng = LaneStream::new(key, r as u64);
            let mut ws = Workspace::try_new(problem, batch_size)?;
            draw(problem, &model, &mut rng, &mut ws);
            for (flag, &seen) in starved_row.iter_mut().zip(&ws.seen) {
                *flag = !seen;
            }
            *old_count = ws.label.iter().filter(|&&l| is_old[l as usize]).count() as i64;
            gradient(problem, &model, &mut ws, row);
            Ok(())
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mixture_engine::problem::{MixtureObjective, ProblemSpec, Update};
    use crate::model::mixture::Cov;
    use crate::objectives::{Baseline, ForwardKL, ReverseKL};
    use crate::random::starvation::Slots;

    fn problem(objective: MixtureObjective, update: Update) -> Problem {
        let cov = || (0..3).map(|_| Cov::scalar(1.0).unwrap()).collect();
        Problem::new(ProblemSpec {
            dim: 1,
            target_weights: &[0.3, 0.2, 0.5],
            target_means: &[-4.0, 0.0, 4.0],
            target_covs: cov(),
            model_covs: cov(),
            start_weights: &[0.25, 0.25, 0.5],
            start_means: &[-3.5, 0.5, 3.0],
            objective,
            new_components: &[2],
            replay_mix: &[0.6, 0.4],
            label_rewards: &[],
            lr: 0.05,
            lr_weight: 1.0,
            lr_means: 1.0,
            update,
        })
        .unwrap()
    }

    fn reverse_kl() -> MixtureObjective {
        MixtureObjective::ReverseKL(ReverseKL {
            replay: 0.25,
            replay_slots: Slots::Bernoulli,
            weight_cap: None,
            baseline: Baseline::Loo,
        })
    }

    fn run(p: &Problem, steps: u64, threads: usize) -> (Vec<f64>, Vec<f64>, Vec<i64>) {
        let (r, k) = (5, p.k);
        let mut sim = Simulation::new(p.clone(), 16, r, [3, 9]).unwrap();
        let n = steps as usize;
        let (mut w, mut m, mut s) = (
            vec![0.0; r * n * k],
            vec![0.0; r * n * k],
            vec![0; r * n * k],
        );
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| {
                sim.advance(
                    steps,
                    1,
                    MixtureRecords {
                        weights: &mut w,
                        means: &mut m,
                        starved: &mut s,
                    },
                )
            })
            .unwrap();
        (w, m, s)
    }

    #[test]
    fn same_key_same_bits_for_any_thread_count() {
        let p = problem(reverse_kl(), Update::Sgd);
        assert_eq!(run(&p, 30, 1), run(&p, 30, 3));
    }

    #[test]
    fn the_gradient_study_is_the_first_step_of_the_simulation() {
        for update in [Update::Sgd, Update::Natural] {
            let p = problem(reverse_kl(), update);
            let width = p.width();
            let mut g = vec![0.0; 5 * width];
            let (mut starved, mut old) = (vec![false; 5 * 3], vec![0i64; 5]);
            estimate_gradient(&p, 16, [3, 9], &mut g, &mut starved, &mut old).unwrap();
            let (_, means, starved_counts) = run(&p, 1, 2);
            let as_counts: Vec<i64> = starved.iter().map(|&s| s as i64).collect();
            assert_eq!(as_counts, starved_counts, "{update:?}: same first batch");
            assert!(old.iter().all(|&n| (0..=16).contains(&n)));
            let w0 = [0.25, 0.25, 0.5];
            for r in 0..5 {
                let mut step = g[r * width..(r + 1) * width].to_vec();
                let mut theta = p.start.clone();
                p.step(&mut theta, &mut step, &w0);
                assert_eq!(&means[r * 3..(r + 1) * 3], &theta[2..], "{update:?} {r}");
            }
        }
    }

    #[test]
    fn forward_kl_without_replay_starves_the_old_components_every_step() {
        let p = problem(
            MixtureObjective::ForwardKL(ForwardKL {
                replay: 0.0,
                replay_slots: Slots::Bernoulli,
            }),
            Update::Sgd,
        );
        let (w, _, s) = run(&p, 40, 2);
        let last = |r: usize, j: usize| (w[(r * 40 + 39) * 3 + j], s[(r * 40 + 39) * 3 + j]);
        for r in 0..5 {
            assert_eq!(last(r, 0).1, 40);
            assert_eq!(last(r, 1).1, 40);
            assert_eq!(last(r, 2).1, 0);
            assert!(last(r, 2).0 > 0.5, "the new weight grows");
        }
    }

    #[test]
    fn runaway_is_flagged_and_frozen() {
        let mut p = problem(reverse_kl(), Update::Sgd);
        let mut scratch = [0.0; 1];
        let runaway = |p: &Problem, theta: &[f64], scratch: &mut [f64]| {
            let mut w = [0.0; 3];
            crate::mixture_engine::problem::softmax_pinned(&theta[..2], &mut w);
            p.runaway(theta, &w, scratch)
        };
        let mut theta = p.start.clone();
        assert!(!runaway(&p, &theta, &mut scratch));
        theta[2] = -4.0 - 1.01e6;
        assert!(runaway(&p, &theta, &mut scratch));
        theta[2] = -4.0 - 0.99e6;
        assert!(!runaway(&p, &theta, &mut scratch));
        theta = p.start.clone();
        theta[0] = -800.0;
        assert!(runaway(&p, &theta, &mut scratch));
        p.lr = 1e4;
        let mut sim = Simulation::new(p, 16, 4, [1, 1]).unwrap();
        let n = 50;
        let (mut w, mut m, mut s) = (
            vec![0.0; 4 * n * 3],
            vec![0.0; 4 * n * 3],
            vec![0; 4 * n * 3],
        );
        sim.advance(
            n as u64,
            1,
            MixtureRecords {
                weights: &mut w,
                means: &mut m,
                starved: &mut s,
            },
        )
        .unwrap();
        assert!(sim.diverged().iter().all(|&d| d));
        for rep in m.chunks(n * 3) {
            assert_eq!(rep[(n - 2) * 3..(n - 1) * 3], rep[(n - 1) * 3..]);
        }
    }
}
