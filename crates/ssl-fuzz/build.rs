//! Links libtorch with an rpath and `--no-as-needed` (see `ssl-build`).

fn main() {
    ssl_build::link_torch();
}
