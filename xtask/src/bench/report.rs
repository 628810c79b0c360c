//! The figures of `cargo xtask bench` as rows: medians and ratios, the table printed at the
//! end, the chart of the ratios and what `latest.json` says about each row and the machine.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::process::Command;

use serde_json::{Value, json};

/// Which way a figure improves.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Better {
    Higher,
    Lower,
}

/// One line of the table, the chart and `latest.json`.
pub struct Row {
    pub name: &'static str,
    pub unit: &'static str,
    pub better: Better,
    /// Medians.
    pub gateway: f64,
    pub mosquitto: f64,
    /// gateway/Mosquitto, unless `ratio_of` says otherwise.
    pub ratio: f64,
    /// What `ratio` divides when it is not gateway/Mosquitto.
    pub ratio_of: Option<&'static str>,
    /// The ratio the row is judged by when it is not parity with Mosquitto.
    pub goal: Option<f64>,
    /// What the table says after the ratio when it is not plain gateway/Mosquitto.
    pub note: Option<Cow<'static, str>>,
    /// A bound on the gateway's own figure (at most for [`Better::Lower`], at least for
    /// [`Better::Higher`]), for a row judged by an absolute figure rather than a ratio.
    pub gateway_goal: Option<f64>,
    /// Per-run values, [gateway, mosquitto].
    pub samples: [Vec<f64>; 2],
    /// Per-run JSON results of `mqtt-bench`, [gateway, mosquitto]; empty for a derived row.
    pub results: [Vec<Value>; 2],
}

impl Row {
    /// A row of measured runs: medians and their plain gateway/Mosquitto ratio.
    pub fn measured(
        name: &'static str,
        unit: &'static str,
        better: Better,
        samples: [Vec<f64>; 2],
        results: [Vec<Value>; 2],
    ) -> Row {
        let gateway = median_or_nan(&samples[0]);
        let mosquitto = median_or_nan(&samples[1]);
        Row {
            name,
            unit,
            better,
            gateway,
            mosquitto,
            ratio: gateway / mosquitto,
            ratio_of: None,
            goal: None,
            note: None,
            gateway_goal: None,
            samples,
            results,
        }
    }

    pub fn to_json(&self) -> Value {
        let mut row = json!({
            "figure": self.name,
            "unit": self.unit,
            "better": if self.better == Better::Higher { "higher" } else { "lower" },
            "gateway": self.gateway,
            "mosquitto": self.mosquitto,
            "ratio": self.ratio,
            "gateway_samples": self.samples[0],
            "mosquitto_samples": self.samples[1],
            "gateway_results": self.results[0],
            "mosquitto_results": self.results[1],
        });
        if let Some(ratio_of) = self.ratio_of {
            row["ratio_of"] = json!(ratio_of);
        }
        if let Some(goal) = self.goal {
            row["goal"] = json!(goal);
        }
        if let Some(goal) = self.gateway_goal {
            row["gateway_goal"] = json!(goal);
            row["gateway_goal_met"] = json!(self.meets_gateway_goal());
        }
        row
    }

    /// Whether the gateway's median is within [`Row::gateway_goal`]; `None` without one.
    pub fn meets_gateway_goal(&self) -> Option<bool> {
        let goal = self.gateway_goal?;
        Some(match self.better {
            Better::Lower => self.gateway <= goal,
            Better::Higher => self.gateway >= goal,
        })
    }
}

/// The median (the mean of the middle two for an even count); the samples keep their run order.
fn median(values: &[f64]) -> f64 {
    let mut values = values.to_vec();
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len() % 2 == 0 {
        (values[middle - 1] + values[middle]) / 2.0
    } else {
        values[middle]
    }
}

/// The median, or NaN when a figure has no runs (a browser page that failed every time).
pub fn median_or_nan(values: &[f64]) -> f64 {
    if values.is_empty() {
        f64::NAN
    } else {
        median(values)
    }
}

