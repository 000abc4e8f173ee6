//! Writes each target's seed inputs (`ssl_fuzz::seeds`) into
//! `DIR/<target>/seed-N`, for libFuzzer to start from (`cargo xtask fuzz`
//! runs it). Existing files are kept.

fn main() -> std::io::Result<()> {
    let dir =
        std::env::args_os().nth(1).map(std::path::PathBuf::from).unwrap_or_else(|| "fuzz/corpus".into());
    for (name, inputs) in ssl_fuzz::seeds() {
        let d = dir.join(name);
        std::fs::create_dir_all(&d)?;
        for (i, bytes) in inputs.iter().enumerate() {
            std::fs::write(d.join(format!("seed-{i}")), bytes)?;
        }
    }
    println!("seeds written under {}", dir.display());
    Ok(())
}
