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

/// One broker's figure in a row: its per-run values and `mqtt-bench` results, or why it has
/// none (a peer that cannot serve the row, or failed it every time).
#[derive(Clone)]
pub struct Cell {
    /// The broker's name, as [`super::brokers::Broker::name`].
    pub broker: &'static str,
    /// Per-run values, in run order.
    pub samples: Vec<f64>,
    /// Per-run JSON results (of `mqtt-bench`, a page, ...); empty for a derived row.
    pub results: Vec<Value>,
    /// Why there is no figure, shown in the table in its place; `None` when there are samples.
    pub missing: Option<String>,
    /// The figure of a derived cell when it is not the samples' median: a ratio of two
    /// medians, say, whose samples are the per-run ratios.
    pub derived: Option<f64>,
}

impl Cell {
    pub fn new(broker: &'static str, samples: Vec<f64>, results: Vec<Value>) -> Cell {
        Cell {
            broker,
            samples,
            results,
            missing: None,
            derived: None,
        }
    }

    /// A broker that has no figure in this row, and why.
    pub fn missing(broker: &'static str, why: impl Into<String>) -> Cell {
        Cell {
            broker,
            samples: Vec::new(),
            results: Vec::new(),
            missing: Some(why.into()),
            derived: None,
        }
    }

    /// The cell's figure: the median of the samples (NaN without any), or the derived one.
    pub fn median(&self) -> f64 {
        self.derived.unwrap_or_else(|| median_or_nan(&self.samples))
    }

    /// The cell's figure, unless it has none.
    fn figure(&self) -> Option<f64> {
        let median = self.median();
        (self.missing.is_none() && median.is_finite()).then_some(median)
    }
}

/// One line of the table, the chart and `latest.json`: the gateway's figure and every other
/// broker's, Mosquitto always second, then the peers (`--peers`) in the order they run.
pub struct Row {
    pub name: Cow<'static, str>,
    pub unit: &'static str,
    pub better: Better,
    /// `cells[0]` the gateway, `cells[1]` Mosquitto, then the peers.
    pub cells: Vec<Cell>,
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
}

impl Row {
    /// A row of measured runs of the gateway and Mosquitto: medians and their plain
    /// gateway/Mosquitto ratio (peers, if any, are added with [`Row::with_peers`]).
    pub fn measured(
        name: &'static str,
        unit: &'static str,
        better: Better,
        samples: [Vec<f64>; 2],
        results: [Vec<Value>; 2],
    ) -> Row {
        let [gateway, mosquitto] = samples;
        let [gateway_results, mosquitto_results] = results;
        Row::of(
            name,
            unit,
            better,
            vec![
                Cell::new("gateway", gateway, gateway_results),
                Cell::new("mosquitto", mosquitto, mosquitto_results),
            ],
        )
    }

    /// A row of the gateway's cell, Mosquitto's and the peers', with the plain
    /// gateway/Mosquitto ratio.
    pub fn of(
        name: impl Into<Cow<'static, str>>,
        unit: &'static str,
        better: Better,
        cells: Vec<Cell>,
    ) -> Row {
        assert!(
            cells.len() >= 2 && cells[0].broker == "gateway" && cells[1].broker == "mosquitto",
            "a row starts with the gateway and Mosquitto"
        );
        let ratio = cells[0].median() / cells[1].median();
        Row {
            name: name.into(),
            unit,
            better,
            cells,
            ratio,
            ratio_of: None,
            goal: None,
            note: None,
            gateway_goal: None,
        }
    }

    /// The row with a cell per peer added, each saying why it has no figure here (a row that
    /// peers cannot serve: no persistence, no `$SYS` counts, ...).
    pub fn with_peers(mut self, peers: impl IntoIterator<Item = Cell>) -> Row {
        self.cells.extend(peers);
        self
    }

    /// The gateway's median.
    pub fn gateway(&self) -> f64 {
        self.cells[0].median()
    }

