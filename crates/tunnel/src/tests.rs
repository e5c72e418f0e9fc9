//! The tunnel over a real loopback TCP connection (TLS is the callers' layer).
use crate::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn echo_server() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    port
}

/// Proxy and agent over loopback; the agent dials `echo` for instance 7 port 22 only.
async fn setup(token_ok: bool) -> (Tunnels, tokio::task::JoinHandle<Result<(), TunnelError>>) {
    let echo = echo_server().await;
    let tunnels = Tunnels::new();
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let t = tunnels.clone();
    tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        let _ = t
            .serve(s, |h| {
                if h.token == "secret" {
                    Ok(())
                } else {
                    Err("bad token".into())
                }
            })
            .await;
    });
    let io = TcpStream::connect(addr).await.unwrap();
    let hello = Hello {
        protocol: PROTOCOL_VERSION,
        host: "h1".into(),
        token: if token_ok { "secret" } else { "nope" }.into(),
    };
    let agent = tokio::spawn(async move {
        serve_agent(io, &hello, move |instance, port| async move {
            if instance == 7 && port == 22 {
                TcpStream::connect(("127.0.0.1", echo))
                    .await
                    .map_err(|e| DialError::Unreachable(e.to_string()))
            } else {
                Err(DialError::NotFound(format!(
                    "instance {instance} exposes no port {port} here"
                )))
            }
        })
        .await
    });
    (tunnels, agent)
}

async fn wait_connected(t: &Tunnels) {
    for _ in 0..200 {
        if t.is_connected("h1") {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("tunnel never came up");
}

#[tokio::test]
async fn streams_carry_bytes_both_ways_and_many_at_once() {
    let (t, _agent) = setup(true).await;
    wait_connected(&t).await;
    let mut tasks = Vec::new();
    for i in 0..50u32 {
        let t = t.clone();
        tasks.push(tokio::spawn(async move {
            let mut s = t.open("h1", 7, 22).await.unwrap();
            let payload: Vec<u8> = (0..200_000u32)
                .map(|b| (b.wrapping_mul(i + 1) % 251) as u8)
                .collect();
            let (mut r, mut w) = tokio::io::split(&mut s);
            let send = async {
                w.write_all(&payload).await.unwrap();
                w.shutdown().await.unwrap();
            };
            let mut got = Vec::new();
            let recv = r.read_to_end(&mut got);
            let (_, n) = tokio::join!(send, recv);
            n.unwrap();
            assert_eq!(got, payload);
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

#[tokio::test]
async fn refusals_are_clear() {
    let (t, _agent) = setup(true).await;
    wait_connected(&t).await;
    let e = t.open("h1", 8, 22).await.err().unwrap();
    assert!(matches!(e, OpenError::Refused { status: 404, .. }), "{e}");
    assert!(e.to_string().contains("exposes no port 22"), "{e}");
    let e = t.open("other", 7, 22).await.err().unwrap();
    assert!(matches!(e, OpenError::NoTunnel(_)), "{e}");
}

#[tokio::test]
async fn a_bad_token_is_refused() {
    let (t, agent) = setup(false).await;
    let r = agent.await.unwrap();
    assert!(
        matches!(r, Err(TunnelError::Refused(ref m)) if m == "bad token"),
        "{r:?}"
    );
    assert!(!t.is_connected("h1"));
}

/// Every stream gets flow-control window when it has something to send, however many
/// others are open and idle: idle streams hold none of the connection's window.
#[tokio::test]
async fn idle_streams_do_not_starve_new_ones() {
    let (t, _agent) = setup(true).await;
    wait_connected(&t).await;
    // More idle streams than the connection window has room for PIECE-sized reservations.
    let idle = (CONNECTION_WINDOW as usize / (256 * 1024)) + 100;
    let mut held = Vec::new();
    let chunk = vec![7u8; 4 * 1024];
    for i in 0..idle {
        let mut s = t.open("h1", 7, 22).await.unwrap();
        s.write_all(&chunk).await.unwrap();
        let mut back = vec![0u8; chunk.len()];
        tokio::time::timeout(std::time::Duration::from_secs(10), s.read_exact(&mut back))
            .await
            .unwrap_or_else(|_| panic!("stream {i} got no echo: the tunnel starved it"))
            .unwrap();
        assert_eq!(back, chunk);
        held.push(s);
    }
    let mut s = t.open("h1", 7, 22).await.unwrap();
    let payload = vec![9u8; 1 << 20];
    let (mut r, mut w) = tokio::io::split(&mut s);
    let send = async {
        w.write_all(&payload).await.unwrap();
        w.shutdown().await.unwrap();
    };
    let mut got = Vec::new();
    let recv = tokio::time::timeout(std::time::Duration::from_secs(20), r.read_to_end(&mut got));
    let (_, n) = tokio::join!(send, recv);
    n.expect("no echo with many idle streams open").unwrap();
    assert_eq!(got.len(), payload.len());
    drop(held);
}
