//! Results: one row per scenario, printed as an aligned table or as JSON lines.

use super::PAYLOAD_BYTES;
use super::stats::{Latency, Measurement};
use serde_json::{Map, Value, json};
use std::io::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// An aligned table on stdout once every scenario has run.
    Table,
    /// One JSON object per row on stdout, as soon as the row is known.
    Json,
}

/// What a scenario must reach to pass.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    /// At least this fraction of the baseline's events per second.
    RatioMin(f64),
    /// At least this fraction of the ceiling's events per second.
    RatioToCeilingMin(f64),
    /// At least this many events per second.
    EventsPerSecMin(f64),
    /// A p99 latency of at most this many microseconds.
    P99UsMax(f64),
    /// At most this many seconds.
    SecondsMax(f64),
    /// At most this many MiB of resident memory.
    RssMibMax(f64),
}

impl Target {
    /// The row's field the target is about, by its JSON name; its threshold is `target_` and this.
    fn quantity(self) -> &'static str {
        match self {
            Target::RatioMin(_) => "ratio",
            Target::RatioToCeilingMin(_) => "ratio_to_ceiling",
            Target::EventsPerSecMin(_) => "events_per_sec",
            Target::P99UsMax(_) => "p99_us",
            Target::SecondsMax(_) => "seconds",
            Target::RssMibMax(_) => "rss_mib",
        }
    }

    fn threshold(self) -> f64 {
        match self {
            Target::RatioMin(value)
            | Target::RatioToCeilingMin(value)
            | Target::EventsPerSecMin(value)
            | Target::P99UsMax(value)
            | Target::SecondsMax(value)
            | Target::RssMibMax(value) => value,
        }
    }

    /// For the table: what the target demands, in the row's own units.
    fn cell(self) -> String {
        match self {
            Target::RatioMin(min) => format!("≥ {min:.2}"),
            Target::RatioToCeilingMin(min) => format!("≥ {min:.2} of ceiling"),
            Target::EventsPerSecMin(min) => format!("≥ {} M/s", min / 1e6),
            Target::P99UsMax(max) => format!("p99 ≤ {} µs", thousands(max)),
            Target::SecondsMax(max) => format!("≤ {max} s"),
            Target::RssMibMax(max) => format!("RSS ≤ {} MiB", thousands(max)),
        }
    }
}

/// Every quantity a target can be about, so that each row's JSON has all the `target_` fields.
const TARGET_QUANTITIES: [&str; 6] = ["ratio", "ratio_to_ceiling", "events_per_sec", "p99_us", "seconds", "rss_mib"];

/// The measurement a row is compared with, taken in the same run, round by round.
#[derive(Debug, Clone, PartialEq)]
pub struct Baseline {
    pub scenario: &'static str,
    pub events_per_sec: f64,
    /// Strata's rate over the baseline's in each round: their spread shows how noisy the disk was.
    pub round_ratios: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub scenario: &'static str,
    /// Events measured, over all rounds.
    pub events: u64,
    pub events_per_sec: f64,
    pub mb_per_sec: Option<f64>,
    pub latency: Option<Latency>,
    pub seconds: Option<f64>,
    /// The whole process's resident memory at the end of the scenario, in MiB.
    pub rss_mib: Option<f64>,
    pub baseline: Option<Baseline>,
    /// The physical limit of the layer above the disk (`strata bench server`: HTTP without storage).
    pub ceiling: Option<Baseline>,
    /// All must be met for the row to pass.
    pub targets: Vec<Target>,
    /// Further quantities of the scenario, by their JSON name (in the JSON only).
    pub details: Vec<(&'static str, f64)>,
}

impl Row {
    /// A row for `measurement`, counting [`PAYLOAD_BYTES`] of payload per event for MB/s.
    pub fn measured(scenario: &'static str, measurement: &mut Measurement) -> Row {
        let events_per_sec = measurement.events_per_sec();
        Row {
            scenario,
            events: measurement.events,
            events_per_sec,
            mb_per_sec: Some(events_per_sec * PAYLOAD_BYTES as f64 / 1e6),
            latency: measurement.latency(),
            seconds: None,
            rss_mib: None,
            baseline: None,
            ceiling: None,
            targets: Vec::new(),
            details: Vec::new(),
        }
    }

