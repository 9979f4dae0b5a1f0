//! With the `duckdb` feature, record DUCKDB_LIB_DIR as the rpath of every binary (the binary,
//! tests, benches), so `fhirflow` finds libduckdb.so at run time without LD_LIBRARY_PATH.

fn main() {
    println!("cargo:rerun-if-env-changed=DUCKDB_LIB_DIR");
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_DUCKDB").is_none() {
        return;
    }
    match std::env::var("DUCKDB_LIB_DIR") {
        Ok(dir) if !dir.is_empty() => println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}"),
        _ => println!(
            "cargo:warning=the `duckdb` feature links to libduckdb.so: set DUCKDB_LIB_DIR=$(bash scripts/ensure_libduckdb.sh | tail -n 1)"
        ),
    }
}
