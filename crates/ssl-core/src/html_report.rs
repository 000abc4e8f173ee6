//! `report.html`: one self-contained page per run, to look at.
//!
//! It is built from what the run folder already holds (`report.json`,
//! `config.json`, `metrics.jsonl`) and what only the binary has (the
//! embedding scatter plots, and images such as vision's nearest
//! neighbours), with every chart drawn as inline SVG by [`crate::plots`]
//! and every image inlined as base64: the page needs no network, no script
//! library and no other file.
//!
//! Sections: the SSL-against-baseline table; training curves (loss,
//! learning rate, accuracies during training, the collapse figures and any
//! other per-epoch figure); fine-tuning; the embedding plots; the images;
//! the resolved config. A small inline script counts the charts that drew
//! and records any script error on the page's `<body>`
//! (`data-charts`, `data-errors`), for tests run in a headless browser.

use crate::plots::{line_svg, scatter_svg, LineChart, Scatter, Series, LEGEND_CLASSES};
use crate::{Error, Result};
use base64::Engine;
use serde_json::Value;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// A picture for the page: PNG bytes and what it shows.
#[derive(Clone, Debug)]
pub struct Picture {
    /// The heading above it.
    pub title: String,
    /// A sentence under it saying what is shown.
    pub caption: String,
    /// The PNG file's bytes.
    pub png: Vec<u8>,
}

/// What the binary adds to the run folder's files.
#[derive(Clone, Debug, Default)]
pub struct Extras {
    /// Embedding plots (the pretrained encoder's and the baseline's).
    pub scatters: Vec<Scatter>,
    /// Pictures (vision: test images beside their nearest training images).
    pub pictures: Vec<Picture>,
}

const CHART: (u32, u32) = (640, 380);
const SCATTER: (u32, u32) = (560, 500);

/// Writes `dir/report.html` from `dir`'s `report.json`, `config.json` and
/// `metrics.jsonl` (each optional) and `extras`; returns its path.
pub fn write(dir: &Path, extras: &Extras) -> Result<PathBuf> {
    let read = |name: &str| -> Result<Option<Value>> {
        let p = dir.join(name);
        if !p.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e))?;
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| Error::Config(format!("{}: not valid JSON: {e}", p.display())))
    };
    let report = read("report.json")?.unwrap_or(Value::Null);
    let config = read("config.json")?.unwrap_or(Value::Null);
    let log = dir.join("metrics.jsonl");
    let rows: Vec<Value> = if log.exists() {
        let text = std::fs::read_to_string(&log).map_err(|e| Error::io(&log, e))?;
        // A row cut short by a kill is skipped, as --resume does.
        text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
    } else {
        Vec::new()
    };
    let html = render(&report, &config, &rows, extras)?;
    let path = dir.join("report.html");
    crate::metrics::write_atomic(&path, html.as_bytes())?;
    Ok(path)
}

/// The page for a run's report, config and metric rows.
pub fn render(report: &Value, config: &Value, rows: &[Value], extras: &Extras) -> Result<String> {
    let name = report["method"]
        .as_str()
        .or_else(|| report["objective"].as_str())
        .or_else(|| config["method"].as_str())
        .unwrap_or("run");
    let data = report["dataset"].as_str().or_else(|| config["dataset"].as_str()).unwrap_or("");
    let title = if data.is_empty() { name.to_string() } else { format!("{name} on {data}") };
    let mut body = String::new();
    let _ = write!(body, "<h1>{}</h1>\n<p class=\"sub\">{}</p>\n", esc(&title), esc(&subtitle(report)));

    if let Some(table) = comparison(report) {
        body.push_str("<h2>Pretrained encoder against its baseline</h2>\n");
        body.push_str(&table);
    }
    let charts = training_charts(rows);
    if !charts.is_empty() {
        body.push_str("<h2>Training</h2>\n<div class=\"grid\">\n");
        for c in &charts {
            body.push_str(&line_figure(c)?);
        }
        body.push_str("</div>\n");
    }
    if let Some(ft) = finetune(report)? {
        body.push_str("<h2>Fine-tuning</h2>\n");
        body.push_str(&ft);
    }
    if !extras.scatters.is_empty() {
        body.push_str("<h2>Test embeddings</h2>\n<div class=\"grid\">\n");
        for s in &extras.scatters {
            // Every point is a circle, and so is each class's legend mark.
            let marks = s.points.len()
                + s.labels.iter().collect::<std::collections::BTreeSet<_>>().len().min(LEGEND_CLASSES);
            let _ = writeln!(
                body,
                "<figure class=\"chart\" data-marks=\"{marks}\">{}</figure>",
                scatter_svg(s, SCATTER)?
            );
        }
        body.push_str("</div>\n");
    }
    for p in &extras.pictures {
        let b64 = base64::engine::general_purpose::STANDARD.encode(&p.png);
        let _ = write!(
            body,
            "<h2>{}</h2>\n<figure><img class=\"picture\" alt=\"{}\" src=\"data:image/png;base64,{b64}\">\
             <figcaption>{}</figcaption></figure>\n",
            esc(&p.title),
            esc(&p.title),
            esc(&p.caption)
        );
    }
    if !config.is_null() {
        let pretty = serde_json::to_string_pretty(config).unwrap_or_default();
        let _ = write!(
            body,
            "<h2>Resolved config</h2>\n<p>As in <code>config.json</code>; <code>--config config.json</code> \
             starts this run again.</p>\n<pre>{}</pre>\n",
            esc(&pretty)
        );
    }
    Ok(format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n<style>{STYLE}</style>\n\
         <script>{SCRIPT_HEAD}</script>\n</head>\n<body>\n{body}<script>{SCRIPT_END}</script>\n</body>\n</html>\n",
        esc(&title)
    ))
}

