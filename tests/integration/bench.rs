//! `mpdr bench vectors` on generated tables: the protocol end to end and bad input.

use mpdr::bench::vectors::{self, Budget, VisibleStep};
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
    let r =
        vectors::run(&npz, &out, &[ModelKind::Ae, ModelKind::MpdrR], 2, budget, VisibleStep::Capped, tch::Device::Cpu)
            .unwrap();
    assert_eq!((r.len(), r[0].models.len(), r[0].models[0].runs.len()), (1, 2, 2));
    assert_eq!((r[0].n, r[0].d), (300, 6));
    let ae = &r[0].models[0];
    assert!(ae.auroc_mean > 0.9, "an AE finds points off the plane: {}", ae.auroc_mean);
    assert!(r[0].models[1].auroc_mean > 0.9, "MPDR-R with the capped step: {}", r[0].models[1].auroc_mean);
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

/// MNIST-like IDX files (with a seeded speckle): digits 0-8 are 3-pixel bright bars at row
/// 2 + 2k, digit 9 a bright 14 x 14 square — a shape no other digit has.
fn write_fake_mnist(dir: &std::path::Path, n: usize, gzip: bool, prefix: &str) {
    use mpdr::data::idx::{write_idx, Idx};
    let mut s = 99u64;
    let mut pixels = Vec::with_capacity(n * 784);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let digit = (i % 10) as u8;
        let row0 = 2 + 2 * digit as usize;
        for r in 0..28 {
            for c in 0..28 {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let speckle = ((s >> 33) % 40) as u8;
                let bar = if digit == 9 {
                    (7..21).contains(&r) && (7..21).contains(&c)
                } else {
                    r >= row0 && r < row0 + 3 && (4..24).contains(&c)
                };
                pixels.push(if bar { 255 - speckle } else { speckle / 4 });
            }
        }
        labels.push(digit);
    }
    let ext = if gzip { ".gz" } else { "" };
    write_idx(
        &dir.join(format!("{prefix}-images-idx3-ubyte{ext}")),
        &Idx { dims: vec![n, 28, 28], data: pixels },
        gzip,
    )
    .unwrap();
    write_idx(&dir.join(format!("{prefix}-labels-idx1-ubyte{ext}")), &Idx { dims: vec![n], data: labels }, gzip)
        .unwrap();
}

#[test]
fn the_mnist_protocol_finds_a_held_out_digit_and_writes_its_results() {
    use mpdr::bench::mnist::{self, Budget};
    mpdr::device::init_threads();
    let d = tempfile::tempdir().unwrap();
    write_fake_mnist(d.path(), 400, true, "t10k");
    let data = mnist::load(d.path()).unwrap();
    assert_eq!((data.pool.len(), data.test.len()), (280, 120), "images 0-279 train, 280-399 test");
    assert!(data.protocol.starts_with("test set only"));
    let out = d.path().join("out");
    let budget = Budget {
        ae_steps: 150,
        ae_batch: 32,
        ae_lr: 1e-3,
        mpdr_steps: 4,
        mpdr_batch: 16,
        mpdr_r_lr: 1e-4,
        epochs: None,
    };
    let models = [ModelKind::Ae, ModelKind::MpdrR, ModelKind::MpdrS];
    let r = mnist::run(d.path(), &out, &[9], &models, budget, 1, tch::Device::Cpu).unwrap();
    assert_eq!((r[0].holdout, r[0].n_train, r[0].n_test, r[0].positives), (9, 252, 120, 12));
    let m = &r[0].models;
    assert_eq!(m.iter().map(|m| m.model.as_str()).collect::<Vec<_>>(), ["ae", "mpdr-r", "mpdr-s"]);
    // A shape no training digit has: the AE's error ranks it far above the 10% base rate.
    assert!(m[0].aupr > 0.6, "AE AUPR {}", m[0].aupr);
    // MPDR-R starts as a copy of that AE and takes 4 small steps: it keeps finding it.
    assert!(m[1].aupr > 0.5, "MPDR-R AUPR {}", m[1].aupr);
    for s in m {
        assert!([s.aupr, s.auroc, s.constant_aupr, s.constant_auroc].iter().all(|v| (0.0..=1.0).contains(v)), "{s:?}");
    }
    assert_eq!(m[1].steps, 150 + 4, "shared AE steps + its own MPDR steps");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(json["digits"][0]["models"][2]["model"], "mpdr-s");
    assert!(std::fs::read_to_string(out.join("results.md")).unwrap().contains("| 9 | 252 | 120 | 12 | ae |"));

    // With training files next to the test files, the full-MNIST protocol is used.
    write_fake_mnist(d.path(), 200, false, "train");
    let full = mnist::load(d.path()).unwrap();
    assert_eq!((full.pool.len(), full.test.len()), (200, 400));
    assert!(full.protocol.starts_with("full MNIST"));
}

#[test]
fn bad_mnist_files_are_refused_naming_the_file() {
    let d = tempfile::tempdir().unwrap();
    let run = |dir: &std::path::Path| {
        let o = mpdr(&[
            "bench",
            "mnist",
            "--idx-dir",
            dir.to_str().unwrap(),
            "--holdout",
            "1",
            "--out",
            dir.join("o").to_str().unwrap(),
        ]);
        assert!(!o.status.success());
        String::from_utf8_lossy(&o.stderr).to_string()
    };
    let err = run(d.path());
    assert!(err.contains("t10k-images-idx3-ubyte"), "{err}");
    write_fake_mnist(d.path(), 120, false, "t10k");
    // Labels file swapped for the images file: wrong magic number.
    std::fs::copy(d.path().join("t10k-images-idx3-ubyte"), d.path().join("t10k-labels-idx1-ubyte")).unwrap();
    let err = run(d.path());
    assert!(err.contains("t10k-labels-idx1-ubyte") && err.contains("wrong magic number"), "{err}");
    let o = mpdr(&["bench", "mnist", "--idx-dir", "/x", "--holdout", "12", "--out", "/tmp/x"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("--holdout 12"));
}