/// The table printed at the end: medians, units and ratios, each row saying which way is better
/// when that is not obvious, and what its ratio is when it is not gateway/Mosquitto.
pub fn render_table(rows: &[Row], runs: usize) -> String {
    let mut table = String::new();
    // As wide as the longest name, and at least as wide as it always was.
    let width = rows
        .iter()
        .map(|row| row.name.len())
        .max()
        .unwrap_or(0)
        .max(32);
    let _ = writeln!(
        table,
        "\n{:<width$} {:>18} {:>18} {:>9}  (medians of {runs} runs; ratio = gateway/Mosquitto)",
        "figure", "gateway", "mosquitto", "ratio"
    );
    for row in rows {
        let mut note = match (&row.note, row.better) {
            (Some(note), _) => format!("  ({note})"),
            (None, Better::Lower) => "  (lower is better)".to_string(),
            (None, Better::Higher) => String::new(),
        };
        match row.meets_gateway_goal() {
            Some(true) => note.push_str("  goal met"),
            Some(false) => note.push_str("  goal missed"),
            None => {}
        }
        let _ = writeln!(
            table,
            "{:<width$} {:>12} {:<5} {:>12} {:<5} {:>8}x{note}",
            row.name,
            number(row.gateway),
            row.unit,
            number(row.mosquitto),
            row.unit,
            ratio(row.ratio),
        );
    }
    table
}

/// A figure with one decimal, or two below 10 (milliseconds, kilobytes, ratios).
pub fn number(value: f64) -> String {
    if value.abs() < 10.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.1}")
    }
}

/// A ratio with two decimals, or with its first significant digits when it is that small.
pub fn ratio(value: f64) -> String {
    if value != 0.0 && value.abs() < 0.01 {
        format!("{value:.1e}")
    } else {
        format!("{value:.2}")
    }
}

/// What the numbers were measured on.
pub fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let mosquitto = Command::new("mosquitto")
        .arg("-h")
        .output()
        .ok()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_default();
    json!({ "cpu": cpu, "cores": cores, "mosquitto": mosquitto })
}

/// A horizontal bar chart of the ratios on a log scale, 1x marked; each bar says whether the
/// figure is better higher or lower. A bar is green when it beats parity, or, for a row with a
/// goal of its own (the gateway's WebSocket over its TCP, its fan-in with an ACL over its fan-in
/// without), when it meets that goal, and for a row with a goal for the gateway's own figure
/// (a latency in ms, say), when the gateway meets it whatever the ratio.
pub fn ratio_chart(rows: &[Value]) -> String {
    // Room for the longest label (name and hint) at about 6.5 px a character, at least 260 px.
    let label = rows
        .iter()
        .map(|row| row["figure"].as_str().map_or(0, str::len) + 16)
        .max()
        .unwrap_or(0);
    let left = (10.0 + 6.5 * label as f64).max(260.0);
    let width = left + 500.0;
    let row_height = 28.0;
    let height = 50.0 + row_height * rows.len() as f64;
    let span = width - left - 60.0;
    // log10 scale from 0.1x to 100x.
    let x = |ratio: f64| left + span * ((ratio.clamp(0.1, 100.0).log10() + 1.0) / 3.0);
    let mut svg = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' \
         font-family='sans-serif' font-size='12'>\n<rect width='100%' height='100%' fill='white'/>\n\
         <text x='10' y='20' font-size='14'>gateway / Mosquitto (log scale, 1x = parity)</text>\n"
    );
    for tick in [0.1, 1.0, 10.0, 100.0] {
        let _ = writeln!(
            svg,
            "<line x1='{0}' x2='{0}' y1='30' y2='{1}' stroke='#ccc'/><text x='{0}' y='{2}' text-anchor='middle'>{tick}x</text>",
            x(tick),
            height - 15.0,
            height - 3.0
        );
    }
    for (index, row) in rows.iter().enumerate() {
        let ratio = row["ratio"].as_f64().unwrap_or(1.0);
        let lower_better = row["better"] == "lower";
        let goal = row["goal"].as_f64().unwrap_or(1.0);
        // A row with a goal for the gateway's own figure is judged by that goal.
        let good = row["gateway_goal_met"]
            .as_bool()
            .unwrap_or(if lower_better {
                ratio <= goal
            } else {
                ratio >= goal
            });
        let y = 35.0 + row_height * index as f64;
        let (from, to) = (x(1.0).min(x(ratio)), x(1.0).max(x(ratio)));
        let _ = writeln!(
            svg,
            "<text x='10' y='{ty}'>{name}{hint}</text><rect x='{from}' y='{y}' width='{w}' height='18' fill='{color}'/><text x='{tx}' y='{ty}'>{ratio:.2}x</text>",
            ty = y + 13.0,
            name = row["figure"].as_str().unwrap_or(""),
            hint = if let Some(goal) = row["goal"].as_f64() {
                format!(" (goal {goal}x)")
            } else if lower_better {
                " (lower better)".to_string()
            } else {
                String::new()
            },
            w = (to - from).max(1.0),
            color = if good { "#2a9d5c" } else { "#d1495b" },
            tx = to + 4.0,
        );
    }
    svg.push_str("</svg>\n");
    svg
}