const STYLE: &str = "body{font-family:sans-serif;margin:24px auto;max-width:1360px;color:#222}\
h1{margin-bottom:4px}.sub{color:#555;margin-top:0}\
table{border-collapse:collapse;margin:8px 0 16px}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}\
th:first-child,td:first-child{text-align:left}thead th{background:#f2f2f2}\
.grid{display:flex;flex-wrap:wrap;gap:12px}figure{margin:0}.chart svg{display:block;border:1px solid #ddd}\
.picture{image-rendering:pixelated;max-width:100%;border:1px solid #ddd}figcaption{color:#555;font-size:90%}\
pre{background:#f7f7f7;padding:12px;overflow:auto;max-height:480px;font-size:85%}";

/// Records script errors on the page (`body[data-errors]`).
const SCRIPT_HEAD: &str = "window.sslErrors=[];window.addEventListener('error',function(e){window.sslErrors.push(String(e.message))});";

/// Counts the charts that the browser laid out with at least the data
/// marks their figure's `data-marks` says (curves are drawn 2 px wide, axes
/// 1 px; points and one-point curves are circles; a legend adds one mark
/// per series): `body[data-charts]`, and `data-empty` for the rest.
const SCRIPT_END: &str = "(function(){var drawn=0,empty=0;document.querySelectorAll('figure.chart svg').forEach(function(s){\
var marks=s.querySelectorAll('polyline[stroke-width=\"2\"],circle').length;var box=s.getBoundingClientRect();\
var want=Number(s.parentElement.getAttribute('data-marks'));\
if(want>0&&marks>=want&&box.width>0&&box.height>0){drawn++}else{empty++}});\
document.body.setAttribute('data-charts',String(drawn));document.body.setAttribute('data-empty',String(empty));\
document.body.setAttribute('data-errors',window.sslErrors.join(' | '));})();";

/// `&`, `<`, `>` and `"` as HTML entities.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn subtitle(report: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(e) = report["epochs"].as_u64().or_else(|| report["train"]["epochs"].as_u64()) {
        parts.push(format!("{e} epochs"));
    }
    if let Some(w) = report["wall_s"].as_f64() {
        parts.push(format!("{w:.0} s"));
    }
    if let Some(d) = report["device"].as_str() {
        parts.push(d.to_string());
    }
    if let Some(n) = report["train"]["skipped_steps"].as_u64().filter(|&n| n > 0) {
        parts.push(format!("{n} steps skipped"));
    }
    for w in report["train"]["collapse_warnings"].as_array().into_iter().flatten() {
        if let Some(w) = w.as_str() {
            parts.push(w.to_string());
        }
    }
    parts.join(" · ")
}

/// Whether a figure is a fraction to show as a percentage.
fn is_rate(key: &str) -> bool {
    key.contains("top1") || key.contains("f1") || key.ends_with("acc") || key.contains("accuracy")
}

fn fmt(key: &str, v: f64) -> String {
    if is_rate(key) {
        format!("{:.2}%", 100.0 * v)
    } else {
        format!("{v:.4}")
    }
}

