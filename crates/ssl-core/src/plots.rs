//! Charts with a title, labelled axes and a legend, drawn by plotters as
//! PNG files or as SVG text (for `report.html`): line charts of training
//! curves and scatter plots of embeddings coloured by class.
//!
//! Text is laid out with DejaVu Sans, compiled in from the `dejavu` crate
//! and registered with plotters' `ab_glyph` renderer on first use, so no
//! system font is needed.

use crate::{Error, Result};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;
use tch::{Kind, Tensor};

/// One named curve of a [`LineChart`]: `(x, y)` points in order.
#[derive(Clone, Debug)]
pub struct Series {
    /// Its name in the legend.
    pub name: String,
    /// The points; non-finite ones are left out.
    pub points: Vec<(f64, f64)>,
}

/// Curves against a shared x axis.
#[derive(Clone, Debug)]
pub struct LineChart {
    /// The caption above the chart.
    pub title: String,
    /// What the x axis counts (e.g. "step").
    pub x_label: String,
    /// What the y axis shows (e.g. "loss").
    pub y_label: String,
    /// The curves.
    pub series: Vec<Series>,
}

/// 2-D points coloured by class (an embedding's first two principal
/// components, say).
#[derive(Clone, Debug)]
pub struct Scatter {
    /// The caption above the chart.
    pub title: String,
    /// The axes' names.
    pub axes: [String; 2],
    /// The points.
    pub points: Vec<[f32; 2]>,
    /// Each point's class index.
    pub labels: Vec<i64>,
    /// Class names, by index (the legend; at most [`LEGEND_CLASSES`] are
    /// listed).
    pub classes: Vec<String>,
}

/// The most classes a scatter plot's legend names.
pub const LEGEND_CLASSES: usize = 20;

impl Scatter {
    /// From `points` `[N, 2]` and `labels` `[N]`.
    pub fn from_tensors(title: &str, points: &Tensor, labels: &Tensor, classes: &[String]) -> Result<Self> {
        let p = Vec::<f32>::try_from(points.to_kind(Kind::Float).flatten(0, -1))
            .map_err(|e| Error::Shape(format!("points: {e}")))?;
        let labels = Vec::<i64>::try_from(labels.to_kind(Kind::Int64).flatten(0, -1))
            .map_err(|e| Error::Shape(format!("labels: {e}")))?;
        if p.len() != 2 * labels.len() {
            return Err(Error::Shape(format!(
                "{} values for {} labels: expected [N, 2] points",
                p.len(),
                labels.len()
            )));
        }
        Ok(Self {
            title: title.to_string(),
            axes: ["principal component 1".into(), "principal component 2".into()],
            points: p.chunks(2).map(|c| [c[0], c[1]]).collect(),
            labels,
            classes: classes.to_vec(),
        })
    }

    fn class_name(&self, c: i64) -> String {
        self.classes.get(c as usize).cloned().unwrap_or_else(|| format!("class {c}"))
    }
}

/// Registers DejaVu Sans as plotters' "sans-serif" (once).
fn fonts() -> Result<()> {
    static DONE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let ok = *DONE.get_or_init(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular()).is_ok()
            && plotters::style::register_font("sans-serif", FontStyle::Bold, dejavu::sans::bold()).is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(Error::Config("the compiled-in DejaVu Sans font could not be read".into()))
    }
}

/// `lo..hi` padded by 5% (a span of 1 around a single value).
fn padded(values: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let (lo, hi) =
        values.filter(|v| v.is_finite()).fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
    if lo > hi {
        return 0.0..1.0;
    }
    let span = hi - lo;
    let pad = if span > 0.0 { span * 0.05 } else { lo.abs().max(1.0) * 0.5 };
    (lo - pad)..(hi + pad)
}