    /// The best of the other brokers (Mosquitto and the peers) that have a figure: its name
    /// and the gateway's figure over its.
    pub fn best_peer(&self) -> Option<(&'static str, f64)> {
        let others = self.cells[1..]
            .iter()
            .filter_map(|cell| Some((cell.broker, cell.figure()?)));
        let best = match self.better {
            Better::Higher => others.max_by(|a, b| a.1.total_cmp(&b.1)),
            Better::Lower => others.min_by(|a, b| a.1.total_cmp(&b.1)),
        }?;
        Some((best.0, self.gateway() / best.1))
    }

    pub fn to_json(&self) -> Value {
        let mut row = json!({
            "figure": self.name,
            "unit": self.unit,
            "better": if self.better == Better::Higher { "higher" } else { "lower" },
            "brokers": self.cells.iter().map(|cell| cell.broker).collect::<Vec<_>>(),
            "ratio": self.ratio,
        });
        // `gateway`, `gateway_samples`, `gateway_results`, then the same for each other broker,
        // and `{broker}_missing` with the reason where one has no figure.
        for cell in &self.cells {
            let broker = cell.broker;
            row[broker] = json!(cell.figure());
            row[format!("{broker}_samples")] = json!(cell.samples);
            row[format!("{broker}_results")] = json!(cell.results);
            if let Some(why) = &cell.missing {
                row[format!("{broker}_missing")] = json!(why);
            }
        }
        if let Some((best, ratio)) = self.best_peer() {
            row["best_peer"] = json!(best);
            row["ratio_to_best_peer"] = json!(ratio);
        }
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
            Better::Lower => self.gateway() <= goal,
            Better::Higher => self.gateway() >= goal,
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

/// The brokers of the rows' columns, in the order they first appear (the gateway, Mosquitto,
/// then the peers).
fn brokers(rows: &[Row]) -> Vec<&'static str> {
    let mut brokers = Vec::new();
    for cell in rows.iter().flat_map(|row| &row.cells) {
        if !brokers.contains(&cell.broker) {
            brokers.push(cell.broker);
        }
    }
    brokers
}

/// Width of a broker's column: a figure (12) and its unit (5), or why there is none.
const CELL: usize = 18;

/// A cell of the table: the median and unit, or why the broker has no figure (cut to fit).
fn cell_text(row: &Row, broker: &str) -> String {
    let Some(cell) = row.cells.iter().find(|cell| cell.broker == broker) else {
        return format!("{:>CELL$}", "not run");
    };
    match &cell.missing {
        // The whole reason is in latest.json and on the per-run line.
        Some(why) if why.chars().count() > CELL => {
            let cut: String = why.chars().take(CELL - 1).collect();
            format!("{cut}…")
        }
        Some(why) => format!("{why:>CELL$}"),
        None => format!("{:>12} {:<5}", number(cell.median()), row.unit),
    }
}

/// The table printed at the end: medians, units and ratios, each row saying which way is better
/// when that is not obvious, and what its ratio is when it is not gateway/Mosquitto. With
/// peers, a column per peer (or why it has no figure) and the gateway over the best of the
/// other brokers, Mosquitto included.
pub fn render_table(rows: &[Row], runs: usize) -> String {
    let mut table = String::new();
    // As wide as the longest name, and at least as wide as it always was.
    let width = rows
        .iter()
        .map(|row| row.name.len())
        .max()
        .unwrap_or(0)
        .max(32);
    let brokers = brokers(rows);
    let peers = brokers.len() > 2;
    let _ = write!(table, "\n{:<width$}", "figure");
    for broker in &brokers {
        let _ = write!(table, " {broker:>CELL$}");
    }
    let _ = write!(table, " {:>9}", "ratio");
    if peers {
        let _ = write!(table, "  {:<17}", "gateway/best");
    }
    let _ = writeln!(
        table,
        "  (medians of {runs} runs; ratio = gateway/Mosquitto{})",
        if peers {
            "; best = the best other broker, Mosquitto included"
        } else {
            ""
        }
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
        let _ = write!(table, "{:<width$}", row.name);
        for broker in &brokers {
            let _ = write!(table, " {}", cell_text(row, broker));
        }
        let _ = write!(table, " {:>8}x", ratio(row.ratio));
        if peers {
            let best = match row.best_peer() {
                Some((broker, best)) => format!("{}x {broker}", ratio(best)),
                None => "-".to_string(),
            };
            let _ = write!(table, "  {best:<17}");
        }
        let _ = writeln!(table, "{note}");
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
/// (a latency in ms, say), when the gateway meets it whatever the ratio. With peers, a black
/// mark on each row where the gateway stands against the best other broker (Mosquitto
/// included), whose tooltip names that broker.
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
         <text x='10' y='20' font-size='14'>gateway / Mosquitto (log scale, 1x = parity; black mark: \
         gateway / best other broker, with --peers)</text>\n"
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
        let peers = row["brokers"]
            .as_array()
            .is_some_and(|brokers| brokers.len() > 2);
        if let (true, Some(best), Some(name)) = (
            peers,
            row["ratio_to_best_peer"].as_f64(),
            row["best_peer"].as_str(),
        ) {
            let _ = writeln!(
                svg,
                "<line x1='{bx}' x2='{bx}' y1='{y0}' y2='{y1}' stroke='black' stroke-width='2'><title>gateway / best other broker ({name}): {best:.2}x</title></line>",
                bx = x(best),
                y0 = y - 2.0,
                y1 = y + 20.0,
            );
        }
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(better: Better, cells: Vec<Cell>) -> Row {
        Row::of("fan-in", "msg/s", better, cells)
    }

    /// The best other broker is the best figure among Mosquitto and the peers that have one.
    #[test]
    fn the_best_peer_is_the_best_figure_among_the_others() {
        let cells = vec![
            Cell::new("gateway", vec![100.0, 300.0, 200.0], Vec::new()),
            Cell::new("mosquitto", vec![50.0], Vec::new()),
            Cell::new("rumqttd", vec![80.0], Vec::new()),
            Cell::missing("mqttv5", "no persistence"),
        ];
        let higher = row(Better::Higher, cells.clone());
        assert_eq!(higher.gateway(), 200.0);
        assert_eq!(higher.ratio, 4.0);
        assert_eq!(higher.best_peer(), Some(("rumqttd", 2.5)));
        let lower = row(Better::Lower, cells);
        assert_eq!(lower.best_peer(), Some(("mosquitto", 4.0)));
        let json = lower.to_json();
        assert_eq!(json["rumqttd"], 80.0);
        assert_eq!(json["mqttv5"], Value::Null);
        assert_eq!(json["mqttv5_missing"], "no persistence");
        assert_eq!(json["best_peer"], "mosquitto");
        assert_eq!(json["gateway_samples"], json!([100.0, 300.0, 200.0]));
        // Only the gateway and Mosquitto: Mosquitto is the best other broker.
        let pair = Row::measured(
            "x",
            "ms",
            Better::Lower,
            [vec![2.0], vec![1.0]],
            Default::default(),
        );
        assert_eq!(pair.best_peer(), Some(("mosquitto", 2.0)));
    }

    /// A peer without a figure shows why in its cell, cut to the column; the best column
    /// appears with peers only.
    #[test]
    fn a_missing_figure_says_why_in_its_cell() {
        let cells = vec![
            Cell::new("gateway", vec![1000.0], Vec::new()),
            Cell::new("mosquitto", vec![100.0], Vec::new()),
            Cell::missing("rumqttd", "no ACL file"),
            Cell::missing("mqttv5", "crashed (signal: 11 (SIGSEGV))"),
        ];
        let table = render_table(&[row(Better::Higher, cells)], 3);
        let header = table.lines().nth(1).unwrap();
        assert!(
            header.contains("rumqttd") && header.contains("gateway/best"),
            "{header}"
        );
        let line = table.lines().nth(2).unwrap();
        assert!(line.contains("no ACL file"), "{line}");
        assert!(line.contains(" crashed (signal: …"), "{line}");
        assert!(line.contains("10.00x mosquitto"), "{line}");
        let pair = Row::measured(
            "x",
            "ms",
            Better::Lower,
            [vec![2.0], vec![1.0]],
            Default::default(),
        );
        let table = render_table(&[pair], 1);
        assert!(!table.contains("gateway/best"), "{table}");
    }
}