    /// A row for `events` handled in one go that took `seconds` (an open of a store of `events`).
    pub fn timed(scenario: &'static str, events: u64, seconds: f64) -> Row {
        Row {
            scenario,
            events,
            events_per_sec: events as f64 / seconds,
            mb_per_sec: None,
            latency: None,
            seconds: Some(seconds),
            rss_mib: None,
            baseline: None,
            ceiling: None,
            targets: Vec::new(),
            details: Vec::new(),
        }
    }

    pub fn against(mut self, baseline: Baseline) -> Row {
        self.baseline = Some(baseline);
        self
    }

    /// Adds a further quantity, shown in the JSON as `name`.
    pub fn detail(mut self, name: &'static str, value: f64) -> Row {
        self.details.push((name, value));
        self
    }

    /// Adds `target` to those the row must meet.
    pub fn target(mut self, target: Target) -> Row {
        self.targets.push(target);
        self
    }

    fn ratio(&self) -> Option<f64> {
        self.baseline.as_ref().map(|baseline| self.events_per_sec / baseline.events_per_sec)
    }

    fn ratio_to_ceiling(&self) -> Option<f64> {
        self.ceiling.as_ref().map(|ceiling| self.events_per_sec / ceiling.events_per_sec)
    }

    /// Whether `target` is met; `None` when the row lacks the quantity it is about.
    fn meets(&self, target: Target) -> Option<bool> {
        match target {
            Target::RatioMin(min) => self.ratio().map(|ratio| ratio >= min),
            Target::RatioToCeilingMin(min) => self.ratio_to_ceiling().map(|ratio| ratio >= min),
            Target::EventsPerSecMin(min) => Some(self.events_per_sec >= min),
            Target::P99UsMax(max) => self.latency.map(|latency| latency.p99_us <= max),
            Target::SecondsMax(max) => self.seconds.map(|seconds| seconds <= max),
            Target::RssMibMax(max) => self.rss_mib.map(|mib| mib <= max),
        }
    }

    /// Whether every target is met: `Some(false)` as soon as one is missed, `None` without targets or
    /// when one cannot be judged.
    fn pass(&self) -> Option<bool> {
        let each: Vec<Option<bool>> = self.targets.iter().map(|&target| self.meets(target)).collect();
        if each.contains(&Some(false)) {
            Some(false)
        } else if each.is_empty() || each.contains(&None) {
            None
        } else {
            Some(true)
        }
    }

    fn to_json(&self) -> Value {
        let latency = |pick: fn(&Latency) -> f64| self.latency.as_ref().map(|latency| round(pick(latency), 1));
        // Per target, by quantity, whether it was met: with two targets `pass` alone hides which one missed.
        let pass_each = (!self.targets.is_empty()).then(|| {
            self.targets
                .iter()
                .map(|&target| (target.quantity().to_owned(), json!(self.meets(target))))
                .collect::<Map<_, _>>()
        });
        let mut object = json!({
            "scenario": self.scenario,
            "events_per_sec": round(self.events_per_sec, 0),
            "p50_us": latency(|l| l.p50_us),
            "p99_us": latency(|l| l.p99_us),
            "p999_us": latency(|l| l.p999_us),
            "mb_per_sec": self.mb_per_sec.map(|mb| round(mb, 2)),
            "baseline": self.baseline.as_ref().map(|b| b.scenario),
            "baseline_events_per_sec": self.baseline.as_ref().map(|b| round(b.events_per_sec, 0)),
            "ratio": self.ratio().map(|ratio| round(ratio, 3)),
            "round_ratios": self.baseline.as_ref().map(|b| b.round_ratios.iter().map(|r| round(*r, 3)).collect::<Vec<_>>()),
            "pass": self.pass(),
            "pass_each": pass_each,
            "events": self.events,
        });
        for quantity in TARGET_QUANTITIES {
            let threshold = self.targets.iter().find(|target| target.quantity() == quantity).map(|t| t.threshold());
            object[format!("target_{quantity}")] = json!(threshold);
        }
        if let Some(ceiling) = &self.ceiling {
            object["ceiling"] = json!(ceiling.scenario);
            object["ceiling_events_per_sec"] = json!(round(ceiling.events_per_sec, 0));
            object["ratio_to_ceiling"] = json!(self.ratio_to_ceiling().map(|ratio| round(ratio, 3)));
            object["round_ratios_to_ceiling"] =
                json!(ceiling.round_ratios.iter().map(|r| round(*r, 3)).collect::<Vec<_>>());
        }
        if let Some(seconds) = self.seconds {
            object["seconds"] = json!(round(seconds, 4));
        }
        if let Some(mib) = self.rss_mib {
            object["rss_mib"] = json!(round(mib, 1));
        }
        for (name, value) in &self.details {
            object[*name] = json!(round(*value, 3));
        }
        object
    }

