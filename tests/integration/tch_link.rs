//! Proves libtorch links and loads: a forward and backward pass with known gradients.

use tch::{nn, nn::Module, Device, Kind, Tensor};

#[test]
fn forward_and_backward_pass_give_analytic_gradients() {
    mpdr::device::init_threads();
    let vs = nn::VarStore::new(Device::Cpu);
    let lin = nn::linear(vs.root(), 3, 2, Default::default());
    let x = Tensor::from_slice(&[1.0f32, 2.0, 3.0, -1.0, 0.5, 2.0]).reshape([2, 3]);
    let y = lin.forward(&x);
    let loss = y.square().sum(Kind::Float);
    loss.backward();
    // d/dW sum((xW^T + b)^2) = 2 y^T x ; d/db = 2 Σ_rows y
    let want_w = (y.detach() * 2.0).transpose(0, 1).matmul(&x);
    let want_b = (y.detach() * 2.0).sum_dim_intlist([0i64].as_slice(), false, Kind::Float);
    let diff_w = (lin.ws.grad() - want_w).abs().max().double_value(&[]);
    let diff_b = (lin.bs.as_ref().unwrap().grad() - want_b).abs().max().double_value(&[]);
    assert!(diff_w < 1e-5 && diff_b < 1e-5, "gradient mismatch: {diff_w} {diff_b}");
    assert!(loss.double_value(&[]) > 0.0);
}
