//! Compiles the small C++ shim in `src/ffi/shim.cc` against the RocksDB
//! headers that `librocksdb-sys` builds with (it publishes its source
//! directory to dependents as `DEP_ROCKSDB_CARGO_MANIFEST_DIR`).

fn main() {
    let rocksdb_src = std::env::var("DEP_ROCKSDB_CARGO_MANIFEST_DIR")
        .expect("librocksdb-sys publishes its source directory");
    let include = std::path::Path::new(&rocksdb_src)
        .join("rocksdb")
        .join("include");
    println!("cargo:rerun-if-changed=src/ffi/shim.cc");
    cc::Build::new()
        .cpp(true)
        .std("c++20")
        .include(include)
        .file("src/ffi/shim.cc")
        .warnings(true)
        .compile("rocksnap_shim");
}
