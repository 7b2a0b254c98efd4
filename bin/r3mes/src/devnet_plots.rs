//! The devnet report's plots, as SVG files drawn with `plotters`: the
//! miners' mean loss per round, transactions per second per round, and
//! bytes on chain against bytes in IPFS per round.

use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::prelude::*;

type Series = Vec<(u64, Option<f64>, f64, u64, u64)>;

/// Writes the plots into `dir`; returns (title, file name) of each.
pub fn write(dir: &Path, series: Series) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    if series.is_empty() {
        return Ok(out);
    }
    let loss: Vec<(f64, f64)> = series
        .iter()
        .filter_map(|(r, l, ..)| l.map(|l| (*r as f64, l)))
        .collect();
    let tps: Vec<(f64, f64)> = series.iter().map(|(r, _, t, ..)| (*r as f64, *t)).collect();
    let chain: Vec<(f64, f64)> = series
        .iter()
        .map(|(r, _, _, c, _)| (*r as f64, *c as f64))
        .collect();
    let ipfs: Vec<(f64, f64)> = series
        .iter()
        .map(|(r, _, _, _, i)| (*r as f64, *i as f64))
        .collect();
    for (title, file, lines) in [
        (
            "Mean miner loss per round (nats)",
            "loss.svg",
            vec![("loss", loss)],
        ),
        (
            "Transactions per second per round",
            "tx_per_second.svg",
            vec![("tx/s", tps)],
        ),
        (
            "Bytes on chain vs in IPFS per round",
            "bytes.svg",
            vec![("on chain", chain), ("in IPFS", ipfs)],
        ),
    ] {
        if lines.iter().all(|(_, points)| points.is_empty()) {
            continue;
        }
        chart(&dir.join(file), title, &lines).map_err(|e| anyhow!("drawing {file}: {e}"))?;
        out.push((title.to_string(), file.to_string()));
    }
    Ok(out)
}

fn chart(
    path: &Path,
    title: &str,
    lines: &[(&str, Vec<(f64, f64)>)],
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let points = lines.iter().flat_map(|(_, p)| p.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for (x, y) in points {
        x0 = x0.min(*x);
        x1 = x1.max(*x);
        y0 = y0.min(*y);
        y1 = y1.max(*y);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    let pad = ((y1 - y0) * 0.1).max(1e-6);
    let (y0, y1) = ((y0 - pad).min(0.0_f64.max(y0 - pad)), y1 + pad);
    let root = SVGBackend::new(path, (720, 400)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(x0..x1, y0..y1)?;
    chart.configure_mesh().x_desc("round").x_labels(10).draw()?;
    let colors = [BLUE, RED, GREEN];
    for (i, (name, points)) in lines.iter().enumerate() {
        let color = colors[i % colors.len()];
        chart
            .draw_series(LineSeries::new(points.iter().copied(), &color))?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
        chart.draw_series(points.iter().map(|p| Circle::new(*p, 3, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
