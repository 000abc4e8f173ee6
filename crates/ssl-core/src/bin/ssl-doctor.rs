//! `ssl-doctor`: what libtorch sees here (run by `cargo xtask doctor`).

fn main() {
    let cuda = tch::Cuda::is_available();
    println!("cuda available: {cuda}");
    println!("cuda devices:   {}", tch::Cuda::device_count());
    println!("cudnn:          {}", tch::Cuda::cudnn_is_available());
    println!("torch threads:  {}", tch::get_num_threads());
    println!("rayon threads:  {}", rayon::current_num_threads());
    let device = tch::Device::cuda_if_available();
    let x = tch::Tensor::ones([2, 2], (tch::Kind::Float, device));
    println!("matmul on {:?}: sum = {}", device, x.matmul(&x).sum(tch::Kind::Float).double_value(&[]));
}
