//! Turns the measurements of `benches/compare` into `benches/RESULTS.md` and two charts
//! (`benches/latency.svg`: latency distribution per client; `benches/in_flight.svg`:
//! throughput against runs in flight).
//!
//! `BENCH_RESULTS=path/to/results.jsonl cargo bench --bench report` (the script sets it).
//! Every figure is computed per round first; tables show the median over rounds, and ratios
//! compare clients measured in the same rounds on the same server.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use plotters::prelude::*;
use serde_json::Value;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Ok(results) = std::env::var("BENCH_RESULTS") else {
        println!("report: set BENCH_RESULTS to a results.jsonl written by benches/compare (nothing to do)");
        return Ok(());
    };
    let out_dir = PathBuf::from(std::env::var("BENCH_REPORT_DIR").unwrap_or_else(|_| "benches".into()));
    let records: Vec<Value> = std::fs::read_to_string(&results)?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let md = markdown(&records);
    std::fs::write(out_dir.join("RESULTS.md"), &md)?;
    latency_chart(&records, &out_dir.join("latency.svg"))?;
    in_flight_chart(&records, &out_dir.join("in_flight.svg"))?;
    println!("{md}");
    println!("wrote {0}/RESULTS.md, {0}/latency.svg, {0}/in_flight.svg", out_dir.display());
    Ok(())
}

fn of_kind<'a>(records: &'a [Value], kind: &str) -> impl Iterator<Item = &'a Value> {
    records.iter().filter(move |r| r["kind"] == kind)
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().map(|a| a.iter().filter_map(Value::as_f64).collect()).unwrap_or_default()
}

fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn median(values: &[f64]) -> f64 {
    percentile(values, 0.5)
}

/// Client names in the order they first appear (the script's order).
fn clients(records: &[Value], kind: &str) -> Vec<String> {
    let mut seen = Vec::new();
    for r in of_kind(records, kind) {
        if let Some(c) = r["client"].as_str()
            && !seen.iter().any(|s| s == c)
        {
            seen.push(c.to_string());
        }
    }
    seen
}

/// Per-round figures of one client's latency records.
struct LatencyRounds {
    p50: Vec<f64>,
    p90: Vec<f64>,
    p99: Vec<f64>,
    cpu: Vec<f64>,
    rss_kib: Vec<f64>,
    server_p50: Vec<f64>,
    server_p99: Vec<f64>,
    runs: usize,
    errors: u64,
    rounds: BTreeMap<u64, f64>,
}

fn latency_rounds(records: &[Value], client: &str) -> LatencyRounds {
    let mut out = LatencyRounds {
        p50: vec![],
        p90: vec![],
        p99: vec![],
        cpu: vec![],
        rss_kib: vec![],
        server_p50: vec![],
        server_p99: vec![],
        runs: 0,
        errors: 0,
        rounds: BTreeMap::new(),
    };
    for r in of_kind(records, "latency").filter(|r| r["client"] == client) {
        let lat = floats(&r["latencies_ms"]);
        out.runs += lat.len();
        out.errors += r["errors"].as_u64().unwrap_or(0);
        if lat.is_empty() {
            continue;
        }
        out.p50.push(percentile(&lat, 0.5));
        out.p90.push(percentile(&lat, 0.9));
        out.p99.push(percentile(&lat, 0.99));
        if let Some(round) = r["round"].as_u64() {
            out.rounds.insert(round, percentile(&lat, 0.5));
        }
        if let Some(c) = r["cpu_ms_per_run"].as_f64() {
            out.cpu.push(c);
        }
        if let Some(k) = r["peak_rss_kib"].as_f64() {
            out.rss_kib.push(k);
        }
        let server = floats(&r["server_ms"]);
        if !server.is_empty() {
            out.server_p50.push(percentile(&server, 0.5));
            out.server_p99.push(percentile(&server, 0.99));
        }
    }
    out
}

fn fmt(v: f64, digits: usize) -> String {
    if v.is_nan() { "—".into() } else { format!("{v:.digits$}") }
}

