//! Names the Cargo profile the extension is built with (`RSNORM_BUILD_PROFILE`), so that
//! `show_config()` and the benchmark can say when timings come from a local build without the
//! release profile's fat LTO (measured up to 3x slower on some kernels).

fn main() {
    // OUT_DIR is <target>/[<triple>/]<profile>/build/<package>-<hash>/out: the profile is the
    // fourth component from its end (Cargo tells build scripts no custom profile's name).
    let out_dir = std::env::var("OUT_DIR").unwrap_or_default();
    let profile = std::path::Path::new(&out_dir)
        .components()
        .rev()
        .nth(3)
        .and_then(|c| c.as_os_str().to_str())
        .unwrap_or("unknown")
        .to_owned();
    println!("cargo:rustc-env=RSNORM_BUILD_PROFILE={profile}");
    println!("cargo:rerun-if-changed=build.rs");
}
