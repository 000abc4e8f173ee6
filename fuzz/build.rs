//! Links libtorch with an rpath (see `ssl-build`), so the fuzz binaries
//! find it at run time.

fn main() {
    ssl_build::link_torch();
}
