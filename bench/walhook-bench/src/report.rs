//! The benchmark's output: per-run JSON, a markdown table of medians and spread
//! over runs, the latency samples as CSV and their distribution as an SVG plot.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use crate::scenarios::{RunResult, percentile};

pub fn write_run(out: &Path, run: usize, result: &RunResult) -> anyhow::Result<()> {
    std::fs::write(
        out.join(format!("run-{}.json", run + 1)),
        serde_json::to_string_pretty(&result.figures)?,
    )?;
    let mut csv = String::from("scenario,latency_ms\n");
    for (scenario, values) in &result.latencies {
        for v in values {
            let _ = writeln!(csv, "{scenario},{v:.3}");
        }
    }
    std::fs::write(out.join(format!("latency-run-{}.csv", run + 1)), csv)?;
    std::fs::write(
        out.join(format!("latency-run-{}.svg", run + 1)),
        latency_svg(&result.latencies),
    )?;
    Ok(())
}

/// One figure's values over the runs, per binary label.
type ByLabel<'a> = BTreeMap<&'a str, Vec<f64>>;

/// Median and (min, max) of each figure over the runs, in first-seen order;
/// one pair of columns per binary under test (`labels`, baseline first) and,
/// with more than one, the ratio of the last binary's median to the first's.
pub fn table(runs: &[RunResult], labels: &[&str]) -> String {
    let mut order = Vec::new();
    let mut values: BTreeMap<(String, &str), (ByLabel, &str)> = BTreeMap::new();
    for run in runs {
        for f in &run.figures {
            let key = (f.scenario.clone(), f.name);
            if !values.contains_key(&key) {
                order.push(key.clone());
            }
            values
                .entry(key)
                .or_insert_with(|| (BTreeMap::new(), f.unit))
                .0
                .entry(f.walhook.as_str())
                .or_default()
                .push(f.value);
        }
    }
    let spread = format!("min - max ({} runs)", runs.len());
    let mut header = String::from("| scenario | figure |");
    let mut rule = String::from("|---|---|");
    if let [_] = labels {
        let _ = write!(header, " median | {spread} |");
        rule.push_str("---:|---:|");
    } else {
        for label in labels {
            let _ = write!(header, " {label}: median | {label}: {spread} |");
            rule.push_str("---:|---:|");
        }
        let _ = write!(header, " {} / {} |", labels[labels.len() - 1], labels[0]);
        rule.push_str("---:|");
    }
    let mut out = format!("{header} unit |\n{rule}---|\n");
    for key in order {
        let (mut by_label, unit) = values.remove(&key).unwrap_or_default();
        let _ = write!(out, "| {} | {} |", key.0, key.1);
        let mut medians = Vec::new();
        for label in labels {
            let mut v = by_label.remove(label).unwrap_or_default();
            v.sort_by(f64::total_cmp);
            match (v.first(), v.last()) {
                (Some(lo), Some(hi)) => {
                    let median = percentile(&v, 0.5);
                    medians.push(median);
                    let _ = write!(out, " {} | {} - {} |", num(median), num(*lo), num(*hi));
                }
                _ => {
                    medians.push(f64::NAN);
                    out.push_str(" | |");
                }
            }
        }
        if labels.len() > 1 {
            let ratio = medians[medians.len() - 1] / medians[0];
            if ratio.is_finite() {
                let _ = write!(out, " {ratio:.2} |");
            } else {
                out.push_str(" |");
            }
        }
        let _ = writeln!(out, " {unit} |");
    }
    out
}

/// A figure for the table: whole numbers from 100, else one decimal, two
/// below 1 (ratios such as walhook / write rate).
pub fn num(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Cumulative distribution of each live scenario's latencies, log-scaled x.
fn latency_svg(series: &[(String, Vec<f64>)]) -> String {
    const W: f64 = 720.0;
    const H: f64 = 360.0;
    const PAD: f64 = 50.0;
    const COLORS: [&str; 4] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];
    let (lo, hi) = (0.1f64, 10_000f64);
    let x = |ms: f64| {
        PAD + (ms.clamp(lo, hi).log10() - lo.log10()) / (hi.log10() - lo.log10()) * (W - 2.0 * PAD)
    };
    let y = |q: f64| H - PAD - q * (H - 2.0 * PAD);
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{}" y="20" text-anchor="middle">walhook commit-to-receipt latency (CDF)</text>
"#,
        W / 2.0
    );
    for decade in [0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0] {
        let _ = writeln!(
            svg,
            r##"<line x1="{0:.1}" y1="{1}" x2="{0:.1}" y2="{2}" stroke="#ddd"/><text x="{0:.1}" y="{3}" text-anchor="middle">{decade} ms</text>"##,
            x(decade),
            PAD,
            H - PAD,
            H - PAD + 16.0
        );
    }
    for q in [0.0, 0.5, 0.9, 0.99, 1.0] {
        let _ = writeln!(
            svg,
            r##"<line x1="{PAD}" y1="{0:.1}" x2="{1}" y2="{0:.1}" stroke="#eee"/><text x="{2}" y="{0:.1}" text-anchor="end">{q}</text>"##,
            y(q),
            W - PAD,
            PAD - 4.0
        );
    }
    for (i, (name, in_receipt_order)) in series.iter().enumerate() {
        if in_receipt_order.is_empty() {
            continue;
        }
        let mut values = in_receipt_order.clone();
        values.sort_by(f64::total_cmp);
        let color = COLORS[i % COLORS.len()];
        let step = (values.len() / 400).max(1);
        let mut points = String::new();
        for (k, v) in values.iter().enumerate().step_by(step) {
            let _ = write!(
                points,
                "{:.1},{:.1} ",
                x(*v),
                y((k + 1) as f64 / values.len() as f64)
            );
        }
        let _ = write!(points, "{:.1},{:.1}", x(values[values.len() - 1]), y(1.0));
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{points}"/><text x="{}" y="{}" fill="{color}">{name} (p99 {:.1} ms)</text>"#,
            PAD + 10.0,
            PAD + 16.0 * (i as f64 + 1.0),
            percentile(&values, 0.99)
        );
    }
    svg.push_str("</svg>\n");
    svg
}