    fn cells(&self) -> Vec<String> {
        let dash = || "-".to_owned();
        let latency = |pick: fn(&Latency) -> f64| self.latency.as_ref().map_or_else(dash, |l| micros(pick(l)));
        vec![
            self.scenario.to_owned(),
            thousands(self.events_per_sec),
            self.mb_per_sec.map_or_else(dash, |mb| format!("{mb:.1}")),
            latency(|l| l.p50_us),
            latency(|l| l.p99_us),
            latency(|l| l.p999_us),
            self.seconds.map_or_else(dash, |seconds| format!("{seconds:.3}")),
            self.rss_mib.map_or_else(dash, thousands),
            self.baseline.as_ref().map_or_else(dash, |b| thousands(b.events_per_sec)),
            match (self.ratio(), self.ratio_to_ceiling()) {
                (Some(ratio), Some(to_ceiling)) => format!("{ratio:.2} ({to_ceiling:.2} of ceiling)"),
                (None, Some(to_ceiling)) => format!("{to_ceiling:.2} of ceiling"),
                (Some(ratio), None) => format!("{ratio:.2}"),
                (None, None) => dash(),
            },
            // One entry per target, in the same order in both columns: "≤ 1 s / RSS ≤ 256 MiB", "PASS / MISS".
            if self.targets.is_empty() {
                dash()
            } else {
                self.targets.iter().map(|target| target.cell()).collect::<Vec<_>>().join(" / ")
            },
            if self.targets.is_empty() {
                dash()
            } else {
                let result = |target| match self.meets(target) {
                    Some(true) => "PASS",
                    Some(false) => "MISS",
                    None => "-",
                };
                self.targets.iter().map(|&target| result(target)).collect::<Vec<_>>().join(" / ")
            },
        ]
    }
}

const HEADER: [&str; 12] = [
    "scenario",
    "events/s",
    "MB/s",
    "p50 µs",
    "p99 µs",
    "p99.9 µs",
    "seconds",
    "RSS MiB",
    "baseline ev/s",
    "ratio",
    "target",
    "result",
];

#[derive(Debug)]
pub struct Report {
    format: Format,
    rows: Vec<Row>,
}

impl Report {
    pub fn new(format: Format) -> Report {
        Report { format, rows: Vec::new() }
    }

    /// Whether a row of `scenario` was emitted already.
    pub fn has(&self, scenario: &str) -> bool {
        self.rows.iter().any(|row| row.scenario == scenario)
    }

    /// Records a row; in JSON it is printed at once, so a later failure does not lose it.
    pub fn emit(&mut self, row: Row) {
        if self.format == Format::Json {
            let mut stdout = std::io::stdout().lock();
            let _ = writeln!(stdout, "{}", row.to_json());
            let _ = stdout.flush();
        }
        self.rows.push(row);
    }

