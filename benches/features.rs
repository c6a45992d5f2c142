//! Front-end speed: batch extraction of a 10-s 16 kHz clip, and streaming cost per 512-sample
//! hop. Compare with `benches/librosa_time.py` (same clip) for the librosa ratio.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)] // a test or benchmark: failing loudly is the point

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use mpdr::features::stream::StreamingExtractor;
use mpdr::features::{logmel_with, FeatureParams, FrameKernel};

/// The clip librosa_time.py builds: noise plus two tones, 10 s at 16 kHz.
fn clip() -> Vec<f32> {
    let mut s: u32 = 12345;
    (0..160_000)
        .map(|n| {
            s = s.wrapping_mul(1664525).wrapping_add(1013904223);
            let u = s as f64 / 4294967296.0;
            let t = n as f64 / 16000.0;
            (0.2 * (u - 0.5)
                + 0.3 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()
                + 0.1 * (2.0 * std::f64::consts::PI * 3150.0 * t).sin()) as f32
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let params = FeatureParams::default();
    let x = clip();
    let mut group = c.benchmark_group("features");
    group.throughput(Throughput::Elements(x.len() as u64));
    let mut kernel = FrameKernel::new(&params);
    group.bench_function("batch_logmel_10s_clip", |b| {
        b.iter(|| black_box(logmel_with(&mut kernel, &params, black_box(&x)).unwrap()))
    });
    group.bench_function("batch_logmel_and_vectors_10s_clip", |b| {
        b.iter(|| black_box(logmel_with(&mut kernel, &params, black_box(&x)).unwrap().vectors(5)))
    });
    group.finish();

    let mut group = c.benchmark_group("streaming");
    group.throughput(Throughput::Elements(512));
    let mut ex = StreamingExtractor::new(&params);
    let mut pos = 0;
    let mut sink = 0.0f32;
    group.bench_function("push_one_hop_512_samples", |b| {
        b.iter(|| {
            let block = &x[pos..pos + 512];
            pos = (pos + 512) % (x.len() - 512);
            ex.push(black_box(block), |v| sink += v[0]);
        })
    });
    group.finish();
    black_box(sink);
}

criterion_group!(benches, bench);
criterion_main!(benches);
