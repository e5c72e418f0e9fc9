//! Everything that reads input from outside (API bodies, Docker-options strings, image
//! references, SSH keys, templates made from image configs) answers any text with a value
//! or an error, never a panic: many generated strings, multi-byte characters among them,
//! cut and joined at every position.
use berth_core::api::CreateInstance;
use berth_core::{docker_options, image_ref, ssh_key, InstanceSpec, LaunchMode};

/// Pieces the strings are made of: option names, separators, quotes, escapes, digits, and
/// characters of 2, 3 and 4 bytes.
const PIECES: &[&str] = &[
    "-",
    "--",
    "-e",
    "-p",
    "--env",
    "--publish",
    "=",
    ":",
    "/",
    "\\",
    "'",
    "\"",
    " ",
    "\t",
    "\n",
    "\r",
    "$",
    "`",
    "1",
    "80",
    "65535",
    "99999",
    "-1",
    "tcp",
    "udp",
    "http",
    "A",
    "a_b",
    "é",
    "€",
    "𝄞",
    "ü=",
    "x=y",
    "[",
    "]",
    "@",
    "sha256:",
    "::1",
    "localhost:5000",
    ".",
    "..",
    "0",
    "\u{0}",
    "ssh-ed25519",
    "AAAA",
    "=",
    "#!",
    "\u{feff}",
];

/// xorshift64*: deterministic, so a failure can be replayed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn text(&mut self) -> String {
        let n = (self.next() % 12) as usize;
        (0..n)
            .map(|_| PIECES[(self.next() % PIECES.len() as u64) as usize])
            .collect()
    }
}

fn exercise(s: &str) {
    let _ = docker_options::parse(s);
    let _ = image_ref::validate(s);
    let _ = ssh_key::parse(s);
    for mode in [LaunchMode::Entrypoint, LaunchMode::Ssh, LaunchMode::Jupyter] {
        let req = CreateInstance {
            image: s.to_string(),
            mode: Some(mode),
            entrypoint: Some(s.to_string()),
            args: Some(vec![s.to_string()]),
            docker_options: Some(s.to_string()),
            env: [(s.to_string(), s.to_string())].into(),
            ports: vec![s.to_string()],
            label: Some(s.to_string()),
            onstart: Some(s.to_string()),
            jupyter_dir: Some(s.to_string()),
            ..Default::default()
        };
        let _ = InstanceSpec::from_request(&req);
        let valid = CreateInstance {
            image: "berth-test/busybox".into(),
            mode: Some(mode),
            docker_options: Some(s.to_string()),
            ..Default::default()
        };
        let _ = InstanceSpec::from_request(&valid);
    }
}

#[test]
fn no_input_makes_a_parser_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..5_000 {
        let s = rng.text();
        exercise(&s);
        // Every cut at a character boundary, too.
        for (i, _) in s.char_indices() {
            exercise(&s[..i]);
            exercise(&s[i..]);
        }
    }
}
