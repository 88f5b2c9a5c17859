//! With the `xgboost` feature, the binaries and tests find XGBoost's library where they
//! were linked against it (`XGBOOST_LIB_DIR`, see scripts/xgboost-lib) without
//! LD_LIBRARY_PATH.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=XGBOOST_LIB_DIR");
    if std::env::var_os("CARGO_FEATURE_XGBOOST").is_some()
        && let Ok(dir) = std::env::var("XGBOOST_LIB_DIR")
    {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}
