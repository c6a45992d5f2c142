//! The MNIST networks of the paper's Table 8 (the MPDR code's `ConvNet2FC` / `DeConvNet2`,
//! nh = 8). Inputs and outputs are flattened (B, C·S·S) so that MPDR's chains see vectors.
//!
//! Encoder 28x28: conv3 4nh -> conv3 8nh -> maxpool2 -> conv3 8nh -> conv3 16nh -> maxpool2 ->
//! conv4 nh_mlp -> conv1x1 out (ReLU between; optional spectral norm on conv1-5).
//! Decoder: convT4 16nh -> bilinear x2 -> convT3 8nh -> convT3 8nh -> bilinear x2 -> convT3 4nh
//! -> convT3 C -> output activation.

use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

use super::{torch_default_init, Activation, SpectralNorm};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConvEncoderSpec {
    pub in_channels: i64,
    /// Image side (28 for MNIST).
    pub size: i64,
    pub nh: i64,
    pub nh_mlp: i64,
    pub output: i64,
    pub activation: Activation,
    #[serde(default)]
    pub spectral_norm: bool,
}

impl ConvEncoderSpec {
    /// The MNIST encoder of Table 8: 1 x 28 x 28 in, nh = 8, a 1024-channel conv4, ReLU.
    pub fn mnist(output: i64, spectral_norm: bool) -> Self {
        ConvEncoderSpec {
            in_channels: 1,
            size: 28,
            nh: 8,
            nh_mlp: 1024,
            output,
            activation: Activation::Relu,
            spectral_norm,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConvDecoderSpec {
    pub latent: i64,
    pub out_channels: i64,
    pub nh: i64,
    pub out_activation: Activation,
}

impl ConvDecoderSpec {
    /// The MNIST decoder of Table 8: nh = 8, one sigmoid output channel (pixels in [0, 1]).
    pub fn mnist(latent: i64) -> Self {
        ConvDecoderSpec { latent, out_channels: 1, nh: 8, out_activation: Activation::Sigmoid }
    }
}

/// One conv (or transposed conv) layer with its own weights.
#[derive(Debug)]
struct Conv {
    w: Tensor,
    b: Tensor,
    padding: i64,
    transposed: bool,
    sn: Option<SpectralNorm>,
}

impl Conv {
    fn new(p: nn::Path, cin: i64, cout: i64, k: i64, padding: i64, transposed: bool, sn: bool) -> Self {
        // PyTorch: fan_in = weight.size(1) * k * k (for ConvTranspose that is cout).
        let (shape, fan_in) =
            if transposed { ([cin, cout, k, k], cout * k * k) } else { ([cout, cin, k, k], cin * k * k) };
        let init = torch_default_init(fan_in);
        let w = p.var("weight", &shape, init);
        let b = p.var("bias", &[cout], init);
        let sn = sn.then(|| SpectralNorm::new(&p, shape[0]));
        Conv { w, b, padding, transposed, sn }
    }

    fn weight(&self, train: bool) -> Tensor {
        match &self.sn {
            None => self.w.shallow_clone(),
            Some(sn) => sn.apply(&self.w, train),
        }
    }

    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let w = self.weight(train);
        let pad = [self.padding, self.padding];
        if self.transposed {
            x.conv_transpose2d(&w, Some(&self.b), [1, 1], pad, [0, 0], 1, [1, 1])
        } else {
            x.conv2d(&w, Some(&self.b), [1, 1], pad, [1, 1], 1)
        }
    }
}

#[derive(Debug)]
pub struct ConvEncoder {
    spec: ConvEncoderSpec,
    convs: Vec<Conv>,
}

impl ConvEncoder {
    pub fn new(p: &nn::Path, s: &ConvEncoderSpec) -> Self {
        let (nh, sn) = (s.nh, s.spectral_norm);
        let layers = [
            (s.in_channels, 4 * nh, 3, sn),
            (4 * nh, 8 * nh, 3, sn),
            (8 * nh, 8 * nh, 3, sn),
            (8 * nh, 16 * nh, 3, sn),
            (16 * nh, s.nh_mlp, 4, sn),
            (s.nh_mlp, s.output, 1, false),
        ];
        let convs = layers
            .iter()
            .enumerate()
            .map(|(i, &(cin, cout, k, sn))| Conv::new(p / format!("conv{}", i + 1), cin, cout, k, 0, false, sn))
            .collect();
        ConvEncoder { spec: s.clone(), convs }
    }

    pub fn params(&self) -> Vec<Tensor> {
        self.convs.iter().flat_map(|c| [c.w.shallow_clone(), c.b.shallow_clone()]).collect()
    }

    /// (B, C·S·S) -> (B, output).
    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let s = &self.spec;
        let mut h = x.reshape([-1, s.in_channels, s.size, s.size]);
        for (i, c) in self.convs.iter().enumerate() {
            h = c.forward(&h, train);
            if i < 5 {
                h = s.activation.apply(&h);
            }
            if i == 1 || i == 3 {
                h = h.max_pool2d_default(2);
            }
        }
        h.flatten(1, -1)
    }
}

#[derive(Debug)]
pub struct ConvDecoder {
    spec: ConvDecoderSpec,
    convs: Vec<Conv>,
}

impl ConvDecoder {
    pub fn new(p: &nn::Path, s: &ConvDecoderSpec) -> Self {
        let nh = s.nh;
        let layers = [
            (s.latent, 16 * nh, 4),
            (16 * nh, 8 * nh, 3),
            (8 * nh, 8 * nh, 3),
            (8 * nh, 4 * nh, 3),
            (4 * nh, s.out_channels, 3),
        ];
        let convs = layers
            .iter()
            .enumerate()
            .map(|(i, &(cin, cout, k))| Conv::new(p / format!("conv{}", i + 1), cin, cout, k, 0, true, false))
            .collect();
        ConvDecoder { spec: s.clone(), convs }
    }

    pub fn params(&self) -> Vec<Tensor> {
        self.convs.iter().flat_map(|c| [c.w.shallow_clone(), c.b.shallow_clone()]).collect()
    }

    /// (B, latent) -> (B, C·28·28).
    pub fn forward(&self, z: &Tensor) -> Tensor {
        let up = |h: &Tensor| {
            let (hh, ww) = (h.size()[2], h.size()[3]);
            h.upsample_bilinear2d([2 * hh, 2 * ww], true, None, None)
        };
        let mut h = z.reshape([-1, self.spec.latent, 1, 1]);
        for (i, c) in self.convs.iter().enumerate() {
            h = c.forward(&h, false);
            if i == 0 || i == 2 {
                h = up(&h);
            }
            h = if i < 4 { h.relu() } else { self.spec.out_activation.apply(&h) };
        }
        h.flatten(1, -1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn table8_networks_map_28x28_images_to_codes_and_back() {
        crate::device::init_threads();
        let vs = nn::VarStore::new(Device::Cpu);
        let enc = ConvEncoder::new(&(vs.root() / "enc"), &ConvEncoderSpec::mnist(32, false));
        let dec = ConvDecoder::new(&(vs.root() / "dec"), &ConvDecoderSpec::mnist(32));
        let x = Tensor::rand([3, 784], (Kind::Float, Device::Cpu));
        let z = enc.forward(&x, false);
        assert_eq!(z.size(), vec![3, 32]);
        let y = dec.forward(&z);
        assert_eq!(y.size(), vec![3, 784]);
        assert!(y.min().double_value(&[]) >= 0.0 && y.max().double_value(&[]) <= 1.0);
        assert_eq!(vs.variables()["enc.conv5.weight"].size(), vec![1024, 128, 4, 4]);
    }
}
