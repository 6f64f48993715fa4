//! The comparison table, and the targets every figure is held to.

use std::time::Duration;

use serde_json::{json, Value};

use crate::{median, mib, Cpu};

/// One row: every run's time, the bytes moved, and CPU time where measured.
struct Row {
    group: String,
    name: String,
    runs: Vec<Duration>,
    bytes: u64,
    cpu: Vec<Cpu>,
}

/// Rows of the comparison table, and the peak memory of each kind of run.
#[derive(Default)]
pub struct Table {
    rows: Vec<Row>,
    memory: Vec<(String, Vec<u64>)>,
}

impl Table {
    pub fn add(&mut self, group: &str, name: &str, d: Duration, bytes: u64, cpu: Option<Cpu>) {
        let row = match self
            .rows
            .iter_mut()
            .position(|r| r.group == group && r.name == name)
        {
            Some(i) => &mut self.rows[i],
            None => {
                self.rows.push(Row {
                    group: group.into(),
                    name: name.into(),
                    runs: Vec::new(),
                    bytes,
                    cpu: Vec::new(),
                });
                self.rows.last_mut().unwrap()
            }
        };
        row.runs.push(d);
        row.bytes = bytes;
        row.cpu.extend(cpu);
    }

    pub fn mem(&mut self, name: &str, bytes: u64) {
        match self.memory.iter_mut().find(|r| r.0 == name) {
            Some(r) => r.1.push(bytes),
            None => self.memory.push((name.into(), vec![bytes])),
        }
    }

    fn median_of(&self, group: &str, name: &str) -> Option<f64> {
        let r = self
            .rows
            .iter()
            .find(|r| r.group == group && r.name == name)?;
        Some(median(r.runs.iter().map(Duration::as_secs_f64).collect()))
    }

    pub fn print(&self, title: &str, rate_mib: u64) -> Value {
        println!("\n{title}\n");
        println!(
            "{:<22} {:<44} {:>8} {:>8} {:>8} {:>7} {:>6} {:>9} {:>9}",
            "group", "", "median s", "min s", "max s", "MiB/s", "ratio", "user s/GiB", "sys s/GiB"
        );
        let mut rows = Vec::new();
        let sorted = |r: &Row| {
            let mut s: Vec<f64> = r.runs.iter().map(Duration::as_secs_f64).collect();
            s.sort_by(|a, b| a.total_cmp(b));
            s
        };
        for r in &self.rows {
            let s = sorted(r);
            let med = s[s.len() / 2];
            // Against the group's first row, wherever the group's rows stand.
            let base = sorted(self.rows.iter().find(|f| f.group == r.group).unwrap());
            let ratio = med / base[base.len() / 2];
            let rate = mib(r.bytes) / med;
            let gib = r.bytes as f64 / (1u64 << 30) as f64;
            let (user, sys) = match r.cpu.is_empty() {
                true => (None, None),
                false => (
                    Some(median(r.cpu.iter().map(|c| c.user).collect()) / gib),
                    Some(median(r.cpu.iter().map(|c| c.sys).collect()) / gib),
                ),
            };
            let show = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3}"));
            println!(
                "{:<22} {:<44} {med:>8.3} {:>8.3} {:>8.3} {rate:>7.0} {ratio:>6.2} {:>9} {:>9}",
                r.group,
                r.name,
                s[0],
                s[s.len() - 1],
                show(user),
                show(sys)
            );
            rows.push(json!({
                "group": r.group, "name": r.name, "runs": s.len(), "median_seconds": med,
                "min_seconds": s[0], "max_seconds": s[s.len() - 1], "bytes": r.bytes,
                "mib_per_second": rate, "ratio_to_first_in_group": ratio,
                "user_cpu_seconds_per_gib": user, "system_cpu_seconds_per_gib": sys,
            }));
        }
        let limited = rows
            .iter()
            .find(|r| r["group"].as_str().unwrap().starts_with("rate limit"));
        let rate_check = limited.map(|r| {
            let measured = r["mib_per_second"].as_f64().unwrap();
            let off = measured / rate_mib as f64 - 1.0;
            println!("\nrate limit: {rate_mib} MiB/s set, {measured:.1} MiB/s measured ({:+.1}%)", off * 100.0);
            json!({"set_mib_per_second": rate_mib, "measured_mib_per_second": measured, "deviation": off})
        });
        let mut memory = Vec::new();
        println!();
        for (name, v) in &self.memory {
            let mut v = v.clone();
            v.sort();
            let median = v[v.len() / 2];
            println!(
                "{name:<42} {:>6.0} MiB (min {:.0}, max {:.0})",
                mib(median),
                mib(v[0]),
                mib(v[v.len() - 1])
            );
            memory.push(json!({"name": name, "median_bytes": median, "min_bytes": v[0], "max_bytes": v[v.len() - 1]}));
        }
        // Encrypted throughput against plain, same run: plain time ÷ encrypted time.
        let mut encryption = serde_json::Map::new();
        println!("\nencrypted throughput ÷ plain throughput (same run):");
        for group in [
            "local",
            "local restore",
            "remote-like store",
            "remote-like restore",
        ] {
            let plain = if group.ends_with("restore") {
                "rocksnap restore"
            } else {
                "rocksnap snapshot"
            };
            let sealed = format!("{plain}, encrypted");
            if let (Some(p), Some(s)) =
                (self.median_of(group, plain), self.median_of(group, &sealed))
            {
                println!("  {group:<22} {:>5.2}", p / s);
                encryption.insert(group.to_string(), json!(p / s));
            }
        }
        json!({
            "title": title, "rows": rows, "memory": memory, "rate_limit": rate_check,
            "encrypted_over_plain": encryption,
        })
    }

    /// The comparison targets: against the synced copy, against the
    /// model's bounds, and the memory bound in every row (peak resident
    /// size over idle, less the process's fixed overhead).
    pub fn check(&self, checks: &mut Checks, bound: u64, overhead: u64) {
        let lb = crate::LOWER_BOUND;
        // (target, group, baseline row, rocksnap row, at least, at most):
        // the figure is baseline ÷ rocksnap where a floor is set, rocksnap
        // ÷ baseline where a ceiling is.
        let ratios = [
            (
                "local snapshot: cp -r + sync ÷ rocksnap",
                "local",
                "cp -r + sync",
                "rocksnap snapshot",
                Some(0.95),
                None,
            ),
            (
                "local restore: cp -r + sync ÷ rocksnap",
                "local restore",
                "cp -r + sync",
                "rocksnap restore",
                Some(0.8),
                None,
            ),
            (
                "remote-like snapshot: rocksnap ÷ lower bound",
                "remote-like store",
                lb,
                "rocksnap snapshot",
                None,
                Some(1.1),
            ),
            (
                "remote-like restore: rocksnap ÷ lower bound",
                "remote-like restore",
                lb,
                "rocksnap restore",
                None,
                Some(1.2),
            ),
        ];
        for (what, group, base, ours, floor, ceiling) in ratios {
            match (self.median_of(group, base), self.median_of(group, ours)) {
                (Some(base), Some(ours)) => {
                    if let Some(floor) = floor {
                        checks.at_least(what, base / ours, floor);
                    }
                    if let Some(ceiling) = ceiling {
                        checks.at_most(what, ours / base, ceiling);
                    }
                }
                _ => checks.missing(what),
            }
        }
        for (name, v) in &self.memory {
            let max = *v.iter().max().unwrap();
            checks.memory(&format!("{name} (max of runs)"), max, overhead, bound);
        }
    }
}