fn markdown(records: &[Value]) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# SDK benchmark: contree-rs against the official Python clients\n");
    if let Some(meta) = of_kind(records, "meta").next() {
        let _ = writeln!(
            md,
            "Measured {} on {} ({}), commit `{}`, one contree-local ({}) on loopback. Command: `{}`.\n",
            meta["date"].as_str().unwrap_or("?"),
            meta["machine"].as_str().unwrap_or("?"),
            meta["kernel"].as_str().unwrap_or("?"),
            meta["commit"].as_str().unwrap_or("?"),
            meta["server"].as_str().unwrap_or("?"),
            meta["command"].as_str().unwrap_or("benches/compare"),
        );
    }
    if let Some(env) = of_kind(records, "env").next() {
        let _ = writeln!(
            md,
            "Python {}: contree-client {}, contree-sdk {} (httpx {}).\n",
            env["python"].as_str().unwrap_or("?"),
            env["contree-client"].as_str().unwrap_or("?"),
            env["contree-sdk"].as_str().unwrap_or("?"),
            env["httpx"].as_str().unwrap_or("?"),
        );
    }
    let _ = writeln!(
        md,
        "Rounds are interleaved (every client once per round, in rotating order); each figure is \
         computed per round, and the tables give the median over rounds. The machine is shared and \
         noisy: compare rows, which were measured side by side, rather than absolute values.\n"
    );

    // Latency.
    let names = clients(records, "latency");
    if !names.is_empty() {
        let _ = writeln!(md, "## `true` runs, one after another\n");
        let _ = writeln!(
            md,
            "| client | rounds × n | p50 ms | p90 ms | p99 ms | client CPU per run | client peak RSS | errors | p50 vs contree-client | CPU vs contree-sdk |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|");
        let reference = |prefix: &str| names.iter().find(|n| n.starts_with(prefix)).map(|n| latency_rounds(records, n));
        let py_client = reference("contree-client");
        let py_sdk = reference("contree-sdk");
        let mut server_p50 = Vec::new();
        let mut server_p99 = Vec::new();
        for name in &names {
            let l = latency_rounds(records, name);
            server_p50.extend(&l.server_p50);
            server_p99.extend(&l.server_p99);
            // Ratios per round, then their median: both clients saw the same machine state.
            let p50_ratio = py_client.as_ref().map(|p| {
                let ratios: Vec<f64> =
                    l.rounds.iter().filter_map(|(round, v)| p.rounds.get(round).map(|pv| v / pv)).collect();
                median(&ratios)
            });
            let cpu_ratio = py_sdk.as_ref().map(|p| median(&l.cpu) / median(&p.cpu));
            let _ = writeln!(
                md,
                "| {name} | {} × {} | {} | {} | {} | {} ms | {} MiB | {} | {} | {} |",
                l.p50.len(),
                if l.p50.is_empty() { 0 } else { l.runs / l.p50.len() },
                fmt(median(&l.p50), 2),
                fmt(median(&l.p90), 2),
                fmt(median(&l.p99), 2),
                fmt(median(&l.cpu), 3),
                fmt(median(&l.rss_kib) / 1024.0, 1),
                l.errors,
                p50_ratio.map_or("—".into(), |r| format!("{}×", fmt(r, 2))),
                cpu_ratio.map_or("—".into(), |r| format!("{}×", fmt(r, 3))),
            );
        }
        let _ = writeln!(
            md,
            "| the server's own record of the run | | {} | | {} | | | | | |\n",
            fmt(median(&server_p50), 2),
            fmt(median(&server_p99), 2)
        );
        let _ = writeln!(
            md,
            "The server's record is `duration` of `GET /v1/operations/{{id}}` for the runs of the Rust \
             clients, read after each timed loop. Client CPU is user + system time of the client \
             process over the timed loop divided by the runs; peak RSS is the process's high-water \
             mark (for Python: the interpreter and the one client it imported).\n"
        );
        let _ =
            writeln!(md, "Latency over the server's own duration (p50 minus the server's p50, median of rounds):\n");
        let server = median(&server_p50);
        for name in names.iter().filter(|n| n.starts_with("contree-rs")) {
            let l = latency_rounds(records, name);
            let _ = writeln!(md, "- {name}: +{} ms", fmt(median(&l.p50) - server, 2));
        }
        let _ = writeln!(md, "\n![latency distributions](latency.svg)\n");
    }

    // In flight.
    let flights: Vec<&Value> = of_kind(records, "in_flight").collect();
    if !flights.is_empty() {
        let _ = writeln!(md, "## Runs in flight from one client\n");
        let _ = writeln!(
            md,
            "| client | in flight | runs | runs/s | errors | p50 ms | p99 ms | client peak RSS | max sockets | nofile |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|");
        for r in &flights {
            let lat = floats(&r["latencies_ms"]);
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {}{} | {} | {} | {} MiB | {} | {} |",
                r["client"].as_str().unwrap_or("?"),
                r["in_flight"],
                r["total"],
                fmt(r["runs_per_s"].as_f64().unwrap_or(f64::NAN), 1),
                r["errors"],
                r["first_error"]
                    .as_str()
                    .map(|e| format!(" ({})", e.chars().take(80).collect::<String>()))
                    .unwrap_or_default(),
                fmt(percentile(&lat, 0.5), 1),
                fmt(percentile(&lat, 0.99), 1),
                fmt(r["peak_rss_kib"].as_f64().unwrap_or(f64::NAN) / 1024.0, 1),
                r["max_sockets"],
                r["nofile_limit"],
            );
        }
        let _ = writeln!(md, "\n![throughput against runs in flight](in_flight.svg)\n");
    }

    // Uploads.
    let uploads: Vec<&Value> = of_kind(records, "upload").collect();
    if !uploads.is_empty() {
        let _ = writeln!(md, "## Uploading a 1 GiB file (page cache → contree-local)\n");
        let _ = writeln!(
            md,
            "| client | phase | rounds | seconds (median) | MiB/s | vs curl, same rounds | client peak RSS |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|---|");
        let mut keys: Vec<(String, String)> = Vec::new();
        for u in &uploads {
            let key = (u["client"].as_str().unwrap_or("?").to_string(), u["phase"].as_str().unwrap_or("?").to_string());
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        let curl: BTreeMap<u64, f64> = uploads
            .iter()
            .filter(|u| u["client"] == "curl")
            .filter_map(|u| Some((u["round"].as_u64()?, u["seconds"].as_f64()?)))
            .collect();
        for (client, phase) in keys {
            let rows: Vec<&&Value> = uploads.iter().filter(|u| u["client"] == client && u["phase"] == phase).collect();
            let secs: Vec<f64> = rows.iter().filter_map(|u| u["seconds"].as_f64()).collect();
            let timed_out = rows.iter().filter(|u| u["seconds"].is_null()).count();
            let bytes = rows.iter().filter_map(|u| u["bytes"].as_f64()).next().unwrap_or(f64::NAN);
            let vs_curl: Vec<f64> =
                rows.iter().filter_map(|u| Some(curl.get(&u["round"].as_u64()?)? / u["seconds"].as_f64()?)).collect();
            let rss: Vec<f64> = rows.iter().filter_map(|u| u["peak_rss_kib"].as_f64()).collect();
            let seconds = if secs.is_empty() {
                let after = rows.iter().filter_map(|u| u["timed_out_after"].as_f64()).next().unwrap_or(f64::NAN);
                format!("> {} (stopped)", fmt(after, 0))
            } else {
                fmt(median(&secs), 2)
            };
            let _ = writeln!(
                md,
                "| {client} | {phase} | {}{} | {seconds} | {} | {} | {} |",
                rows.len(),
                if timed_out > 0 { format!(" ({timed_out} stopped)") } else { String::new() },
                fmt(bytes / (1 << 20) as f64 / median(&secs), 0),
                if client == "curl" || vs_curl.is_empty() {
                    "—".to_string()
                } else {
                    format!("{}% of curl's throughput", fmt(median(&vs_curl) * 100.0, 0))
                },
                if rss.is_empty() { "—".to_string() } else { format!("{} MiB", fmt(median(&rss) / 1024.0, 1)) },
            );
        }
        let _ = writeln!(md);
    }
    md
}