/// A report key as a row name: `linear_top1_10pct` → `linear top-1, 10% of the labels`.
fn figure_name(key: &str) -> String {
    let (base, fraction) = match key.rsplit_once('_') {
        Some((b, f)) if f.ends_with("pct") => (b, Some(f.trim_end_matches("pct").to_string())),
        _ => (key, None),
    };
    let base = base.replace("knn", "kNN").replace("top1", "top-1").replace("f1", "F1").replace('_', " ");
    match fraction {
        Some(f) => format!("{base}, {f}% of the labels"),
        None => base,
    }
}

/// The table of the pretrained encoder (`ssl`) against its baseline
/// (`random_init`), every modality alike.
fn comparison(report: &Value) -> Option<String> {
    let names = ["SSL", "random init"];
    let (x, y) = (&report["ssl"], &report["random_init"]);
    if !(x.is_object() && y.is_object()) {
        return None;
    }
    let mut keys: Vec<&String> = x.as_object()?.keys().filter(|k| x[k.as_str()].is_number()).collect();
    for k in y.as_object()?.keys() {
        if y[k.as_str()].is_number() && !keys.contains(&k) {
            keys.push(k);
        }
    }
    let mut t = format!(
        "<table><thead><tr><th>figure</th><th>{}</th><th>{}</th><th>difference</th></tr></thead><tbody>\n",
        names[0], names[1]
    );
    for k in keys {
        let (p, q) = (x[k.as_str()].as_f64(), y[k.as_str()].as_f64());
        let cell = |v: Option<f64>| v.map_or_else(|| "–".to_string(), |v| fmt(k, v));
        let diff = match (p, q) {
            (Some(p), Some(q)) if is_rate(k) => format!("{:+.2} points", 100.0 * (p - q)),
            (Some(p), Some(q)) => format!("{:+.4}", p - q),
            _ => "–".into(),
        };
        let _ = writeln!(
            t,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{diff}</td></tr>",
            esc(&figure_name(k)),
            cell(p),
            cell(q)
        );
    }
    t.push_str("</tbody></table>\n");
    Some(t)
}

/// Keys of metric rows that are not curves of their own.
const NOT_CURVES: [&str; 6] = ["epoch", "step", "loss", "lr", "samples_per_s", "epoch_loss"];

/// The training charts from `metrics.jsonl`'s rows: loss (per logged step
/// and per epoch), learning rate, the accuracies measured during training,
/// then one chart for each other per-epoch figure (RankMe, spread, …).
fn training_charts(rows: &[Value]) -> Vec<LineChart> {
    let step_rows: Vec<&Value> = rows
        .iter()
        .filter(|r| r["loss"].is_number() && r["epoch_loss"].is_null() && r["skipped"].is_null())
        .collect();
    let epoch_rows: Vec<&Value> = rows.iter().filter(|r| r["epoch_loss"].is_number()).collect();
    let pts = |rs: &[&Value], x: &str, y: &str| -> Vec<(f64, f64)> {
        rs.iter().filter_map(|r| Some((r[x].as_f64()?, r[y].as_f64()?))).collect()
    };
    let mut charts = Vec::new();
    let mut loss = vec![];
    if !step_rows.is_empty() {
        loss.push(Series { name: "logged steps".into(), points: pts(&step_rows, "step", "loss") });
    }
    if !epoch_rows.is_empty() {
        loss.push(Series { name: "epoch mean".into(), points: pts(&epoch_rows, "step", "epoch_loss") });
    }
    if !loss.is_empty() {
        charts.push(LineChart {
            title: "Training loss".into(),
            x_label: "step".into(),
            y_label: "loss".into(),
            series: loss,
        });
    }
    let lr = pts(&step_rows, "step", "lr");
    if !lr.is_empty() {
        charts.push(LineChart {
            title: "Learning rate".into(),
            x_label: "step".into(),
            y_label: "learning rate".into(),
            series: vec![Series { name: "lr".into(), points: lr }],
        });
    }
    // Per-epoch figures, in the order they first appear.
    let mut keys: Vec<String> = Vec::new();
    for r in &epoch_rows {
        for (k, v) in r.as_object().into_iter().flatten() {
            if v.is_number() && !NOT_CURVES.contains(&k.as_str()) && !keys.contains(k) {
                keys.push(k.clone());
            }
        }
    }
    let rates: Vec<Series> = keys
        .iter()
        .filter(|k| is_rate(k))
        .map(|k| Series {
            name: k.replace('_', " "),
            points: pts(&epoch_rows, "epoch", k).into_iter().map(|(x, y)| (x, 100.0 * y)).collect(),
        })
        .collect();
    if !rates.is_empty() {
        charts.push(LineChart {
            title: "Accuracy during training".into(),
            x_label: "epoch".into(),
            y_label: "top-1 (%)".into(),
            series: rates,
        });
    }
    for k in keys.iter().filter(|k| !is_rate(k)) {
        let title = match k.as_str() {
            "rankme" => "Effective rank of the features (RankMe)".to_string(),
            "normalized_std" => "Spread of the normalised features".to_string(),
            other => other.replace('_', " "),
        };
        charts.push(LineChart {
            title,
            x_label: "epoch".into(),
            y_label: k.replace('_', " "),
            series: vec![Series { name: k.replace('_', " "), points: pts(&epoch_rows, "epoch", k) }],
        });
    }
    // A figure never logged draws no chart.
    for c in &mut charts {
        c.series.retain(|s| !s.points.is_empty());
    }
    charts.retain(|c| !c.series.is_empty());
    charts
}

