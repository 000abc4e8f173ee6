//! A run repeated over seeds: the mean and sample standard deviation of
//! each figure of its reports, and of the paired difference between the
//! pretrained encoder and its baseline trained with the same seed (the
//! comparison that matters when margins are small).
//!
//! ```text
//! {"seeds": [0, 1, 2], "runs": ["seed-0", "seed-1", "seed-2"],
//!  "method": "simclr", …,                  // fields equal in every report
//!  "figures": {"ssl.knn_top1": {"mean": …, "sd": …, "values": […]}, …,
//!              "difference.knn_top1": {…}}, // ssl minus random_init
//!  "difference_of": ["ssl", "random_init"]}
//! ```

use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// Which parts of a report are summarised.
#[derive(Clone, Copy, Debug)]
pub struct SeedSpec<'a> {
    /// Top-level keys whose numeric leaves (or which, if numbers) are
    /// summarised: e.g. `ssl`, `random_init`, `wall_s`.
    pub figures: &'a [&'a str],
    /// The pretrained section and its baseline (`ssl`, `random_init`): the
    /// leaves they share are also summarised as paired differences.
    pub paired: (&'a str, &'a str),
}

/// The mean and sample standard deviation (0 for one value) of `values`.
pub fn mean_sd(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    if values.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let mean = values.iter().sum::<f64>() / n;
    let var = if values.len() > 1 {
        values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

fn leaves(prefix: &str, v: &Value, out: &mut BTreeMap<String, f64>) {
    match v {
        Value::Number(n) => {
            if let Some(x) = n.as_f64() {
                out.insert(prefix.to_string(), x);
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                leaves(&format!("{prefix}.{k}"), v, out);
            }
        }
        _ => {}
    }
}

/// The summary of `runs` (seed, run folder name, report), in that order.
/// A figure is summarised when every report has it.
pub fn summarize(runs: &[(u64, String, Value)], spec: &SeedSpec) -> Value {
    let per_run: Vec<BTreeMap<String, f64>> = runs
        .iter()
        .map(|(_, _, report)| {
            let mut m = BTreeMap::new();
            for key in spec.figures {
                if let Some(v) = report.get(*key) {
                    leaves(key, v, &mut m);
                }
            }
            let (a, b) = spec.paired;
            let prefix_a = format!("{a}.");
            let diffs: Vec<(String, f64)> = m
                .iter()
                .filter_map(|(k, x)| {
                    let leaf = k.strip_prefix(&prefix_a)?;
                    let y = m.get(&format!("{b}.{leaf}"))?;
                    Some((format!("difference.{leaf}"), x - y))
                })
                .collect();
            m.extend(diffs);
            m
        })
        .collect();
    let mut figures = Map::new();
    if let Some(first) = per_run.first() {
        for key in first.keys() {
            let values: Option<Vec<f64>> = per_run.iter().map(|m| m.get(key).copied()).collect();
            if let Some(values) = values {
                let (mean, sd) = mean_sd(&values);
                figures.insert(key.clone(), json!({"mean": mean, "sd": sd, "values": values}));
            }
        }
    }
    let mut out = Map::new();
    // Scalars that every report shares (method, data set, epochs, device).
    if let Some((_, _, Value::Object(first))) = runs.first() {
        for (k, v) in first {
            let shared = matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_))
                && !spec.figures.contains(&k.as_str())
                && runs.iter().all(|(_, _, r)| r.get(k) == Some(v));
            if shared {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    out.insert("seeds".into(), json!(runs.iter().map(|r| r.0).collect::<Vec<_>>()));
    out.insert("runs".into(), json!(runs.iter().map(|r| r.1.clone()).collect::<Vec<_>>()));
    out.insert("difference_of".into(), json!([spec.paired.0, spec.paired.1]));
    out.insert("figures".into(), Value::Object(figures));
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: SeedSpec =
        SeedSpec { figures: &["ssl", "random_init", "wall_s"], paired: ("ssl", "random_init") };

    fn report(seed: u64, ssl: f64, rnd: f64) -> (u64, String, Value) {
        let r = json!({
            "method": "simclr", "epochs": 15, "device": "cpu", "seed": seed,
            "ssl": {"knn_top1": ssl, "linear_top1": 0.9},
            "random_init": {"knn_top1": rnd, "linear_top1": 0.8, "only_here": 1.0},
            "wall_s": 100.0 + seed as f64,
            "train": {"loss": 1.0},
        });
        (seed, format!("seed-{seed}"), r)
    }

    #[test]
    fn mean_sd_is_the_sample_standard_deviation() {
        let (m, s) = mean_sd(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(m, 2.5);
        assert!((s - (5.0f64 / 3.0).sqrt()).abs() < 1e-15);
        assert_eq!(mean_sd(&[7.0]), (7.0, 0.0));
    }

    #[test]
    fn summarises_figures_and_paired_differences_over_seeds() {
        let runs = [report(0, 0.80, 0.50), report(1, 0.84, 0.58), report(2, 0.82, 0.50)];
        let s = summarize(&runs, &SPEC);
        let f = &s["figures"];
        assert!((f["ssl.knn_top1"]["mean"].as_f64().unwrap() - 0.82).abs() < 1e-12);
        assert!((f["ssl.knn_top1"]["sd"].as_f64().unwrap() - 0.02).abs() < 1e-12);
        // Paired: 0.30, 0.26, 0.32.
        let d = &f["difference.knn_top1"];
        assert!((d["mean"].as_f64().unwrap() - 0.88 / 3.0).abs() < 1e-12, "{d}");
        assert_eq!(d["values"].as_array().unwrap().len(), 3);
        assert!((f["difference.linear_top1"]["mean"].as_f64().unwrap() - 0.1).abs() < 1e-12);
        assert!(f.get("difference.only_here").is_none());
        assert!((f["wall_s"]["mean"].as_f64().unwrap() - 101.0).abs() < 1e-12);
        // Sections not asked for stay out; shared scalars are kept, per-seed ones not.
        assert!(f.get("train.loss").is_none());
        assert_eq!(s["method"], "simclr");
        assert_eq!(s["epochs"], 15);
        assert!(s.get("seed").is_none());
        assert_eq!(s["seeds"], json!([0, 1, 2]));
        assert_eq!(s["runs"], json!(["seed-0", "seed-1", "seed-2"]));
    }

    #[test]
    fn a_figure_missing_from_one_report_is_left_out() {
        let mut runs = vec![report(0, 0.8, 0.5), report(1, 0.8, 0.5)];
        runs[1].2["ssl"].as_object_mut().unwrap().remove("linear_top1");
        let s = summarize(&runs, &SPEC);
        assert!(s["figures"].get("ssl.linear_top1").is_none());
        assert!(s["figures"].get("difference.linear_top1").is_none());
        assert!(s["figures"].get("ssl.knn_top1").is_some());
    }
}
