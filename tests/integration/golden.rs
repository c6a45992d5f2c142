//! Golden parity with librosa 0.11: fixtures from scripts/gen_golden_logmel.py.

use mpdr::audio::{wav, ChannelSelect};
use mpdr::data::npy;
use mpdr::features::mel::MelFilterbank;
use mpdr::features::stream::FrameStream;
use mpdr::features::{logmel, FeatureParams, PadMode};

use super::util::fixtures;

const SIGNALS: [&str; 8] = ["tone440", "tones", "chirp", "noise", "silence", "one_sample", "short", "spec_lcg"];

#[test]
fn batch_and_streaming_log_mel_match_librosa_on_every_cell() {
    let dir = fixtures().join("golden");
    for name in SIGNALS {
        let decoded = wav::decode(&dir.join(format!("{name}.wav")), ChannelSelect::Mix).unwrap();
        assert_eq!(decoded.sample_rate, 16000);
        for pad in [PadMode::Constant, PadMode::Reflect] {
            let want = npy::read(&dir.join(format!("{name}.{pad}.npy"))).unwrap();
            let params = FeatureParams { pad_mode: pad, ..FeatureParams::default() };
            let lm = logmel(&params, &decoded.samples).unwrap();
            assert_eq!(vec![lm.n_mels, lm.n_frames], want.shape, "{name} {pad}: shape");
            let got = lm.to_mel_major();
            let (worst, at) = got
                .iter()
                .zip(&want.data)
                .enumerate()
                .map(|(i, (a, b))| ((a - b).abs(), i))
                .fold((0.0f32, 0), |acc, x| if x.0 > acc.0 { x } else { acc });
            assert!(
                worst <= 1e-3,
                "{name} {pad}: |Δ| = {worst} dB at (mel {}, frame {})",
                at / lm.n_frames,
                at % lm.n_frames
            );
            // Streaming, in awkward blocks, gives the batch result bit for bit.
            let mut fs = FrameStream::new(&params);
            let mut frames = Vec::new();
            for block in decoded.samples.chunks(333) {
                fs.push(block, &mut |f: &[f32]| frames.extend_from_slice(f));
            }
            fs.finish(&mut |f: &[f32]| frames.extend_from_slice(f));
            assert_eq!(frames, lm.data, "{name} {pad}: streaming differs from batch");
        }
    }
}

#[test]
fn mel_filterbank_equals_librosa() {
    let want = npy::read(&fixtures().join("golden/mel_filterbank.npy")).unwrap();
    assert_eq!(want.shape, vec![128, 513]);
    let bank = MelFilterbank::slaney(16000.0, 1024, 128, 0.0, 8000.0);
    let got = bank.to_dense();
    let worst = got.iter().zip(&want.data).map(|(a, b)| (*a as f32 - b).abs()).fold(0.0f32, f32::max);
    // Both round f64 weights to f32; summation order may differ by one f32 ulp (~2e-9).
    assert!(worst <= 1e-8, "filterbank weights differ from librosa's by {worst}");
}
