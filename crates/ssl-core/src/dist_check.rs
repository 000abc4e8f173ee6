//! The distributed gradient check every method passes: a few optimizer
//! steps of the method on `W` ranks (each on its part of every global
//! batch, through [`backward_step`] and c10d's Reducer, as the trainer
//! trains) must give the gradients and parameters of one process on the
//! global batches, in f64; and deliberately wrong collectives
//! ([`ssl_dist::Fault`]: a gather whose backward keeps only the local
//! slice, statistics that are not all-reduced, …) must fail the same
//! check, which shows it can catch that bug class.
//!
//! A test hands [`check_methods`] its cases; the function runs the ranks
//! (as processes of the test binary, with ssl-dist's test launcher) and
//! the single-process reference, and returns each case's differences.
//! Put such a test in a file of its own: it seeds libtorch's global
//! generator, which parallel tests in the same binary would share.

use crate::method::{Batch, Method, Part, Progress};
use crate::optim::{Optimizer, OptimizerConfig};
use crate::trainer::backward_step;
use ssl_dist::testing::{load, rank_dir, run_ranks, save};
use ssl_dist::{Fault, GradSync, Group};
use std::collections::HashMap;
use std::time::Duration;
use tch::nn::VarStore;
use tch::Tensor;

/// One method to check.
pub struct Case {
    /// The method's name (file names, messages).
    pub name: String,
    /// Builds the method (seeding libtorch first, so every rank and the
    /// reference start from the same weights) in f64.
    pub build: Box<dyn Fn() -> (VarStore, Box<dyn Method>)>,
    /// The global batches of the steps, in f64.
    pub batches: Vec<Batch>,
    /// Synchronised BatchNorm on the ranks (needed for the gradients of a
    /// method with BatchNorm to be the global batch's).
    pub sync_bn: bool,
    /// Compare BatchNorm's running statistics too (with synchronised
    /// BatchNorm they are the global batch's; without, each rank keeps its
    /// own, as in DDP).
    pub compare_buffers: bool,
    /// Uniform draws per sample that a rank skips before each step, so
    /// that its random draws (MAE's masks: one per patch) are the rows of
    /// the one-process draws that belong to its samples.
    pub draws_per_sample: i64,
    /// The wrong variants that must fail the check.
    pub wrong: Vec<Fault>,
}

/// A case's result: the largest difference to one process of the right
/// variant, and of each wrong one.
#[derive(Debug)]
pub struct Outcome {
    /// The case.
    pub name: String,
    /// Largest difference of any first-step gradient or final variable
    /// (over both ranks), relative to that tensor's largest entry when it
    /// exceeds 1 (absolute otherwise).
    pub right: f64,
    /// The same for each wrong variant.
    pub wrong: Vec<(Fault, f64)>,
}

/// The learning rate of the check's SGD steps.
const LR: f64 = 0.05;

/// Trains `case` for its steps on `group` and returns the first step's
/// gradients (`grad.NAME`) and the final variables (`param.NAME`).
fn train(case: &Case, group: &Group) -> crate::Result<Vec<(String, Tensor)>> {
    let (vs, mut method) = (case.build)();
    let vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    group.broadcast_from_rank0(&vars)?;
    let sync = GradSync::new(group, &vars, ssl_dist::DEFAULT_BUCKET_MB, false)?;
    let mut opt = Optimizer::from_var_store(&OptimizerConfig::sgd(LR, 0.0), &vs);
    let (rank, world) = (group.rank(), group.world_size());
    let steps = case.batches.len();
    let mut out = Vec::new();
    for (step, batch) in case.batches.iter().enumerate() {
        opt.zero_grad();
        tch::manual_seed(1000 + step as i64);
        let part = batch.part(Part { index: rank, count: world });
        let skip = rank as i64 * part.len() as i64 * case.draws_per_sample;
        if skip > 0 {
            let _ = Tensor::rand([skip], (tch::Kind::Float, tch::Device::Cpu));
        }
        method.before_step(Progress { step, total_steps: steps, epoch: step, epochs: steps });
        backward_step(method.as_ref(), &[part], group, &sync, false, &mut |_, _| None)?;
        if step == 0 {
            for (name, t) in &vars {
                let g = t.grad();
                if g.defined() {
                    out.push((format!("grad.{name}"), g.copy()));
                }
            }
        }
        opt.step(LR);
        method.after_step(step, steps);
    }
    for (name, t) in vs.variables() {
        if case.compare_buffers || !(name.contains("running_") || name.contains("num_batches_tracked")) {
            out.push((format!("param.{name}"), t.copy()));
        }
    }
    Ok(out)
}

