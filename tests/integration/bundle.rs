//! Model bundles: save -> load gives identical energies; corrupted or mismatched bundles fail
//! with errors that name the file and the problem.

use mpdr::features::FeatureParams;
use mpdr::model::{Bundle, Manifest, ModelKind, Scaler};
use mpdr::nn::ae::AeSpec;
use mpdr::nn::idnn::IdnnSpec;
use mpdr::nn::{Activation, EnergySpec};
use tch::{Device, Kind, Tensor};

fn small_bundle() -> Bundle {
    mpdr::device::init_threads();
    tch::manual_seed(3);
    let energy = EnergySpec::Idnn(IdnnSpec {
        context_hidden: vec![16],
        decoder_hidden: vec![16],
        latent: 4,
        ..IdnnSpec::dcase(8, 5)
    });
    let manifold = vec![
        AeSpec::mlp(40, &[16], 4, &[16], Activation::LeakyRelu, Activation::LeakyRelu),
        AeSpec::mlp(40, &[16], 6, &[16], Activation::LeakyRelu, Activation::LeakyRelu),
    ];
    let mut m = Manifest::new(ModelKind::MpdrIdnn, energy, manifold);
    m.features = Some(FeatureParams { n_mels: 8, ..FeatureParams::default() });
    let data: Vec<f32> = (0..400).map(|i| ((i * 37) % 17) as f32 * 0.3).collect();
    m.scaler = Some(Scaler::fit(&data, 40, Some(3.0)));
    m.provenance.seed = 3;
    Bundle::build(m, Device::Cpu)
}

#[test]
fn round_trip_gives_identical_energies() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = small_bundle();
    let x = Tensor::randn([33, 40], (Kind::Float, Device::Cpu)) * 2.0;
    let before = b.score(&x, 8).unwrap();
    b.save(dir.path()).unwrap();
    let loaded = Bundle::load(dir.path(), Device::Cpu).unwrap();
    assert_eq!(loaded.manifest, b.manifest);
    let after = loaded.score(&x, 8).unwrap(); // same batching: BLAS blocking depends on it
    assert_eq!(before.size(), vec![33]);
    assert_eq!(Vec::<f32>::try_from(&before).unwrap(), Vec::<f32>::try_from(&after).unwrap());
    // The manifold AEs come back too, frozen.
    assert_eq!(loaded.manifold.len(), 2);
    assert!(loaded.manifold_vs.iter().all(|vs| vs.trainable_variables().iter().all(|t| !t.requires_grad())));
}

#[test]
fn corrupted_and_mismatched_bundles_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = small_bundle();
    b.save(dir.path()).unwrap();
    let root = dir.path();
    let err = |d: &std::path::Path| Bundle::load(d, Device::Cpu).unwrap_err().to_string();

    // A flipped byte in the weights: checksum error naming the file.
    let copy = tempfile::tempdir().unwrap();
    for f in ["manifest.toml", "energy.safetensors", "manifold_0.safetensors", "manifold_1.safetensors"] {
        std::fs::copy(root.join(f), copy.path().join(f)).unwrap();
    }
    let w = copy.path().join("manifold_1.safetensors");
    let mut bytes = std::fs::read(&w).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 0x40;
    std::fs::write(&w, &bytes).unwrap();
    let e = err(copy.path());
    assert!(e.contains("manifold_1.safetensors") && e.contains("checksum"), "{e}");

    // A manifest whose network no longer matches the weights: shape error naming the tensor.
    std::fs::copy(root.join("manifold_1.safetensors"), &w).unwrap();
    let m = std::fs::read_to_string(root.join("manifest.toml")).unwrap();
    std::fs::write(copy.path().join("manifest.toml"), m.replacen("latent = 4", "latent = 5", 1)).unwrap();
    let e = err(copy.path());
    assert!(e.contains("energy.safetensors") && e.contains("shape"), "{e}");

    // Unknown schema version, unknown key, missing weights.
    std::fs::write(copy.path().join("manifest.toml"), m.replacen("schema_version = 1", "schema_version = 9", 1))
        .unwrap();
    assert!(err(copy.path()).contains("schema version 9"));
    std::fs::write(copy.path().join("manifest.toml"), format!("colour = \"red\"\n{m}")).unwrap();
    assert!(err(copy.path()).contains("colour"));
    std::fs::write(copy.path().join("manifest.toml"), &m).unwrap();
    std::fs::remove_file(copy.path().join("energy.safetensors")).unwrap();
    let e = err(copy.path());
    assert!(e.contains("energy.safetensors") && e.contains("cannot read"), "{e}");
    assert!(err(&root.join("nope")).contains("manifest.toml"));
}

#[test]
fn scaler_standardises_and_clamps() {
    let data = [1.0f32, 10.0, 3.0, 10.0, 5.0, 10.0];
    let s = Scaler::fit(&data, 2, Some(1.0));
    assert_eq!(s.mean, vec![3.0, 10.0]);
    assert!((s.std[0] - (8.0f32 / 3.0).sqrt()).abs() < 1e-6);
    assert_eq!(s.std[1], 1.0, "a constant column gets std 1");
    let z = s.apply(&Tensor::from_slice(&[3.0f32, 12.0, 100.0, 10.0]).reshape([2, 2]));
    assert_eq!(Vec::<f32>::try_from(z.reshape([-1])).unwrap(), vec![0.0, 1.0, 1.0, 0.0]);
}
