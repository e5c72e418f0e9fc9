//! GPU inventory: what `nvidia-smi` lists. A host without it (or without GPUs) has none.
use berth_core::protocol::Gpu;

/// Lists the host's GPUs; an absent or failing `nvidia-smi` means no GPUs.
pub async fn inventory() -> Vec<Gpu> {
    let out = tokio::process::Command::new("nvidia-smi")
        .args(["--query-gpu=index,name,uuid", "--format=csv,noheader"])
        .output()
        .await;
    match out {
        Ok(o) if o.status.success() => parse(&String::from_utf8_lossy(&o.stdout)),
        _ => Vec::new(),
    }
}

fn parse(csv: &str) -> Vec<Gpu> {
    csv.lines()
        .filter_map(|l| {
            let mut f = l.split(',').map(str::trim);
            let index = f.next()?.parse().ok()?;
            let name = f.next()?.to_string();
            let uuid = f.next()?.to_string();
            Some(Gpu { index, name, uuid })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_nvidia_smi_csv() {
        let g =
            super::parse("0, NVIDIA A100-SXM4-80GB, GPU-aaa\n1, NVIDIA A100-SXM4-80GB, GPU-bbb\n");
        assert_eq!(g.len(), 2);
        assert_eq!((g[1].index, g[1].uuid.as_str()), (1, "GPU-bbb"));
        assert!(super::parse("").is_empty());
    }
}
