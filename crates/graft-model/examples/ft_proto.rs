use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{activation, Device, Tensor, TensorData};
use graft_model::arch::{spec_for, EncoderKind};
use std::time::Instant;

fn main() {
    let pth = std::env::args().nth(1).unwrap();
    let start: usize = std::env::args().nth(2).unwrap().parse().unwrap();
    let batch: usize = std::env::args().nth(3).unwrap().parse().unwrap();
    let sd = graft_model::load_pth(&pth).unwrap();
    let spec = spec_for(EncoderKind::MobileNetV2, &sd).unwrap();
    let dev = Device::flex().autodiff();
    // params
    let mut params = vec![];
    for b in &spec.blocks[start..] {
        for l in &b.layers {
            let k = l.kernel;
            let w = sd
                .require(&l.conv, &[l.out_ch, l.in_ch / l.groups, k, k])
                .unwrap();
            params.push((l.clone(), w.data.clone()));
        }
    }
    // input size at block start
    let mut s = 224usize;
    let mut c = 3;
    for b in &spec.blocks[..start] {
        for l in &b.layers {
            let (a, bb) = l.padding.amounts(s, l.kernel, l.stride);
            s = (s + a + bb - l.kernel) / l.stride + 1;
            c = l.out_ch;
        }
    }
    println!("start {start} input {c}x{s}x{s} batch {batch}");
    let x: Vec<f32> = (0..batch * c * s * s)
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0)
        .collect();
    for it in 0..4 {
        let t0 = Instant::now();
        let xt = Tensor::<4>::from_data(TensorData::new(x.clone(), [batch, c, s, s]), &dev);
        let mut ws = vec![];
        let mut y = xt;
        let mut bi = 0;
        for b in &spec.blocks[start..] {
            let inp = y.clone();
            for l in &b.layers {
                let (lc, data) = &params[bi];
                bi += 1;
                let k = lc.kernel;
                let w = Tensor::<4>::from_data(
                    TensorData::new(data.clone(), [lc.out_ch, lc.in_ch / lc.groups, k, k]),
                    &dev,
                )
                .require_grad();
                let bias = Tensor::<1>::zeros([lc.out_ch], &dev).require_grad();
                let [_, _, h, ww] = y.dims();
                let ph = lc.padding.amounts(h, k, lc.stride);
                let pw = lc.padding.amounts(ww, k, lc.stride);
                let o = ConvOptions::new_with_padding(
                    [lc.stride, lc.stride],
                    [ph, pw],
                    [1, 1],
                    lc.groups,
                );
                y = conv2d(y, w.clone(), Some(bias.clone()), o);
                if lc.act.is_some() {
                    y = activation::relu6(y);
                }
                ws.push(w);
            }
            if b.residual {
                y = y + inp;
            }
        }
        let loss = y.powf_scalar(2.0).mean();
        let t1 = Instant::now();
        let g = loss.backward();
        let mut tot = 0.0;
        for w in &ws {
            let gw = w.grad(&g).unwrap();
            tot += gw.abs().sum().into_scalar::<f32>();
        }
        let t2 = Instant::now();
        println!(
            "it {it}: fwd {:.3}s bwd {:.3}s  img/s {:.1} gsum {tot:.3e}",
            (t1 - t0).as_secs_f64(),
            (t2 - t1).as_secs_f64(),
            batch as f64 / (t2 - t0).as_secs_f64()
        );
    }
}
use burn::tensor::ElementConversion;