fn draw_lines<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    c: &LineChart,
) -> std::result::Result<(), String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let points = || c.series.iter().flat_map(|s| s.points.iter());
    let (xs, ys) = (padded(points().map(|p| p.0)), padded(points().map(|p| p.1)));
    // The legend goes in the upper right corner unless the curves end
    // high there (a rising accuracy, a learning-rate warmup).
    let right: Vec<f64> = points()
        .filter(|p| p.0 >= xs.start + 0.6 * (xs.end - xs.start) && p.1.is_finite())
        .map(|p| (p.1 - ys.start) / (ys.end - ys.start))
        .collect();
    let high = !right.is_empty() && right.iter().sum::<f64>() / right.len() as f64 > 0.5;
    let mut chart = frame(root, &c.title, 60, (xs, ys))?;
    chart
        .configure_mesh()
        .x_desc(&c.x_label)
        .y_desc(&c.y_label)
        .x_label_formatter(&|v| tick(*v))
        .y_label_formatter(&|v| tick(*v))
        .label_style(("sans-serif", 12))
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(|e| err(&e))?;
    for (i, s) in c.series.iter().enumerate() {
        let colour = Palette99::pick(i).to_rgba();
        let pts: Vec<(f64, f64)> =
            s.points.iter().copied().filter(|(x, y)| x.is_finite() && y.is_finite()).collect();
        let style = ShapeStyle { color: colour, filled: false, stroke_width: 2 };
        if pts.len() == 1 {
            chart
                .draw_series(std::iter::once(Circle::new(pts[0], 3, colour.filled())))
                .map_err(|e| err(&e))?
                .label(&s.name)
                .legend(move |(x, y)| Circle::new((x + 10, y), 3, colour.filled()));
        } else {
            chart
                .draw_series(std::iter::once(PathElement::new(pts, style)))
                .map_err(|e| err(&e))?
                .label(&s.name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        }
    }
    let corner = if high { SeriesLabelPosition::LowerRight } else { SeriesLabelPosition::UpperRight };
    finish(root, &mut chart, corner)
}

/// A chart of `root` with a caption, axis label areas (`y_area` pixels for
/// the y labels) and `ranges`.
fn frame<'a, DB: DrawingBackend>(
    root: &'a DrawingArea<DB, Shift>,
    title: &str,
    y_area: u32,
    (xs, ys): (std::ops::Range<f64>, std::ops::Range<f64>),
) -> std::result::Result<Plot<'a, DB>, String> {
    ChartBuilder::on(root)
        .caption(title, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(y_area)
        .build_cartesian_2d(xs, ys)
        .map_err(|e| e.to_string())
}

/// Draws `chart`'s legend in `corner` and presents `root`.
fn finish<'a, DB: DrawingBackend + 'a>(
    root: &DrawingArea<DB, Shift>,
    chart: &mut Plot<'a, DB>,
    corner: SeriesLabelPosition,
) -> std::result::Result<(), String> {
    chart
        .configure_series_labels()
        .label_font(("sans-serif", 12))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .position(corner)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

/// A chart on f64 axes.
type Plot<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// A tick label: whole numbers without decimals, others to 4 significant
/// digits without trailing zeros.
fn tick(v: f64) -> String {
    if v == v.round() && v.abs() < 1e15 {
        return format!("{v:.0}");
    }
    if v.abs() < 1e-4 {
        return format!("{v:.1e}");
    }
    let digits = (3 - v.abs().log10().floor() as i32).clamp(0, 10) as usize;
    let s = format!("{v:.digits$}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-" {
        format!("{v:.1e}")
    } else {
        s.to_string()
    }
}

fn draw_scatter<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    s: &Scatter,
) -> std::result::Result<(), String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let ranges =
        (padded(s.points.iter().map(|p| f64::from(p[0]))), padded(s.points.iter().map(|p| f64::from(p[1]))));
    let mut chart = frame(root, &s.title, 55, ranges)?;
    chart
        .configure_mesh()
        .x_desc(&s.axes[0])
        .y_desc(&s.axes[1])
        .label_style(("sans-serif", 12))
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(|e| err(&e))?;
    let mut classes: Vec<i64> = s.labels.clone();
    classes.sort_unstable();
    classes.dedup();
    for (k, &c) in classes.iter().enumerate() {
        let colour = Palette99::pick(c.max(0) as usize).to_rgba();
        let pts = s
            .points
            .iter()
            .zip(&s.labels)
            .filter(|(p, &l)| l == c && p[0].is_finite() && p[1].is_finite())
            .map(|(p, _)| Circle::new((f64::from(p[0]), f64::from(p[1])), 2, colour.filled()));
        let drawn = chart.draw_series(pts).map_err(|e| err(&e))?;
        if k < LEGEND_CLASSES {
            drawn.label(s.class_name(c)).legend(move |(x, y)| Circle::new((x + 8, y), 4, colour.filled()));
        } else if k == LEGEND_CLASSES {
            drawn
                .label(format!("… {} more", classes.len() - LEGEND_CLASSES))
                .legend(|(x, y)| Circle::new((x + 8, y), 0, WHITE));
        }
    }
    finish(root, &mut chart, SeriesLabelPosition::UpperRight)
}