/// Every target, what was measured, and whether it was met.
#[derive(Default)]
pub struct Checks {
    rows: Vec<(String, f64, String, bool)>,
}

impl Checks {
    pub fn at_most(&mut self, what: &str, measured: f64, target: f64) {
        self.rows.push((
            what.into(),
            measured,
            format!("≤ {target:.2}"),
            measured <= target,
        ));
    }

    pub fn at_least(&mut self, what: &str, measured: f64, target: f64) {
        self.rows.push((
            what.into(),
            measured,
            format!("≥ {target:.2}"),
            measured >= target,
        ));
    }

    /// A peak resident size over idle, less the process's fixed overhead,
    /// held to the bound on what its parts may hold, give or take what the
    /// kernel's count of resident pages can be off by
    /// ([`crate::rss_resolution`]; the parts' own count is held to the
    /// bound exactly, see [`crate::PartPeaks`]).
    pub fn memory(&mut self, what: &str, peak_over_idle: u64, overhead: u64, bound: u64) {
        self.at_most(
            &format!("{what}, less fixed overhead (MiB)"),
            mib(peak_over_idle.saturating_sub(overhead)),
            mib(bound + crate::rss_resolution()),
        );
    }

    /// A target whose figure the run did not produce: never met.
    pub fn missing(&mut self, what: &str) {
        self.rows
            .push((what.into(), f64::NAN, "a figure".into(), false));
    }

    pub fn within(&mut self, what: &str, measured: f64, low: f64, high: f64) {
        self.rows.push((
            what.into(),
            measured,
            format!("{low:.2}..{high:.2}"),
            (low..=high).contains(&measured),
        ));
    }

    pub fn print(&self) -> Value {
        println!("\ntargets\n");
        let mut out = Vec::new();
        for (what, measured, target, met) in &self.rows {
            let verdict = if *met { "met" } else { "NOT MET" };
            println!("{what:<62} {measured:>9.3} {target:>12}  {verdict}");
            out.push(json!({"what": what, "measured": measured, "target": target, "met": met}));
        }
        Value::Array(out)
    }
}
