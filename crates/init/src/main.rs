//! `berth-init`: see the library's docs. The agent runs it as `/.berth/init`, no arguments.
#![deny(unsafe_code)]

fn main() {
    std::process::exit(berth_init::run());
}
