//! `flagger replay --output html`: one self-contained HTML file (inline SVG, no external
//! resources) that draws a run, or two runs overlaid in compare mode: the canary weight over time
//! with events as markers, each metric against its threshold band, and the failed checks against
//! the threshold.
//!
//! Every drawn series carries `data-series="<chart>:<run>"`. A small inline script lists what the
//! browser actually laid out (each series' size, each axis label's text) in the hidden
//! `<pre id="drawn">`, so a test can check the rendering in a real browser.

use std::fmt::Write as _;

use flagger_core::api::format_go_duration;
use flagger_core::snapshot::MetricAnswer;
use jiff::{SignedDuration, Timestamp};

use crate::engine::{Run, Step};

const WIDTH: f64 = 900.0;
const HEIGHT: f64 = 200.0;
const LEFT: f64 = 60.0;
const TOP: f64 = 20.0;
const BOTTOM: f64 = 40.0;
const COLOURS: [&str; 2] = ["#1f6fd1", "#e8710a"];

/// Escapes text for HTML and SVG content and attributes.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// The time axis shared by every chart.
struct Frame {
    start: Timestamp,
    span: f64,
}

impl Frame {
    fn new(runs: &[(&str, &Run)]) -> Frame {
        let start = runs.iter().map(|(_, r)| r.start).min().unwrap_or_default();
        let end = runs
            .iter()
            .flat_map(|(_, r)| r.steps.last().map(|s| s.at))
            .max()
            .unwrap_or(start);
        let span = end.duration_since(start).as_secs_f64().max(1.0) * 1.05;
        Frame { start, span }
    }

    fn x(&self, at: Timestamp) -> f64 {
        LEFT + at.duration_since(self.start).as_secs_f64() / self.span * (WIDTH - LEFT - 10.0)
    }
}

/// A vertical scale from `lo` to `hi` onto the plot's height.
struct Scale {
    lo: f64,
    hi: f64,
}

impl Scale {
    fn y(&self, v: f64) -> f64 {
        let range = (self.hi - self.lo).max(f64::EPSILON);
        let v = v.clamp(self.lo, self.hi);
        TOP + (1.0 - (v - self.lo) / range) * (HEIGHT - TOP - BOTTOM)
    }
}

/// The outline of one chart: frame, ticks and both axis labels.
fn axes(out: &mut String, f: &Frame, s: &Scale, y_label: &str) {
    let bottom = HEIGHT - BOTTOM;
    let _ = write!(
        out,
        r##"<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{bottom}" stroke="#444"/><line x1="{LEFT}" y1="{bottom}" x2="{}" y2="{bottom}" stroke="#444"/>"##,
        WIDTH - 10.0
    );
    for i in 0..=4 {
        let v = s.lo + (s.hi - s.lo) * f64::from(i) / 4.0;
        let _ = write!(
            out,
            r##"<text x="{}" y="{:.1}" font-size="10" text-anchor="end">{}</text>"##,
            LEFT - 4.0,
            s.y(v) + 3.0,
            flagger_core::events::go_float((v * 100.0).round() / 100.0)
        );
        let t = f.span / 1.05 * f64::from(i) / 4.0;
        let at = f.start + SignedDuration::from_secs_f64(t);
        let _ = write!(
            out,
            r##"<text x="{:.1}" y="{}" font-size="10" text-anchor="middle">+{}</text>"##,
            f.x(at),
            bottom + 14.0,
            esc(&format_go_duration(SignedDuration::from_secs(
                t.round() as i64
            )))
        );
    }
    let _ = write!(
        out,
        r##"<text class="axis-label" x="{}" y="{}" font-size="12" text-anchor="middle">time since start</text>"##,
        (LEFT + WIDTH) / 2.0,
        HEIGHT - 6.0
    );
    let _ = write!(
        out,
        r##"<text class="axis-label" transform="translate(14 {}) rotate(-90)" font-size="12" text-anchor="middle">{}</text>"##,
        (TOP + bottom) / 2.0,
        esc(y_label)
    );
}

/// A step line through `(time, value)` points: each value holds until the next.
fn step_path(f: &Frame, s: &Scale, points: &[(Timestamp, f64)]) -> String {
    let mut d = String::new();
    for (i, (at, v)) in points.iter().enumerate() {
        let (x, y) = (f.x(*at), s.y(*v));
        if i == 0 {
            let _ = write!(d, "M{x:.1},{y:.1}");
        } else {
            let _ = write!(d, " H{x:.1} V{y:.1}");
        }
    }
    d
}