const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// Latency CDF per client (every run of every round), log-scaled time axis.
fn latency_chart(records: &[Value], path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let names = clients(records, "latency");
    let series: Vec<(String, Vec<f64>)> = names
        .iter()
        .map(|n| {
            let mut all: Vec<f64> = of_kind(records, "latency")
                .filter(|r| r["client"] == n.as_str())
                .flat_map(|r| floats(&r["latencies_ms"]))
                .collect();
            all.sort_by(f64::total_cmp);
            (n.clone(), all)
        })
        .filter(|(_, v)| !v.is_empty())
        .collect();
    let (lo, hi) = series.iter().fold((f64::MAX, f64::MIN), |(lo, hi), (_, v)| (lo.min(v[0]), hi.max(v[v.len() - 1])));
    let root = SVGBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    if series.is_empty() {
        return Ok(root.present()?);
    }
    let mut chart = ChartBuilder::on(&root)
        .caption("`true` run latency, sequential: share of runs done by time t", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d((lo * 0.9..hi * 1.1).log_scale(), 0.0..1.0)?;
    chart.configure_mesh().x_desc("latency, ms (log scale)").y_desc("fraction of runs").draw()?;
    for (i, (name, values)) in series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let n = values.len() as f64;
        chart
            .draw_series(LineSeries::new(
                values.iter().enumerate().map(|(k, v)| (*v, (k + 1) as f64 / n)),
                color.stroke_width(2),
            ))?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.9))
        .position(SeriesLabelPosition::LowerRight)
        .draw()?;
    root.present()?;
    Ok(())
}

/// Runs per second against runs in flight, one line per client.
fn in_flight_chart(records: &[Value], path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let mut by_client: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for r in of_kind(records, "in_flight") {
        if let (Some(c), Some(k), Some(t)) = (r["client"].as_str(), r["in_flight"].as_f64(), r["runs_per_s"].as_f64()) {
            by_client.entry(c.to_string()).or_default().push((k, t));
        }
    }
    let root = SVGBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    if by_client.is_empty() {
        return Ok(root.present()?);
    }
    let max_k = by_client.values().flatten().map(|p| p.0).fold(1.0, f64::max);
    let max_t = by_client.values().flatten().map(|p| p.1).fold(1.0, f64::max);
    let mut chart = ChartBuilder::on(&root)
        .caption("Throughput against runs in flight (one client, `true` runs)", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d((0.8..max_k * 1.25).log_scale(), 0.0..max_t * 1.15)?;
    chart.configure_mesh().x_desc("runs in flight (log scale)").y_desc("runs per second").draw()?;
    for (i, (name, mut points)) in by_client.into_iter().enumerate() {
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        let color = PALETTE[i % PALETTE.len()];
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
        chart.draw_series(points.into_iter().map(|p| Circle::new(p, 4, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.9))
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;
    root.present()?;
    Ok(())
}