    /// Prints the table, when that is the format.
    pub fn finish(self) {
        if self.format == Format::Table {
            print!("{}", table(&self.rows));
        }
    }
}

fn table(rows: &[Row]) -> String {
    let cells: Vec<Vec<String>> =
        std::iter::once(HEADER.iter().map(|h| h.to_string()).collect()).chain(rows.iter().map(Row::cells)).collect();
    let widths: Vec<usize> = (0..HEADER.len())
        .map(|column| cells.iter().map(|row| row[column].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &cells {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .enumerate()
            // The scenario name reads best left-aligned, numbers right-aligned.
            .map(
                |(column, (cell, &width))| {
                    if column == 0 { format!("{cell:<width$}") } else { format!("{cell:>width$}") }
                },
            )
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out.push_str(&format!(
        "\nratio: Strata's events/s over the baseline's, measured in alternating rounds of the same run.\n\
         latency: per call — an append, from the call to the durable acknowledgement; a stream read, of the whole stream.\n\
         seconds: one pass over the store (filtered reads: the mean of the rounds) or one open (the median).\n\
         RSS MiB: the whole process's resident memory (VmRSS) with the store open, after reading some of its streams.\n\
         MB/s: {PAYLOAD_BYTES} B of payload per event. A baseline's own row is shown once, with the rate of its first pairing.\n"
    ));
    out
}

fn round(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

/// Microseconds to one decimal, with thousands separators in the integer part.
pub fn micros(us: f64) -> String {
    let tenths = (us * 10.0).round() as u64;
    format!("{}.{}", thousands((tenths / 10) as f64), tenths % 10)
}

/// A whole number with thousands separators: 1234567.8 → "1,234,568".
pub fn thousands(value: f64) -> String {
    let digits = (value.round() as u64).to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_grouped_by_thousands() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(1234567.8), "1,234,568");
        assert_eq!(micros(1234.56), "1,234.6");
    }

    #[test]
    fn json_rows_have_the_required_keys_with_nulls_where_they_do_not_apply() {
        let row = Row::timed("open_1m", 10, 0.5);
        let json = row.to_json();
        for key in ["scenario", "events_per_sec", "p50_us", "p99_us", "baseline_events_per_sec", "ratio"] {
            assert!(json.get(key).is_some(), "{key} is missing");
        }
        for key in ["ratio", "target_ratio", "target_seconds", "target_rss_mib", "pass", "pass_each"] {
            assert_eq!(json[key], Value::Null, "{key}");
        }
        assert_eq!(json["events_per_sec"], json!(20.0));
        assert_eq!(json["seconds"], json!(0.5));
    }

    #[test]
    fn a_ratio_target_passes_at_the_threshold() {
        let baseline = Baseline { scenario: "raw", events_per_sec: 100.0, round_ratios: vec![0.8] };
        let row = Row::measured(
            "strata",
            &mut Measurement { events: 80, elapsed: std::time::Duration::from_secs(1), latencies_ns: vec![1] },
        )
        .against(baseline)
        .target(Target::RatioMin(0.8));
        assert_eq!(row.pass(), Some(true));
        assert!(table(&[row]).contains("PASS"));
    }

    #[test]
    fn a_latency_target_passes_at_the_threshold_and_needs_samples() {
        let row = |latencies_ns| {
            Row::measured(
                "read",
                &mut Measurement { events: 1, elapsed: std::time::Duration::from_secs(1), latencies_ns },
            )
            .target(Target::P99UsMax(2_000.0))
        };
        assert_eq!(row(vec![2_000_000]).pass(), Some(true));
        assert_eq!(row(vec![2_000_001]).pass(), Some(false));
        assert_eq!(row(vec![]).pass(), None);
        assert_eq!(row(vec![1]).to_json()["target_p99_us"], json!(2_000.0));
        assert!(table(&[row(vec![2_000_001])]).contains("p99 ≤ 2,000 µs"));
    }

    #[test]
    fn a_row_with_two_targets_passes_only_if_both_are_met_and_says_which_missed() {
        let row = |seconds, rss_mib| {
            Row { rss_mib: Some(rss_mib), ..Row::timed("open_10m", 10, seconds) }
                .target(Target::SecondsMax(1.0))
                .target(Target::RssMibMax(256.0))
        };
        assert_eq!(row(1.0, 256.0).pass(), Some(true));
        let missed = row(0.9, 800.0);
        assert_eq!(missed.pass(), Some(false));
        let json = missed.to_json();
        assert_eq!(json["pass_each"], json!({"seconds": true, "rss_mib": false}));
        assert_eq!((json["target_seconds"].clone(), json["target_rss_mib"].clone()), (json!(1.0), json!(256.0)));
        assert_eq!(json["rss_mib"], json!(800.0));
        let table = table(&[missed]);
        assert!(table.contains("≤ 1 s / RSS ≤ 256 MiB") && table.contains("PASS / MISS"), "{table}");
        // Without the memory (not Linux), the row cannot pass, but a missed time still fails it.
        let unknown = |seconds| Row { rss_mib: None, ..row(seconds, 0.0) };
        assert_eq!(unknown(0.5).pass(), None);
        assert_eq!(unknown(2.0).pass(), Some(false));
    }
}
