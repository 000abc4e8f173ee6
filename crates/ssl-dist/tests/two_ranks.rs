//! ssl-dist on two CPU ranks over Gloo on 127.0.0.1: the collectives, the
//! gradients of the differentiable ones against one process on the global
//! batch (and the known wrong variants failing the same check), DDP's
//! Reducer over a few optimizer steps, and the faults: a killed rank, a
//! rank that never arrives, a port in use, a rank that never starts.

use ssl_dist::testing::{load, rank_dir, run_ranks, run_ranks_killing, save};
use ssl_dist::{Fault, Group, GroupOptions, Launch, ReduceOp};
use std::time::Duration;
use tch::{Device, Kind, Tensor};

const DEADLINE: Duration = Duration::from_secs(90);

fn group(timeout_s: u64) -> Group {
    Group::from_env(&GroupOptions { timeout: Duration::from_secs(timeout_s), ..Default::default() })
        .expect("joining the group")
}

/// The global batch both sides use: `[world * n, d]`, f64.
fn global_batch(world: i64, n: i64, d: i64) -> Tensor {
    Tensor::arange(world * n * d, (Kind::Double, Device::Cpu)).reshape([world * n, d]).sin() * 1.5
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

#[test]
fn collectives_agree_on_both_ranks() {
    if let Some(dir) = rank_dir("collectives_agree_on_both_ranks") {
        let g = group(30);
        let r = g.rank() as f64;
        let t = Tensor::from_slice(&[1.0f64 + r, 10.0 * r]);
        g.all_reduce_(&t, ReduceOp::Sum).unwrap();
        let m = Tensor::from_slice(&[r, -r]);
        g.all_reduce_(&m, ReduceOp::Max).unwrap();
        let b = Tensor::from_slice(&[r + 5.0]);
        g.broadcast_(&b, 1).unwrap();
        // A non-contiguous tensor is reduced in place too.
        let nc = Tensor::from_slice(&[1.0f64, 2.0, 3.0, 4.0]).reshape([2, 2]).tr();
        g.all_reduce_(&nc, ReduceOp::Sum).unwrap();
        let gathered = g.all_gather(&Tensor::from_slice(&[r, r + 0.5]).reshape([1, 2])).unwrap();
        let scattered = g
            .reduce_scatter(&Tensor::from_slice(&[1.0f64, 2.0, 3.0, 4.0]).reshape([2, 2]), ReduceOp::Sum)
            .unwrap();
        g.barrier().unwrap();
        let named = [
            ("sum", t),
            ("max", m),
            ("bcast", b),
            ("nc", nc.contiguous()),
            ("gather", gathered),
            ("scatter", scattered),
        ];
        save(&dir, &format!("rank-{}.st", g.rank()), &named.map(|(n, t)| (n.to_string(), t)));
        g.barrier().unwrap();
        return;
    }
    let run = run_ranks("collectives_agree_on_both_ranks", 2, DEADLINE, &[]);
    run.assert_success();
    for rank in 0..2 {
        let got: std::collections::HashMap<String, Tensor> =
            load(&run.dir, &format!("rank-{rank}.st")).into_iter().collect();
        let v = |n: &str| Vec::<f64>::try_from(got[n].flatten(0, -1)).unwrap();
        assert_eq!(v("sum"), [3.0, 10.0]);
        assert_eq!(v("max"), [1.0, 0.0]);
        assert_eq!(v("bcast"), [6.0]);
        assert_eq!(v("nc"), [2.0, 6.0, 4.0, 8.0]);
        assert_eq!(v("gather"), [0.0, 0.5, 1.0, 1.5]);
        // Row `rank` of the 2x2 matrix, doubled.
        let expect = if rank == 0 { [2.0, 4.0] } else { [6.0, 8.0] };
        assert_eq!(v("scatter"), expect);
    }
}

/// A contrastive-style loss of the local rows against every row of the
/// global batch: `mean_i logsumexp(x_i · G^T)`, with `G` gathered.
fn gathered_loss(x: &Tensor, g: &Tensor) -> Tensor {
    x.matmul(&g.tr()).logsumexp([1i64].as_slice(), false).mean(Kind::Double)
}

/// A loss of statistics summed over the global batch: the squared
/// cross-correlation of the standardised columns, as Barlow Twins.
fn statistics_loss(x: &Tensor, all_reduce: &dyn Fn(&Tensor) -> Tensor, n_global: f64) -> Tensor {
    let mean = all_reduce(&x.sum_dim_intlist([0i64].as_slice(), true, Kind::Double)) / n_global;
    let xc = x - mean;
    let var = all_reduce(&xc.square().sum_dim_intlist([0i64].as_slice(), true, Kind::Double)) / n_global;
    let z = xc / (var + 1e-5).sqrt();
    let c = all_reduce(&z.tr().matmul(&z.sin())) / n_global;
    (c - 0.3).square().sum(Kind::Double)
}

const FAULTS: [(&str, Fault); 4] = [
    ("right", Fault::None),
    ("local-slice", Fault::GatherLocalSliceBackward),
    ("local-stats", Fault::LocalStatistics),
    ("identity-backward", Fault::AllReduceBackwardIdentity),
];

#[test]
fn differentiable_collectives_give_the_global_batch_gradient() {
    let (w, n, d) = (2i64, 3i64, 4i64);
    if let Some(dir) = rank_dir("differentiable_collectives_give_the_global_batch_gradient") {
        let g = group(30);
        let r = g.rank() as i64;
        let mut out = Vec::new();
        for (name, fault) in FAULTS {
            g.inject_fault(fault);
            let x = global_batch(w, n, d).narrow(0, r * n, n).set_requires_grad(true);
            // DDP averages parameter gradients over the ranks: divide by W.
            gathered_loss(&x, &g.all_gather_with_grad(&x).unwrap()).backward();
            out.push((format!("gather.{name}"), x.grad() / w as f64));
            let x = global_batch(w, n, d).narrow(0, r * n, n).set_requires_grad(true);
            statistics_loss(&x, &|t| g.all_reduce_with_grad(t).unwrap(), (w * n) as f64).backward();
            out.push((format!("reduce.{name}"), x.grad() / w as f64));
        }
        g.inject_fault(Fault::None);
        save(&dir, &format!("rank-{r}.st"), &out);
        g.barrier().unwrap();
        return;
    }
    // One process on the global batch.
    let x = global_batch(w, n, d).set_requires_grad(true);
    gathered_loss(&x, &x).backward();
    let gather_ref = x.grad();
    let x = global_batch(w, n, d).set_requires_grad(true);
    statistics_loss(&x, &|t| t.shallow_clone(), (w * n) as f64).backward();
    let reduce_ref = x.grad();

    let run = run_ranks("differentiable_collectives_give_the_global_batch_gradient", 2, DEADLINE, &[]);
    run.assert_success();
    let ranks: Vec<std::collections::HashMap<String, Tensor>> =
        (0..2).map(|r| load(&run.dir, &format!("rank-{r}.st")).into_iter().collect()).collect();
    let diff = |key: &str, reference: &Tensor| {
        let parts: Vec<&Tensor> = ranks.iter().map(|m| &m[key]).collect();
        max_diff(&Tensor::cat(&parts, 0), reference)
    };
    for kind in ["gather", "reduce"] {
        let reference = if kind == "gather" { &gather_ref } else { &reduce_ref };
        let right = diff(&format!("{kind}.right"), reference);
        assert!(right < 1e-12, "{kind}: the 2-rank gradient differs from one process's by {right:e}");
        eprintln!("{kind}: 2 ranks vs 1 process: {right:e}");
    }
    // The wrong variants fail the same check.
    for (key, reference) in [
        ("gather.local-slice", &gather_ref),
        ("reduce.local-stats", &reduce_ref),
        ("reduce.identity-backward", &reduce_ref),
    ] {
        let wrong = diff(key, reference);
        assert!(wrong > 1e-3, "{key}: the wrong variant passes the check ({wrong:e})");
        eprintln!("{key}: {wrong:e}");
    }
}

/// A small MLP trained with SGD for a few steps.
fn mlp(vs: &tch::nn::VarStore) -> impl Fn(&Tensor) -> Tensor {
    use tch::nn::Module;
    let p = vs.root();
    let a = tch::nn::linear(&p / "a", 4, 8, Default::default());
    let b = tch::nn::linear(&p / "b", 8, 2, Default::default());
    move |x: &Tensor| b.forward(&a.forward(x).tanh())
}

fn sgd_steps(
    vs: &tch::nn::VarStore,
    f: &dyn Fn(&Tensor) -> Tensor,
    x: &Tensor,
    sync: Option<&ssl_dist::GradSync>,
) {
    let params: Vec<Tensor> = vs.trainable_variables();
    for _ in 0..3 {
        for p in &params {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
        if let Some(s) = sync {
            s.prepare_forward().unwrap();
        }
        let loss = f(x).square().mean(Kind::Double);
        if let Some(s) = sync {
            s.prepare_backward(&[&loss]).unwrap();
        }
        loss.f_backward().unwrap();
        tch::no_grad(|| {
            for p in &params {
                let _ = p.shallow_clone().g_sub_(&(p.grad() * 0.1));
            }
        });
    }
}

#[test]
fn reducer_steps_match_one_process() {
    let (w, n) = (2i64, 4i64);
    if let Some(dir) = rank_dir("reducer_steps_match_one_process") {
        let g = group(30);
        let r = g.rank() as i64;
        let mut out = Vec::new();
        for (name, fault) in [("right", Fault::None), ("unsynced", Fault::SkipGradSync)] {
            // Rank 1 starts from other weights: the broadcast from rank 0 fixes that.
            tch::manual_seed(10 + r);
            let mut vs = tch::nn::VarStore::new(Device::Cpu);
            let f = mlp(&vs);
            vs.double();
            let vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
            g.broadcast_from_rank0(&vars).unwrap();
            let sync = ssl_dist::GradSync::new(&g, &vars, 25.0, false).unwrap();
            g.inject_fault(fault);
            let x = global_batch(w, n, 4).narrow(0, r * n, n);
            sgd_steps(&vs, &f, &x, Some(&sync));
            g.inject_fault(Fault::None);
            for (k, v) in vs.variables() {
                out.push((format!("{name}.{k}"), v));
            }
        }
        save(&dir, &format!("rank-{r}.st"), &out);
        g.barrier().unwrap();
        return;
    }
    tch::manual_seed(10);
    let mut vs = tch::nn::VarStore::new(Device::Cpu);
    let f = mlp(&vs);
    vs.double();
    sgd_steps(&vs, &f, &global_batch(w, n, 4), None);
    let run = run_ranks("reducer_steps_match_one_process", 2, DEADLINE, &[]);
    run.assert_success();
    for r in 0..2 {
        let got: std::collections::HashMap<String, Tensor> =
            load(&run.dir, &format!("rank-{r}.st")).into_iter().collect();
        let (mut right, mut wrong) = (0f64, 0f64);
        for (k, v) in vs.variables() {
            right = right.max(max_diff(&got[&format!("right.{k}")], &v));
            wrong = wrong.max(max_diff(&got[&format!("unsynced.{k}")], &v));
        }
        assert!(right < 1e-12, "rank {r}: 3 DDP steps differ from one process by {right:e}");
        assert!(wrong > 1e-4, "rank {r}: unsynchronised gradients pass the check ({wrong:e})");
        eprintln!("rank {r}: parameters after 3 steps vs one process: {right:e} (unsynchronised: {wrong:e})");
    }
}

#[test]
fn a_killed_rank_is_named_by_the_survivor() {
    if let Some(dir) = rank_dir("a_killed_rank_is_named_by_the_survivor") {
        // A timeout far above the bound below: the heartbeat, not the
        // timeout, must end the wait.
        let g = group(60);
        let t = Tensor::ones([4], (Kind::Float, Device::Cpu));
        g.all_reduce_(&t, ReduceOp::Sum).unwrap();
        if g.rank() == 1 {
            // Tell the test to kill this rank, and wait for it.
            std::fs::write(dir.join("kill-me"), b"").unwrap();
            std::thread::sleep(Duration::from_secs(60));
            return;
        }
        let started = std::time::Instant::now();
        let mut err = None;
        for _ in 0..10_000 {
            if let Err(e) = g.all_reduce_(&t, ReduceOp::Sum) {
                err = Some(e);
                break;
            }
        }
        let e = err.expect("rank 0 got an error once rank 1 was gone");
        std::fs::write(dir.join("error.txt"), format!("{e}\n{:.1}", started.elapsed().as_secs_f64()))
            .unwrap();
        return;
    }
    let run =
        run_ranks_killing("a_killed_rank_is_named_by_the_survivor", 2, DEADLINE, &[], Some((1, "kill-me")));
    assert!(!run.timed_out, "{}", run.describe());
    let text =
        std::fs::read_to_string(run.dir.join("error.txt")).unwrap_or_else(|_| panic!("{}", run.describe()));
    eprintln!("{text}");
    assert!(text.contains("rank 0 of 2: all_reduce failed"), "{text}");
    assert!(text.contains("rank 1 stopped answering"), "{text}");
    let secs: f64 = text.lines().last().unwrap().parse().unwrap();
    assert!(secs < 20.0, "the error came after {secs} s: the heartbeat did not cut the 60 s timeout short");
}

#[test]
fn a_rank_that_never_arrives_times_out_with_every_rank_alive() {
    if let Some(dir) = rank_dir("a_rank_that_never_arrives_times_out_with_every_rank_alive") {
        let g = group(3);
        let t = Tensor::ones([4], (Kind::Float, Device::Cpu));
        if g.rank() == 1 {
            // Alive (its heartbeat goes on) but never joins the collective.
            while !dir.join("done").exists() {
                std::thread::sleep(Duration::from_millis(50));
            }
            return;
        }
        let e = g.all_reduce_(&t, ReduceOp::Sum).unwrap_err().to_string();
        std::fs::write(dir.join("error.txt"), &e).unwrap();
        std::fs::write(dir.join("done"), b"").unwrap();
        return;
    }
    let run = run_ranks("a_rank_that_never_arrives_times_out_with_every_rank_alive", 2, DEADLINE, &[]);
    run.assert_success();
    let text = std::fs::read_to_string(run.dir.join("error.txt")).unwrap();
    eprintln!("{text}");
    assert!(text.contains("rank 0 of 2: all_reduce failed"), "{text}");
    assert!(text.to_lowercase().contains("timed out"), "{text}");
    assert!(text.contains("every rank is still alive"), "{text}");
}

fn launch(port: u16) -> Launch {
    Launch {
        rank: 0,
        world_size: 2,
        local_rank: 0,
        master_addr: "127.0.0.1".into(),
        master_port: port,
        agent_store: None,
    }
}

#[test]
fn a_port_in_use_is_named() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let opts = GroupOptions { timeout: Duration::from_secs(5), ..Default::default() };
    let e = Group::connect(&launch(port), &opts).err().expect("the port is taken").to_string();
    assert!(e.contains(&format!("port {port} on 127.0.0.1 is already in use")), "{e}");
    assert!(e.starts_with("rank 0 of 2: rendezvous at 127.0.0.1:"), "{e}");
}

#[test]
fn a_rank_that_never_starts_ends_the_rendezvous_in_time() {
    let port = ssl_dist::testing::free_port();
    let opts = GroupOptions { timeout: Duration::from_secs(2), ..Default::default() };
    let started = std::time::Instant::now();
    let e = Group::connect(&launch(port), &opts).err().expect("rank 1 never comes").to_string();
    assert!(e.contains("not all 2 ranks met within 2 s"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(30), "{:?}", started.elapsed());
}

#[test]
fn one_process_is_a_world_of_one() {
    let g = Group::single();
    assert_eq!((g.rank(), g.world_size(), g.is_distributed()), (0, 1, false));
    let t = Tensor::from_slice(&[1.0f32, 2.0]).set_requires_grad(true);
    assert!(g.all_gather_with_grad(&t).unwrap().equal(&t));
    assert!(g.all_reduce_sum(&t).unwrap().equal(&t));
    g.barrier().unwrap();
    assert!(ssl_dist::world().world_size() == 1);
}
