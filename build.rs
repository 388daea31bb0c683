//! Sets `cfg(mlx)` where the MLX backend is built: always on Apple Silicon macOS, elsewhere
//! with the `mlx` feature (against an installed MLX, see scripts/mlx-linux).

use std::env;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(mlx)");
    println!("cargo::rerun-if-env-changed=MLX_PREFIX");
    let os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let apple_silicon = os == "macos" && arch == "aarch64";
    if !(apple_silicon || env::var_os("CARGO_FEATURE_MLX").is_some()) {
        return;
    }
    println!("cargo::rustc-cfg=mlx");
    // An installed libmlx.so (the PyPI wheel's): let our binaries and tests find it at run time
    // without LD_LIBRARY_PATH. mlx-sys cannot do this for us: link args do not cross crates.
    if let (false, Some(prefix)) = (apple_silicon, env::var_os("MLX_PREFIX")) {
        let lib = std::path::Path::new(&prefix).join("lib");
        println!("cargo::rustc-link-arg=-Wl,-rpath,{}", lib.display());
    }
}
