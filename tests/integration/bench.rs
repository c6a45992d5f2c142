//! `mpdr bench vectors` on generated tables: the protocol end to end and bad input.

use mpdr::bench::vectors::{self, Budget};
use mpdr::data::npz::{write_table, Table};
use mpdr::model::ModelKind;

use super::util::mpdr;

/// Normals on a 2-D plane inside 6-D; anomalies off it. Deterministic.
fn table(n: usize) -> Table {
    let mut s = 12345u64;
    let mut u = move || {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((s >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    };
    let mut x = Vec::new();
    let mut y = Vec::new();
    for i in 0..n {
        let anomaly = i % 10 == 0;
        let (a, b) = (u(), u());
        let mut row = [a, b, a + b, a - b, 0.5 * a, -b];
        if anomaly {
            for v in row.iter_mut() {
                *v += 1.5 * u();
            }
        }
        x.extend(row.iter().map(|v| *v as f32));
        y.push(anomaly);
    }
    Table { n, d: 6, x, y }
}

#[test]
fn the_vector_protocol_scores_an_easy_table_and_writes_its_results() {
    mpdr::device::init_threads();
    let d = tempfile::tempdir().unwrap();
    let npz = d.path().join("easy.npz");
    write_table(&npz, &table(300)).unwrap();
    let out = d.path().join("out");
    let budget = Budget { manifold_steps: 40, pretrain_steps: 200, mpdr_steps: 10, epochs: None };
    let r = vectors::run(&npz, &out, &[ModelKind::Ae, ModelKind::MpdrR], 2, budget, tch::Device::Cpu).unwrap();
    assert_eq!((r.len(), r[0].models.len(), r[0].models[0].runs.len()), (1, 2, 2));
    assert_eq!((r[0].n, r[0].d), (300, 6));
    let ae = &r[0].models[0];
    assert!(ae.auroc_mean > 0.9, "an AE finds points off the plane: {}", ae.auroc_mean);
    for m in &r[0].models {
        for run in &m.runs {
            assert!((0.0..=1.0).contains(&run.auroc) && (0.0..=1.0).contains(&run.aupr));
        }
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(json["datasets"][0]["dataset"], "easy");
    assert_eq!(json["datasets"][0]["models"][1]["model"], "mpdr-r");
    let split: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("splits/easy_seed0.json")).unwrap()).unwrap();
    assert_eq!(split["train"].as_array().unwrap().len(), 189, "70% of 270 normals");
    assert!(std::fs::read_to_string(out.join("results.md")).unwrap().contains("| easy | 300 | 6 |"));
}

#[test]
fn bad_tables_are_refused_naming_the_file() {
    let d = tempfile::tempdir().unwrap();
    let bad = d.path().join("one_class.npz");
    let mut t = table(20);
    t.y = vec![false; 20];
    write_table(&bad, &t).unwrap();
    let o = mpdr(&["bench", "vectors", "--npz", bad.to_str().unwrap(), "--out", d.path().join("o").to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("one_class.npz") && err.contains("single class"), "{err}");
    let o = mpdr(&["bench", "vectors", "--npz", "/nonexistent.npz", "--out", "/tmp/x", "--model", "idnn"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("idnn"));
}