fn series(out: &mut String, id: &str, colour: &str, d: &str) {
    let _ = write!(
        out,
        r#"<path data-series="{}" d="{d}" fill="none" stroke="{colour}" stroke-width="2"/>"#,
        esc(id)
    );
}

fn chart(out: &mut String, title: &str, body: &str) {
    let _ = write!(
        out,
        r#"<h2>{}</h2><svg class="chart" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" xmlns="http://www.w3.org/2000/svg">{body}</svg>"#,
        esc(title)
    );
}

fn weight_chart(out: &mut String, f: &Frame, runs: &[(&str, &Run)]) {
    let s = Scale { lo: 0.0, hi: 100.0 };
    let mut body = String::new();
    axes(&mut body, f, &s, "canary weight (%)");
    for (i, (name, run)) in runs.iter().enumerate() {
        let points: Vec<(Timestamp, f64)> = run
            .steps
            .iter()
            .map(|st| (st.at, f64::from(st.after.canary_weight)))
            .collect();
        series(
            &mut body,
            &format!("weight:{name}"),
            COLOURS[i % 2],
            &step_path(f, &s, &points),
        );
        events(&mut body, f, name, run, i);
    }
    chart(out, "Canary weight", &body);
}

/// Each event as a tick on the weight chart, its message in a tooltip; warnings in red.
fn events(out: &mut String, f: &Frame, name: &str, run: &Run, i: usize) {
    let _ = write!(out, r#"<g data-series="events:{}">"#, esc(name));
    let y = TOP + i as f64 * 8.0;
    for e in run.steps.iter().flat_map(|s| &s.events) {
        let colour = if e.warning { "#c62828" } else { COLOURS[i % 2] };
        let _ = write!(
            out,
            r#"<rect x="{:.1}" y="{y}" width="3" height="8" fill="{colour}"><title>{}</title></rect>"#,
            f.x(e.at) - 1.5,
            esc(&e.message)
        );
    }
    out.push_str("</g>");
}

/// Metric names in the order first asked, over all runs.
fn metric_names(runs: &[(&str, &Run)]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for m in runs
        .iter()
        .flat_map(|(_, r)| &r.steps)
        .flat_map(|s| &s.inputs.metrics)
    {
        if !names.contains(&m.name) {
            names.push(m.name.clone());
        }
    }
    names
}

fn metric_chart(out: &mut String, f: &Frame, runs: &[(&str, &Run)], metric: &str) {
    let inputs: Vec<(usize, &Step, &crate::engine::MetricInput)> = runs
        .iter()
        .enumerate()
        .flat_map(|(i, (_, r))| r.steps.iter().map(move |s| (i, s)))
        .flat_map(|(i, s)| {
            s.inputs
                .metrics
                .iter()
                .filter(|m| m.name == metric)
                .map(move |m| (i, s, m))
        })
        .collect();
    let values = inputs.iter().filter_map(|(_, _, m)| match m.answer {
        MetricAnswer::Value(v) if v.is_finite() => Some(v),
        _ => None,
    });
    let bounds = inputs.iter().flat_map(|(_, _, m)| [m.min, m.max]).flatten();
    let all: Vec<f64> = values.chain(bounds).collect();
    let hi = all.iter().copied().fold(f64::MIN, f64::max).max(1.0) * 1.1;
    let lo = all.iter().copied().fold(f64::MAX, f64::min).min(0.0);
    let s = Scale { lo, hi };
    let mut body = String::new();
    band(&mut body, f, &s, &inputs);
    axes(&mut body, f, &s, metric);
    for (i, (name, _)) in runs.iter().enumerate() {
        let _ = write!(
            body,
            r#"<g data-series="metric {}:{}">"#,
            esc(metric),
            esc(name)
        );
        for (_, st, m) in inputs.iter().filter(|(r, _, _)| *r == i) {
            point(&mut body, f, &s, st.at, m, COLOURS[i % 2]);
        }
        body.push_str("</g>");
    }
    chart(out, &format!("Metric {metric}"), &body);
}

/// The threshold band of the first run's bounds, shaded green: values inside it pass.
fn band(
    out: &mut String,
    f: &Frame,
    s: &Scale,
    inputs: &[(usize, &Step, &crate::engine::MetricInput)],
) {
    let Some((_, _, m)) = inputs.first() else {
        return;
    };
    let top = s.y(m.max.unwrap_or(s.hi));
    let bottom = s.y(m.min.unwrap_or(s.lo));
    let _ = write!(
        out,
        r##"<rect data-series="band" x="{LEFT}" y="{top:.1}" width="{:.1}" height="{:.1}" fill="#2e7d32" fill-opacity="0.12"><title>passes within the threshold</title></rect>"##,
        f.x(f.start + SignedDuration::from_secs_f64(f.span)) - LEFT,
        (bottom - top).max(0.0)
    );
}

/// A measured value as a dot; no value or a query error as a red cross on the time axis.
fn point(
    out: &mut String,
    f: &Frame,
    s: &Scale,
    at: Timestamp,
    m: &crate::engine::MetricInput,
    colour: &str,
) {
    let x = f.x(at);
    match &m.answer {
        MetricAnswer::Value(v) if v.is_finite() => {
            let _ = write!(
                out,
                r#"<circle cx="{x:.1}" cy="{:.1}" r="3.5" fill="{colour}"><title>{} = {}</title></circle>"#,
                s.y(*v),
                esc(&m.name),
                flagger_core::events::go_float(*v)
            );
        }
        other => {
            let y = HEIGHT - BOTTOM - 4.0;
            let what = match other {
                MetricAnswer::Error(e) | MetricAnswer::NoValues(e) => e.as_str(),
                MetricAnswer::Value(_) => "not a number",
            };
            let _ = write!(
                out,
                r##"<path d="M{:.1},{:.1} l8,8 m0,-8 l-8,8" stroke="#c62828" stroke-width="2"><title>{}</title></path>"##,
                x - 4.0,
                y - 4.0,
                esc(what)
            );
        }
    }
}

fn failed_checks_chart(out: &mut String, f: &Frame, runs: &[(&str, &Run)]) {
    let threshold = runs
        .iter()
        .flat_map(|(_, r)| r.steps.iter().map(|s| s.threshold))
        .max()
        .unwrap_or(0);
    let top = runs
        .iter()
        .flat_map(|(_, r)| r.steps.iter().map(|s| s.after.failed_checks))
        .max()
        .unwrap_or(0)
        .max(threshold)
        .max(1);
    let s = Scale {
        lo: 0.0,
        hi: f64::from(top),
    };
    let mut body = String::new();
    axes(&mut body, f, &s, "failed checks");
    let y = s.y(f64::from(threshold));
    let _ = write!(
        body,
        r##"<line data-series="threshold" x1="{LEFT}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#c62828" stroke-dasharray="6 4"><title>threshold {threshold}</title></line>"##,
        WIDTH - 10.0
    );
    for (i, (name, run)) in runs.iter().enumerate() {
        let points: Vec<(Timestamp, f64)> = run
            .steps
            .iter()
            .map(|st| (st.at, f64::from(st.after.failed_checks)))
            .collect();
        series(
            &mut body,
            &format!("failed checks:{name}"),
            COLOURS[i % 2],
            &step_path(f, &s, &points),
        );
    }
    chart(out, "Failed checks", &body);
}

fn legend(out: &mut String, runs: &[(&str, &Run)]) {
    out.push_str(r#"<p class="legend">"#);
    for (i, (name, run)) in runs.iter().enumerate() {
        let _ = write!(
            out,
            r#"<span style="color:{}">&#9632; {}: {}</span> "#,
            COLOURS[i % 2],
            esc(name),
            run.final_phase().map_or("-", flagger_core::Phase::as_str)
        );
    }
    out.push_str("</p>");
}

const REPORT_SCRIPT: &str = r#"<script>
(function () {
  var out = {series: [], labels: []};
  document.querySelectorAll('[data-series]').forEach(function (e) {
    var b = e.getBBox();
    out.series.push({id: e.getAttribute('data-series'), width: b.width, height: b.height,
      marks: e.children.length});
  });
  document.querySelectorAll('.axis-label').forEach(function (e) {
    out.labels.push({text: e.textContent, width: e.getComputedTextLength()});
  });
  document.getElementById('drawn').textContent = JSON.stringify(out);
})();
</script>"#;

/// The HTML document for `runs` (one, or two overlaid), titled `title`.
pub fn html(title: &str, runs: &[(&str, &Run)]) -> String {
    let f = Frame::new(runs);
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<!DOCTYPE html><html><head><meta charset="utf-8"><title>{t}</title><style>body{{font-family:sans-serif;margin:20px}}h2{{font-size:15px;margin:18px 0 4px}}</style></head><body><h1>{t}</h1>"#,
        t = esc(title)
    );
    legend(&mut out, runs);
    weight_chart(&mut out, &f, runs);
    for m in metric_names(runs) {
        metric_chart(&mut out, &f, runs, &m);
    }
    failed_checks_chart(&mut out, &f, runs);
    out.push_str(r#"<pre id="drawn" hidden></pre>"#);
    out.push_str(REPORT_SCRIPT);
    out.push_str("</body></html>\n");
    out
}