/// The fine-tuning section: a table per label fraction, the training loss
/// curves and, where measured (text), the test top-1 curves.
fn finetune(report: &Value) -> Result<Option<String>> {
    let mut out = String::new();
    if let Some(rows) = report["finetune"]["fractions"].as_array() {
        out.push_str(
            "<table><thead><tr><th>labels</th><th>samples</th><th>epochs</th><th>SSL</th><th>random init</th>\
             <th>difference</th></tr></thead><tbody>\n",
        );
        let mut curves = Vec::new();
        for r in rows {
            let f = r["plan"]["fraction"].as_f64().unwrap_or(f64::NAN);
            let (s, b) = (r["ssl"]["test_top1"].as_f64(), r["random_init"]["test_top1"].as_f64());
            let _ = writeln!(
                out,
                "<tr><td>{}%</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                crate::eval::percent(f),
                r["plan"]["labels"],
                r["plan"]["epochs"],
                s.map_or("–".into(), |v| fmt("top1", v)),
                b.map_or("–".into(), |v| fmt("top1", v)),
                match (s, b) {
                    (Some(s), Some(b)) => format!("{:+.2} points", 100.0 * (s - b)),
                    _ => "–".into(),
                }
            );
            let mut series = Vec::new();
            for (key, name) in [("ssl", "SSL"), ("random_init", "random init")] {
                let c = curve(&r[key]["train_loss_curve"]);
                if !c.is_empty() {
                    series.push(Series { name: name.into(), points: c });
                }
            }
            if !series.is_empty() {
                curves.push(LineChart {
                    title: format!("Fine-tuning on {}% of the labels", crate::eval::percent(f)),
                    x_label: "epoch".into(),
                    y_label: "training loss".into(),
                    series,
                });
            }
            // Text measures the test top-1 after each epoch too.
            let mut series = Vec::new();
            for (key, name) in [("ssl", "SSL"), ("random_init", "random init")] {
                let c = curve(&r[key]["test_top1_curve"]);
                if !c.is_empty() {
                    series.push(Series {
                        name: name.into(),
                        points: c.into_iter().map(|(x, y)| (x, 100.0 * y)).collect(),
                    });
                }
            }
            if !series.is_empty() {
                curves.push(LineChart {
                    title: format!(
                        "Fine-tuning on {}% of the labels: test top-1 after each epoch",
                        crate::eval::percent(f)
                    ),
                    x_label: "epoch".into(),
                    y_label: "top-1 (%)".into(),
                    series,
                });
            }
        }
        out.push_str("</tbody></table>\n");
        push_charts(&mut out, &curves)?;
    }
    Ok((!out.is_empty()).then_some(out))
}

/// A JSON list of numbers as points at epochs 1, 2, ….
fn curve(v: &Value) -> Vec<(f64, f64)> {
    v.as_array()
        .into_iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, y)| Some(((i + 1) as f64, y.as_f64()?)))
        .collect()
}

/// A line chart's figure. It says how many data marks the browser must
/// find in it: each curve is a polyline 2 px wide (one point, a circle),
/// and so is its legend mark.
fn line_figure(c: &LineChart) -> Result<String> {
    Ok(format!(
        "<figure class=\"chart\" data-marks=\"{}\">{}</figure>\n",
        2 * c.series.len(),
        line_svg(c, CHART)?
    ))
}

