//! Builds berth's in-container init (`crates/init`) as a static binary for the agent to
//! embed: `include_bytes!(env!("BERTH_INIT_PATH"))`.
//!
//! The nested cargo uses its own target dir under OUT_DIR, so it never waits on the lock
//! of the outer build's target dir. It always builds x86_64-unknown-linux-gnu with
//! `+crt-static`, whatever the outer build's flags: the result runs in any image.

use std::env;
use std::path::PathBuf;
use std::process::Command;

const TARGET: &str = "x86_64-unknown-linux-gnu";

fn main() {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let root = manifest_dir.join("../..");
    let root = root.canonicalize().unwrap_or(root);
    let init = root.join("crates/init");
    println!("cargo:rerun-if-changed={}", init.join("src").display());
    println!(
        "cargo:rerun-if-changed={}",
        init.join("Cargo.toml").display()
    );
    println!(
        "cargo:rerun-if-changed={}",
        root.join("Cargo.lock").display()
    );

    let target_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR")).join("init-target");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--release", "--target", TARGET, "-p", "berth-init"])
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"));
    if root.join("Cargo.lock").exists() {
        cmd.arg("--locked");
    }
    cmd.env("CARGO_TARGET_DIR", &target_dir)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        // `cargo clippy` sets this for the outer build; the init is linted as a workspace
        // member there, and a nested clippy-driver would only fail the build script.
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        // Build scripts' stdout is for cargo directives only.
        .stdout(std::io::stderr());
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo to build berth-init: {e}"));
    assert!(
        status.success(),
        "building the static berth-init failed ({status}); see the output above"
    );

    let bin = target_dir.join(TARGET).join("release/berth-init");
    assert!(
        bin.is_file(),
        "berth-init was built but {} is missing",
        bin.display()
    );
    println!("cargo:rustc-env=BERTH_INIT_PATH={}", bin.display());
}
