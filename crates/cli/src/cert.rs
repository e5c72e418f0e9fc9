//! `berth cert [--out FILE] [--der]`: downloads the deployment's CA certificate
//! (`GET /api/v1/ca.crt`, no API key) for the user to install as a trusted root.
use crate::client::Client;
use anyhow::{bail, Context, Result};
use berth_core::Secret;
use std::io::{IsTerminal, Write};
use std::path::Path;

/// Where the install steps are.
const HINT: &str = "to trust it, see \"Trusting berth's certificate authority\" in berth's README";

pub async fn run(url: &str, out: Option<&Path>, der: bool) -> Result<()> {
    // the certificate needs no key; whatever key is configured is not sent
    let client = Client::new(url, Secret::new(""))?;
    if der && out.is_none() && std::io::stdout().is_terminal() {
        bail!("refusing to print binary DER to a terminal: use --out FILE, or pipe the output");
    }
    let cert = client.ca_cert(der).await?;
    check(&cert, der).with_context(|| format!("berth at {}", client.url()))?;
    match out {
        Some(path) => {
            std::fs::write(path, &cert).with_context(|| format!("writing {}", path.display()))?;
            eprintln!("wrote {}; {HINT}", path.display());
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(&cert)
                .and_then(|()| stdout.flush())
                .context("writing to stdout")?;
            eprintln!("{HINT}");
        }
    }
    Ok(())
}

/// The answer must look like what was asked for, so a proxy's error page or a wrong URL
/// never ends up installed as a "certificate".
fn check(cert: &[u8], der: bool) -> Result<()> {
    let ok = if der {
        // a DER SEQUENCE with a long-form length
        cert.len() > 64 && cert[0] == 0x30 && cert[1] & 0x80 != 0
    } else {
        cert.starts_with(b"-----BEGIN CERTIFICATE-----")
    };
    if !ok {
        bail!(
            "sent something that is not a {} certificate",
            if der { "DER" } else { "PEM" }
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_certificates_pass() {
        assert!(super::check(b"-----BEGIN CERTIFICATE-----\nMIIB\n", false).is_ok());
        assert!(super::check(b"<html>502 Bad Gateway</html>", false).is_err());
        let mut der = vec![0x30, 0x82, 0x01, 0x20];
        der.resize(0x124, 0);
        assert!(super::check(&der, true).is_ok());
        assert!(super::check(b"-----BEGIN CERTIFICATE-----", true).is_err());
    }
}