fn push_charts(out: &mut String, charts: &[LineChart]) -> Result<()> {
    if charts.is_empty() {
        return Ok(());
    }
    out.push_str("<div class=\"grid\">\n");
    for c in charts {
        out.push_str(&line_figure(c)?);
    }
    out.push_str("</div>\n");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_page_has_every_section_from_the_run_files() {
        let report = json!({"method": "simclr", "dataset": "digits", "epochs": 2, "wall_s": 3.0, "device": "cpu",
            "ssl": {"knn_top1": 0.8, "linear_top1": 0.9}, "random_init": {"knn_top1": 0.5, "linear_top1": 0.7},
            "finetune": {"fractions": [{"plan": {"fraction": 0.1, "labels": 40, "epochs": 3},
                "ssl": {"test_top1": 0.6, "train_loss_curve": [1.0, 0.5, 0.25]},
                "random_init": {"test_top1": 0.4, "train_loss_curve": [1.1, 0.9, 0.8]}}]}});
        let config = json!({"method": "simclr", "args": {"epochs": 2}, "note": "<b>"});
        let rows = vec![
            json!({"step": 1, "epoch": 0, "loss": 2.0, "lr": 0.1}),
            json!({"step": 2, "epoch": 0, "loss": 1.5, "lr": 0.2}),
            json!({"epoch": 1, "step": 2, "epoch_loss": 1.7, "online_probe_top1": 0.3, "rankme": 5.0}),
            json!({"step": 3, "epoch": 1, "skipped": "a non-finite loss"}),
            json!({"epoch": 2, "step": 4, "epoch_loss": 1.2, "online_probe_top1": 0.5, "rankme": 6.0, "knn_top1": 0.7}),
        ];
        let scatter = Scatter {
            title: "SSL".into(),
            axes: ["pc 1".into(), "pc 2".into()],
            points: vec![[0.0, 1.0], [1.0, 0.0]],
            labels: vec![0, 1],
            classes: vec!["a".into(), "b".into()],
        };
        let extras = Extras {
            scatters: vec![scatter],
            pictures: vec![Picture { title: "Neighbours".into(), caption: "c".into(), png: vec![1, 2, 3] }],
        };
        let html = render(&report, &config, &rows, &extras).unwrap();
        for text in [
            "<h1>simclr on digits</h1>",
            "2 epochs · 3 s · cpu",
            "<td>kNN top-1</td><td>80.00%</td><td>50.00%</td><td>+30.00 points</td>",
            "Training loss",
            "Learning rate",
            "Accuracy during training",
            "online probe top1",
            "knn top1",
            "Effective rank of the features (RankMe)",
            "<td>10%</td><td>40</td><td>3</td><td>60.00%</td><td>40.00%</td><td>+20.00 points</td>",
            "Fine-tuning on 10% of the labels",
            "Test embeddings",
            "data:image/png;base64,AQID",
            "&quot;&lt;b&gt;&quot;",
        ] {
            assert!(html.contains(text), "the page lacks {text:?}");
        }
        // 5 line charts (loss, lr, accuracies, RankMe, fine-tuning), 1 scatter: every one in a figure the script counts.
        assert_eq!(html.matches("<figure class=\"chart\"").count(), 6, "{html}");
        assert!(!html.contains("<b>"), "unescaped config text");
    }

    #[test]
    fn figures_get_readable_names() {
        assert_eq!(figure_name("linear_top1_10pct"), "linear top-1, 10% of the labels");
        assert_eq!(figure_name("finetune_top1"), "finetune top-1");
        assert_eq!(figure_name("linear_macro_f1"), "linear macro F1");
        assert_eq!(figure_name("linear_top1_0.5pct"), "linear top-1, 0.5% of the labels");
    }

    #[test]
    fn text_reports_show_their_test_top1_curves() {
        let report = json!({"objective": "mlm", "ssl": {"linear_top1": 0.6}, "random_init": {"linear_top1": 0.5},
            "finetune": {"fractions": [{"plan": {"fraction": 1.0, "labels": 40, "epochs": 2},
                "ssl": {"test_top1": 0.7, "train_loss_curve": [1.0, 0.5], "test_top1_curve": [0.5, 0.7]},
                "random_init": {"test_top1": 0.6, "train_loss_curve": [1.1, 0.9], "test_top1_curve": [0.4, 0.6]}}]}});
        let html = render(&report, &Value::Null, &[], &Extras::default()).unwrap();
        assert!(html.contains("<th>SSL</th><th>random init</th>"), "{html}");
        assert!(html.contains("Fine-tuning on 100% of the labels: test top-1 after each epoch"), "{html}");
        assert!(!html.contains("Resolved config"));
    }
}
