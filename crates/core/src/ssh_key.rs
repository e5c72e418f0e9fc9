//! SSH public keys as users paste them (`ssh-ed25519 AAAA… comment`): validated and
//! normalised to one authorized_keys line, with the SHA256 fingerprint `ssh-keygen -l` shows.
use base64::Engine;
use sha2::{Digest, Sha256};

/// Key types OpenSSH accepts in authorized_keys.
const TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// A checked public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    /// `TYPE BASE64 [COMMENT]`, one line.
    pub line: String,
    /// `SHA256:…` (unpadded base64), as `ssh-keygen -l` prints it.
    pub fingerprint: String,
    pub key_type: String,
    pub comment: String,
}

/// Parses one public key (surrounding blank space ignored).
pub fn parse(text: &str) -> Result<PublicKey, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("the key is empty".into());
    }
    if text.contains("PRIVATE KEY") {
        return Err("this is a PRIVATE key: give the public one (the .pub file), and keep the private key secret".into());
    }
    if text.lines().count() > 1 {
        return Err("give one public key (one line)".into());
    }
    if text.len() > 16 * 1024 {
        return Err("the key is longer than 16 KiB".into());
    }
    let mut fields = text.split_whitespace();
    let key_type = fields.next().unwrap_or_default();
    if !TYPES.contains(&key_type) {
        return Err(format!(
            "{key_type:?} is not an SSH public key type (expected one of {}; authorized_keys options are not accepted)",
            TYPES.join(", ")
        ));
    }
    let b64 = fields
        .next()
        .ok_or("the key has no base64 body after its type")?;
    let blob = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| "the key's body is not valid base64".to_string())?;
    // The blob starts with the type as an SSH string: u32 length, then bytes.
    let inner = blob
        .get(..4)
        .map(|l| u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize)
        .and_then(|n| blob.get(4..4 + n))
        .ok_or("the key's body is truncated")?;
    if inner != key_type.as_bytes() {
        return Err(format!(
            "the key says {key_type} but its body holds a {} key",
            String::from_utf8_lossy(inner)
        ));
    }
    if blob.len() < 4 + inner.len() + 16 {
        return Err("the key's body is too short to be a key".into());
    }
    let comment: String = fields.collect::<Vec<_>>().join(" ");
    if comment.chars().any(|c| c.is_control()) {
        return Err("the key's comment holds control characters".into());
    }
    let fingerprint = format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(Sha256::digest(&blob))
    );
    let line = if comment.is_empty() {
        format!("{key_type} {b64}")
    } else {
        format!("{key_type} {b64} {comment}")
    };
    Ok(PublicKey {
        line,
        fingerprint,
        key_type: key_type.to_string(),
        comment,
    })
}

#[cfg(test)]
mod tests {
    use super::parse;

    // Made with `ssh-keygen -t ed25519 -C test@berth`; fingerprint from `ssh-keygen -lf`.
    const ED: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBnPd5pd0rD9cpvxH2heppxFMa6APB2elY98wLravxxd test@berth";

    #[test]
    fn parses_and_fingerprints_like_ssh_keygen() {
        let k = parse(&format!("  {ED}\n")).unwrap();
        assert_eq!(k.line, ED);
        assert_eq!(k.key_type, "ssh-ed25519");
        assert_eq!(k.comment, "test@berth");
        assert_eq!(
            k.fingerprint,
            "SHA256:G8yjgOJHYHV4QWXbq0CjdRMfBDeorZiBr/dn3sNIdYI"
        );
    }

    #[test]
    fn refuses_what_is_not_a_public_key() {
        for (bad, why) in [
            ("", "empty"),
            ("-----BEGIN OPENSSH PRIVATE KEY-----\nabc", "PRIVATE"),
            (
                "command=\"x\" ssh-ed25519 AAAA",
                "not an SSH public key type",
            ),
            ("ssh-ed25519", "no base64"),
            ("ssh-ed25519 !!!", "not valid base64"),
            (
                "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIBnPd5pd0rD9cpvxH2heppxFMa6APB2elY98wLravxxd",
                "holds a ssh-ed25519",
            ),
            ("ssh-ed25519 AAAA", "truncated"),
            (&format!("{ED}\n{ED}"), "one line"),
        ] {
            let e = parse(bad).expect_err(bad);
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