fn file(case: &str, fault: Fault, rank: usize) -> String {
    format!("{case}.{fault:?}.rank{rank}.st")
}

/// Runs every case of `cases()` on two ranks (as processes running the
/// test `test`) and in this process, and returns the differences. Call it
/// from the test named `test`; in the rank processes it does their work and
/// exits.
pub fn check_methods(test: &str, cases: &dyn Fn() -> Vec<Case>) -> Vec<Outcome> {
    if let Some(dir) = rank_dir(test) {
        let group = Group::from_env(&ssl_dist::GroupOptions {
            timeout: Duration::from_secs(60),
            ..Default::default()
        })
        .expect("joining the group");
        let group = ssl_dist::init_world(group).expect("the process-wide group");
        for case in cases() {
            crate::modules::set_sync_batch_norm(case.sync_bn);
            for fault in std::iter::once(Fault::None).chain(case.wrong.iter().copied()) {
                group.inject_fault(fault);
                let named = train(&case, group).unwrap_or_else(|e| panic!("{} ({fault:?}): {e}", case.name));
                group.inject_fault(Fault::None);
                save(&dir, &file(&case.name, fault, group.rank()), &named);
            }
        }
        group.barrier().expect("the final barrier");
        std::process::exit(0);
    }
    let run = run_ranks(test, 2, Duration::from_secs(300), &[]);
    run.assert_success();
    let mut outcomes = Vec::new();
    for case in cases() {
        let reference: HashMap<String, Tensor> = train(&case, &Group::single())
            .unwrap_or_else(|e| panic!("{}: {e}", case.name))
            .into_iter()
            .collect();
        let diff = |fault: Fault| -> f64 {
            let mut worst = 0f64;
            for rank in 0..2 {
                let got: HashMap<String, Tensor> =
                    load(&run.dir, &file(&case.name, fault, rank)).into_iter().collect();
                for (name, want) in &reference {
                    let d = match got.get(name) {
                        Some(t) if t.size() == want.size() => {
                            let scale = want.abs().max().double_value(&[]).max(1.0);
                            (t - want).abs().max().double_value(&[]) / scale
                        }
                        _ => f64::INFINITY,
                    };
                    worst = worst.max(if d.is_nan() { f64::INFINITY } else { d });
                }
            }
            worst
        };
        let right = diff(Fault::None);
        let wrong = case.wrong.iter().map(|&f| (f, diff(f))).collect();
        outcomes.push(Outcome { name: case.name.clone(), right, wrong });
    }
    outcomes
}

/// Asserts the check's verdicts: every right variant within `tolerance`
/// of one process, every wrong one further than `1e-6`; prints the table.
pub fn assert_outcomes(outcomes: &[Outcome], tolerance: f64) {
    let mut failures = Vec::new();
    for o in outcomes {
        let wrong: Vec<String> = o.wrong.iter().map(|(f, d)| format!("{f:?} {d:.1e}")).collect();
        eprintln!(
            "{:<14} 2 ranks vs 1 process: {:.1e}   wrong variants: {}",
            o.name,
            o.right,
            wrong.join(", ")
        );
        if o.right > tolerance {
            failures.push(format!("{}: 2 ranks differ from one process by {:e}", o.name, o.right));
        }
        for (f, d) in &o.wrong {
            if *d <= 1e-6 {
                failures.push(format!("{}: the wrong variant {f:?} passes the check ({d:e})", o.name));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
