//! The benchmark's table: one column per implementation and, when both ran, Flagger's figure
//! divided by ours (above 1: ours needs less, or is faster).

use super::{Figures, Implementation};

struct Row {
    label: &'static str,
    value: fn(&Figures) -> f64,
    decimals: usize,
}

const ROWS: &[Row] = &[
    Row {
        label: "API requests per canary per 10 s interval, idle",
        value: |f| f.requests_per_canary_interval(),
        decimals: 3,
    },
    Row {
        label: "API requests in the idle window",
        value: |f| f.idle_requests,
        decimals: 0,
    },
    Row {
        label: "CPU seconds in the idle window",
        value: |f| f.idle_cpu_s,
        decimals: 2,
    },
    Row {
        label: "CPU seconds, start to end of idle window",
        value: |f| f.total_cpu_s,
        decimals: 2,
    },
    Row {
        label: "RSS at start, MiB",
        value: |f| f.start_rss_mib,
        decimals: 1,
    },
    Row {
        label: "RSS at end of idle window, MiB",
        value: |f| f.end_rss_mib,
        decimals: 1,
    },
    Row {
        label: "peak RSS (VmHWM), MiB",
        value: |f| f.peak_rss_mib,
        decimals: 1,
    },
    Row {
        label: "time to initialize the bulk, s",
        value: |f| f.init_s,
        decimals: 1,
    },
    Row {
        label: "API requests per bulk canary, to initialize",
        value: |f| f.init_requests / f.bulk.max(1) as f64,
        decimals: 1,
    },
    Row {
        label: "5xx answers of the API server",
        value: |f| f.server_errors,
        decimals: 0,
    },
    Row {
        label: "429 answers of the API server",
        value: |f| f.throttled,
        decimals: 0,
    },
    Row {
        label: "new revision -> Progressing, under init load, median s",
        value: |f| median(&f.load_noticed_s),
        decimals: 2,
    },
    Row {
        label: "new revision -> first step, under init load, median s",
        value: |f| median(&f.load_first_step_s),
        decimals: 2,
    },
    Row {
        label: "new revision -> first step, under init load, max s",
        value: |f| max(&f.load_first_step_s),
        decimals: 2,
    },
    Row {
        label: "new revision -> Progressing, idle, median s",
        value: |f| median(&f.idle_noticed_s),
        decimals: 2,
    },
    Row {
        label: "new revision -> first step, idle, median s",
        value: |f| median(&f.idle_first_step_s),
        decimals: 2,
    },
    Row {
        label: "new revision -> first step, idle, max s",
        value: |f| max(&f.idle_first_step_s),
        decimals: 2,
    },
];

pub fn median(v: &[f64]) -> f64 {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if s.is_empty() {
        return f64::NAN;
    }
    s.sort_by(f64::total_cmp);
    let m = s.len() / 2;
    if s.len() % 2 == 1 {
        s[m]
    } else {
        (s[m - 1] + s[m]) / 2.0
    }
}

pub fn max(v: &[f64]) -> f64 {
    v.iter()
        .copied()
        .filter(|x| x.is_finite())
        .fold(f64::NAN, f64::max)
}

fn cell(x: f64, decimals: usize) -> String {
    if x.is_nan() {
        "—".into()
    } else {
        format!("{x:.decimals$}")
    }
}

/// Flagger / ours: `∞` when only ours is 0, `—` when both are.
pub fn ratio(flagger: f64, ours: f64) -> String {
    if flagger.is_nan() || ours.is_nan() || (flagger == 0.0 && ours == 0.0) {
        "—".into()
    } else if ours == 0.0 {
        "∞".into()
    } else {
        format!("{:.2}", flagger / ours)
    }
}

/// A Markdown table of `results` (in the order they ran), with a ratio column when both ran.
pub fn table(results: &[(Implementation, Figures)]) -> String {
    let get = |which| results.iter().find(|(w, _)| *w == which).map(|(_, f)| f);
    let (ours, flagger) = (get(Implementation::Ours), get(Implementation::Flagger));
    let mut header = vec!["".to_string()];
    let mut cols: Vec<&Figures> = Vec::new();
    if let Some(f) = ours {
        header.push("ours".into());
        cols.push(f);
    }
    if let Some(f) = flagger {
        header.push("Flagger v1.44.0".into());
        cols.push(f);
    }
    let both = ours.zip(flagger);
    if both.is_some() {
        header.push("Flagger / ours".into());
    }
    let mut out = format!(
        "| {} |\n|{}\n",
        header.join(" | "),
        "---|".repeat(header.len())
    );
    for row in ROWS {
        let mut cells = vec![row.label.to_string()];
        cells.extend(cols.iter().map(|f| cell((row.value)(f), row.decimals)));
        if let Some((o, g)) = both {
            cells.push(ratio((row.value)(g), (row.value)(o)));
        }
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    out
}

/// Where each implementation's idle requests went, and which requests failed.
pub fn breakdown(results: &[(Implementation, Figures)]) -> String {
    let or_none = |s: &str| {
        if s.is_empty() {
            "none".to_string()
        } else {
            s.to_string()
        }
    };
    results
        .iter()
        .map(|(w, f)| {
            format!(
                "requests while the bulk initialized, {0}: {1}\nidle requests, {0}: {2}\n\
                 answers >= 400 from start to stop, {0}: {3}\n",
                w.name(),
                or_none(&f.init_breakdown),
                or_none(&f.idle_breakdown),
                or_none(&f.failures)
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_say_how_many_times_flagger_needs_what_ours_needs() {
        assert_eq!(ratio(14735.0, 0.0), "∞");
        assert_eq!(ratio(0.0, 0.0), "—");
        assert_eq!(ratio(80.0, 40.0), "2.00");
        assert_eq!(median(&[3.0, 1.0, f64::NAN, 2.0]), 2.0);
        assert_eq!(max(&[0.5, 0.2]), 0.5);
    }

    #[test]
    fn the_table_has_a_ratio_column_only_when_both_ran() {
        let f = Figures {
            canaries: 10,
            window_s: 120.0,
            idle_requests: 120.0,
            ..Figures::default()
        };
        let one = table(&[(Implementation::Ours, f.clone())]);
        assert!(!one.contains("Flagger / ours"));
        assert!(one.contains("| API requests per canary per 10 s interval, idle | 1.000 |"));
        let two = table(&[
            (Implementation::Ours, f.clone()),
            (Implementation::Flagger, f),
        ]);
        assert!(two.contains("| 1.000 | 1.000 | 1.00 |"));
    }
}