/// An SVG document of `size` pixels drawn by `draw`; `title` names the
/// chart in errors.
fn svg(
    size: (u32, u32),
    title: &str,
    draw: impl FnOnce(&DrawingArea<SVGBackend, Shift>) -> std::result::Result<(), String>,
) -> Result<String> {
    fonts()?;
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, size).into_drawing_area();
        draw(&root).map_err(|e| Error::Config(format!("drawing the chart `{title}`: {e}")))?;
    }
    Ok(out)
}

/// `c` as an SVG document of `size` pixels.
pub fn line_svg(c: &LineChart, size: (u32, u32)) -> Result<String> {
    svg(size, &c.title, |root| draw_lines(root, c))
}

/// `s` as an SVG document of `size` pixels.
pub fn scatter_svg(s: &Scatter, size: (u32, u32)) -> Result<String> {
    svg(size, &s.title, |root| draw_scatter(root, s))
}

/// `s` as a 720 × 640 PNG file at `path`.
pub fn scatter_png(path: &Path, s: &Scatter) -> Result<()> {
    fonts()?;
    let root = BitMapBackend::new(path, (720, 640)).into_drawing_area();
    draw_scatter(&root, s).map_err(|e| Error::io(path, std::io::Error::other(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scatter() -> Scatter {
        let points: Vec<[f32; 2]> = (0..60)
            .map(|i| [(i % 3) as f32 * 4.0 + (i as f32 * 0.37).sin(), (i as f32 * 0.11).cos()])
            .collect();
        let labels: Vec<i64> = (0..60).map(|i| i % 3).collect();
        Scatter {
            title: "test embeddings".into(),
            axes: ["pc 1".into(), "pc 2".into()],
            points,
            labels,
            classes: vec!["zero".into(), "one".into(), "two".into()],
        }
    }

    #[test]
    fn svg_charts_carry_their_title_axes_legend_and_marks() {
        let c = LineChart {
            title: "training loss".into(),
            x_label: "step".into(),
            y_label: "loss".into(),
            series: vec![
                Series {
                    name: "every 10 steps".into(),
                    points: (0..20).map(|i| (i as f64, 1.0 / (1.0 + i as f64))).collect(),
                },
                Series { name: "epoch mean".into(), points: vec![(10.0, 0.2), (f64::NAN, 1.0)] },
            ],
        };
        let svg = line_svg(&c, (600, 360)).unwrap();
        for text in
            ["\ntraining loss\n", "\nstep\n", "\nloss\n", "\nevery 10 steps\n", "\nepoch mean\n", "<polyline"]
        {
            assert!(svg.contains(text), "the SVG lacks {text:?}");
        }
        let svg = scatter_svg(&scatter(), (600, 500)).unwrap();
        for text in ["\ntest embeddings\n", "\npc 1\n", "\npc 2\n", "\nzero\n", "\ntwo\n", "<circle"] {
            assert!(svg.contains(text), "the SVG lacks {text:?}");
        }
        // 60 points and 3 legend marks.
        assert_eq!(svg.matches("<circle").count(), 63, "{svg}");
    }

    #[test]
    fn ticks_drop_needless_decimals() {
        let t: Vec<String> =
            [10.0, 0.25, 0.3000000004, 1e-5, -2.5, 123.456].iter().map(|&v| tick(v)).collect();
        assert_eq!(t, ["10", "0.25", "0.3", "1.0e-5", "-2.5", "123.5"]);
        assert_eq!(tick(3e-12), "3.0e-12");
    }

    #[test]
    fn png_scatter_draws_text_and_points() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pca.png");
        scatter_png(&path, &scatter()).unwrap();
        let img = image_rgb(&path);
        // Dark pixels of text and axes, and coloured pixels of the points.
        let dark = img.iter().filter(|p| p.iter().all(|&c| c < 80)).count();
        let coloured = img.iter().filter(|p| p.iter().max().unwrap() - p.iter().min().unwrap() > 80).count();
        assert!(dark > 500 && coloured > 200, "dark {dark}, coloured {coloured}");
        let bad = Scatter::from_tensors(
            "x",
            &Tensor::zeros([4, 2], (Kind::Float, tch::Device::Cpu)),
            &Tensor::zeros([3], (Kind::Int64, tch::Device::Cpu)),
            &[],
        );
        assert!(bad.unwrap_err().to_string().contains("8 values for 3 labels"));
    }

    /// The PNG's pixels as RGB triples.
    fn image_rgb(path: &Path) -> Vec<[u8; 3]> {
        let img = image::open(path).unwrap().to_rgb8();
        img.pixels().map(|p| p.0).collect()
    }
}
