//! Scalar energy (MPDR-S): a network with one output, optionally followed by a learnable
//! affine map of that output (`learn_out_scale`, a `Linear(1,1)`).

use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

use super::{l2_of, Energy, EnergyKind, Net, NetSpec};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScalarSpec {
    /// Must have one output.
    pub net: NetSpec,
    #[serde(default)]
    pub out_scale: bool,
    /// L2 coefficient on all network parameters (`l2_norm_reg_netx`).
    #[serde(default)]
    pub l2: f64,
}

impl ScalarSpec {
    pub fn input_dim(&self) -> i64 {
        match &self.net {
            NetSpec::Mlp(m) => m.input,
            NetSpec::ConvEncoder(c) => c.in_channels * c.size * c.size,
            NetSpec::ConvDecoder(_) => 0,
        }
    }
}

/// Variables: `net.*`, `out_scale.*`.
#[derive(Debug)]
pub struct ScalarEnergy {
    pub spec: ScalarSpec,
    net: Net,
    out: Option<nn::Linear>,
    vars: Vec<Tensor>,
}

impl ScalarEnergy {
    pub fn new(p: &nn::Path, s: &ScalarSpec) -> Self {
        let net = Net::new(&(p / "net"), &s.net);
        let out = s.out_scale.then(|| nn::linear(p / "out_scale", 1, 1, Default::default()));
        let vars = net.params();
        ScalarEnergy { spec: s.clone(), net, out, vars }
    }

    pub fn energy(&self, x: &Tensor, train: bool) -> Tensor {
        let e = self.net.forward(x, train).reshape([-1, 1]);
        let e = match &self.out {
            Some(l) => e.linear(&l.ws, l.bs.as_ref()),
            None => e,
        };
        e.reshape([-1])
    }

    pub fn reg(&self) -> Tensor {
        l2_of(&self.vars) * self.spec.l2
    }
}

impl Energy for ScalarEnergy {
    fn energy(&self, x: &Tensor, train: bool) -> Tensor {
        ScalarEnergy::energy(self, x, train)
    }
    fn reg(&self) -> Tensor {
        ScalarEnergy::reg(self)
    }
    fn kind(&self) -> EnergyKind {
        EnergyKind::Scalar
    }
}
