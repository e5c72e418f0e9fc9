//! The proxy, end to end: agents' outbound tunnels, SSH proxy ports, HTTPS proxy URLs, on
//! a host with no open ports and as the backup path of one with them; isolation; restarts.
mod common;
use common::*;
use std::process::Command;
use std::time::{Duration, Instant};

fn proxy_port(v: &serde_json::Value) -> u16 {
    let p = v["proxy_ssh"]
        .as_str()
        .unwrap_or_else(|| panic!("no proxy_ssh in {v:#}"));
    p.rsplit_once(':').unwrap().1.parse().unwrap()
}

/// ssh, scp, sftp and `ssh -L` through the proxy to an instance on a host with no open ports.
#[test]
fn ssh_through_the_proxy_on_a_host_without_open_ports() {
    require_docker_and_images(&[SSH_IMAGE]);
    let mut d = deployment::Deployment::start(deployment::Options {
        db: None,
        proxy: true,
    });
    d.start_agent("nat", "127.0.0.1", &[]);
    let (key, kh) = d.account_key();
    let id = d
        .ok(&[
            "create",
            SSH_IMAGE,
            "--ssh",
            "--http-port",
            "9000",
            "--wait",
        ])
        .trim()
        .to_string();
    let v = d.wait_state(&id, "running");
    for p in v["ports"].as_array().unwrap() {
        assert_eq!(
            p["local"], true,
            "a host without open ports maps nothing publicly: {v:#}"
        );
    }
    let port = proxy_port(&v);
    let out = ssh(
        port,
        &key.private,
        &kh,
        &[],
        "echo through the proxy; echo $BERTH_INSTANCE_ID; echo \"[$BERTH_TCP_PORT_22]\"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!("through the proxy\n{id}\n[]\n"),
        "no BERTH_TCP_PORT_ variable for a port nobody can reach directly"
    );

    // scp both ways and sftp.
    let local = d.dir.join("f.txt");
    std::fs::write(&local, "via proxy\n").unwrap();
    let p = port.to_string();
    let khopt = format!("UserKnownHostsFile={}", kh.display());
    let opts = [
        "-P",
        &p,
        "-i",
        key.private.to_str().unwrap(),
        "-o",
        "BatchMode=yes",
        "-o",
        &khopt,
    ];
    let o = Command::new("scp")
        .args(opts)
        .args([local.to_str().unwrap(), "root@127.0.0.1:/tmp/f.txt"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let back = d.dir.join("back.txt");
    let o = Command::new("scp")
        .args(opts)
        .args(["root@127.0.0.1:/tmp/f.txt", back.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&back).unwrap(), "via proxy\n");
    std::fs::write(d.dir.join("b"), "ls /tmp\n").unwrap();
    let o = Command::new("sftp")
        .args(opts)
        .arg("-b")
        .arg(d.dir.join("b"))
        .arg("root@127.0.0.1")
        .output()
        .unwrap();
    assert!(stdout(&o).contains("f.txt"), "{}", stderr(&o));
    // ssh -L to a port inside the container (its own sshd, which greets).
    let fwd = free_port();
    let mut tunnel = Command::new("ssh")
        .args([
            "-N",
            "-L",
            &format!("127.0.0.1:{fwd}:127.0.0.1:22"),
            "-p",
            &p,
            "-i",
            key.private.to_str().unwrap(),
        ])
        .args([
            "-o",
            "BatchMode=yes",
            "-o",
            &khopt,
            "-o",
            "ExitOnForwardFailure=yes",
            "root@127.0.0.1",
        ])
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        use std::io::Read;
        let got = std::net::TcpStream::connect(("127.0.0.1", fwd))
            .ok()
            .and_then(|mut s| {
                s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
                let mut b = [0u8; 8];
                s.read_exact(&mut b).ok()?;
                Some(b)
            });
        if got.as_ref().map(|b| &b[..]) == Some(&b"SSH-2.0-"[..]) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "ssh -L through the proxy never forwarded"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = tunnel.kill();
    let _ = tunnel.wait();

    // berth ssh falls back to the proxy (there is no direct path here).
    let o = d.cli(&[
        "ssh",
        &id,
        "-i",
        key.private.to_str().unwrap(),
        "--",
        "echo",
        "fallback",
    ]);
    assert_eq!(stdout(&o), "fallback\n", "{}", stderr(&o));
    let o = d.cli(&[
        "ssh",
        &id,
        "--direct",
        "-i",
        key.private.to_str().unwrap(),
        "--",
        "true",
    ]);
    assert!(
        !o.status.success() && stderr(&o).contains("direct"),
        "{}",
        stderr(&o)
    );

    // Restart the proxy while the instance runs: the agent reconnects and the same proxy
    // port works again within 5 s.
    d.stop_proxy();
    let restarted = Instant::now();
    d.start_proxy();
    loop {
        if ssh(port, &key.private, &kh, &["-o", "ConnectTimeout=2"], "true")
            .status
            .success()
        {
            break;
        }
        assert!(
            restarted.elapsed() < Duration::from_secs(5),
            "the proxy port did not work again within 5 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(proxy_port(&d.show(&id)), port, "the proxy port is kept");

    // Kill the tunnel (the agent stops; the container keeps running): new proxy connections
    // fail, and the HTTPS front says why.
    d.stop_agent("nat");
    let o = ssh(port, &key.private, &kh, &["-o", "ConnectTimeout=5"], "true");
    assert!(!o.status.success());
    let ca = d.dir.join("ca.crt");
    d.ok(&["cert", "--out", ca.to_str().unwrap()]);
    let link = v["http_urls"][0]["url"].as_str().unwrap();
    let name = format!("i{id}-9000.berth.localhost");
    let out = Command::new("curl")
        .args([
            "-sS",
            "--cacert",
            ca.to_str().unwrap(),
            "--resolve",
            &format!("{name}:{}:127.0.0.1", d.https_port.unwrap()),
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
            "-L",
            "-c",
            "/dev/null",
            "-b",
            "/dev/null",
        ])
        .arg(link)
        .output()
        .expect("curl is needed");
    let text = stdout(&out);
    assert!(
        text.ends_with("502") && text.contains("tunnel"),
        "HTTPS with the tunnel down: {text} {}",
        stderr(&out)
    );
    assert!(
        text.contains(&format!("i{id}")) || text.contains("nat"),
        "the error names what is down: {text}"
    );
}

/// A client for the proxy's HTTPS front: trusts only berth's CA, resolves the instance
/// names to the proxy on loopback.
fn proxy_client(ca_pem: &[u8], names: &[String], https_port: u16) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca_pem).unwrap()])
        .redirect(reqwest::redirect::Policy::none());
    for n in names {
        b = b.resolve(n, std::net::SocketAddr::from(([127, 0, 0, 1], https_port)));
    }
    b.build().unwrap()
}

/// On a host with open ports both paths work; http ports need the access token; a route
/// reaches only its own instance's exposed ports; unknown names say nothing.
#[tokio::test(flavor = "multi_thread")]
async fn https_through_the_proxy_and_isolation() {
    require_docker_and_images(&[SSH_IMAGE]);
    let b = Berth::up();
    let (key, kh) = b.account_key();
    let ca = reqwest::get(format!("{}/api/v1/ca.crt", b.url))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec();

    // An instance serving HTTP on 7860, marked http, and an ssh instance with its own http port.
    let web = b.create(&[
        BUSYBOX,
        "-p",
        "7860/http",
        "--entrypoint",
        "/bin/sh",
        "--wait",
        "--args",
        "-c",
        "echo 'hello from 7860' > /tmp/index.html && exec httpd -f -p 7860 -h /tmp",
    ]);
    let other = b.create(&[SSH_IMAGE, "--ssh", "-p", "9000/http", "--wait"]);
    let v = b.wait_state(web, "running");
    let o = b.wait_state(other, "running");

    // Both paths to sshd: direct and proxy, with the same host key.
    let direct = ssh(ssh_port(&o), &key.private, &kh, &[], "echo direct");
    assert_eq!(stdout(&direct), "direct\n", "{}", stderr(&direct));
    let via = ssh(
        proxy_port(&o),
        &key.private,
        &kh,
        &["-o", "StrictHostKeyChecking=yes"],
        "echo proxy",
    );
    assert_eq!(
        stdout(&via),
        "proxy\n",
        "same host key on both paths: {}",
        stderr(&via)
    );
    assert!(
        v["proxy_ssh"].is_null(),
        "entrypoint instances get no SSH proxy port: {v:#}"
    );

    let url = v["http_urls"][0]["url"].as_str().unwrap().to_string();
    let host = format!("i{web}-7860.berth.localhost");
    assert!(
        url.starts_with(&format!("https://{host}:{}/?berth_token=", b.proxy_https)),
        "{url}"
    );
    let names = vec![
        host.clone(),
        format!("i{web}-9000.berth.localhost"),
        format!("i{web}-22.berth.localhost"),
        format!("i{web}-7878.berth.localhost"),
        format!("i{other}-7860.berth.localhost"),
        format!("i{other}-9000.berth.localhost"),
        "i999999-7860.berth.localhost".to_string(),
        "nonsense.berth.localhost".to_string(),
    ];
    let http = proxy_client(&ca, &names, b.proxy_https);
    let base = format!("https://{host}:{}", b.proxy_https);
    // The onstart's web server takes a moment.
    let deadline = Instant::now() + Duration::from_secs(30);
    // Without the token: refused.
    let r = http.get(format!("{base}/index.html")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 404);
    // The link with the token sets a cookie and redirects.
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 302, "{:?}", r.headers());
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    assert!(cookie.starts_with(&format!("berth_i{web}=")), "{cookie}");
    loop {
        let r = http
            .get(format!("{base}/index.html"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        if r.status().as_u16() == 200 {
            assert_eq!(r.text().await.unwrap(), "hello from 7860\n");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the http port never answered through the proxy: {}",
            r.status()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The cookie of one instance does not open another's port.
    let r = http
        .get(format!(
            "https://i{other}-9000.berth.localhost:{}/",
            b.proxy_https
        ))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);

    // Isolation: another instance's port under this instance's name, unexposed ports, the
    // agent's or server's ports, unknown instances and names: all the same 404.
    let mut bodies = Vec::new();
    for name in names[1..]
        .iter()
        .filter(|n| !n.starts_with(&format!("i{other}-9000")))
    {
        let r = http
            .get(format!("https://{name}:{}/", b.proxy_https))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 404, "{name}");
        bodies.push(r.text().await.unwrap());
    }
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "404s must not differ: {bodies:?}"
    );
}

/// A Jupyter kernel evaluates 1+1 over its WebSocket through the proxy's HTTPS name, with a
/// client that trusts only berth's CA.
#[tokio::test(flavor = "multi_thread")]
async fn jupyter_kernel_through_the_proxy() {
    require_docker_and_images(&["berth-test/jupyter"]);
    let b = Berth::up();
    let ca = reqwest::get(format!("{}/api/v1/ca.crt", b.url))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec();
    let id = b.create(&["berth-test/jupyter", "--jupyter", "--wait"]);
    let v = b.wait_state(id, "running");
    let url = v["proxy_jupyter_url"].as_str().unwrap().to_string();
    let token = v["jupyter_token"].as_str().unwrap().to_string();
    let host = format!("i{id}-8080.berth.localhost");
    assert_eq!(
        url,
        format!("https://{host}:{}/tree?token={token}", b.proxy_https)
    );
    let http = proxy_client(&ca, std::slice::from_ref(&host), b.proxy_https);
    let base = format!("https://{host}:{}", b.proxy_https);
    assert_eq!(http.get(&url).send().await.unwrap().status().as_u16(), 200);
    assert_eq!(
        http.get(format!("{base}/api/kernels?token=wrong"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        403
    );
    assert_eq!(
        kernel::one_plus_one(&ca, &host, b.proxy_https, &token).await,
        "2"
    );
}

/// An ssh session idle for 2 minutes through the proxy stays open.
#[test]
fn idle_ssh_session_through_the_proxy_stays_open() {
    require_docker_and_images(&[SSH_IMAGE]);
    let b = Berth::up();
    let key = KeyPair::new(&b.dir, "k");
    b.ok(&["keys", "add", key.public.to_str().unwrap()]);
    let id = b.create(&[SSH_IMAGE, "--ssh", "--wait"]);
    let v = b.wait_state(id, "running");
    let kh = b.dir.join("known_hosts");
    // No keepalives from the client: only the path's own idle behaviour is tested.
    let o = ssh(
        proxy_port(&v),
        &key.private,
        &kh,
        &["-o", "ServerAliveInterval=0"],
        "sleep 125; echo still here",
    );
    assert_eq!(stdout(&o), "still here\n", "{}", stderr(&o));
}

/// On a host with open ports, losing the proxy (and so the tunnel) breaks only the proxy
/// path: direct ssh keeps working, and `berth ssh` uses it.
#[test]
fn direct_keeps_working_when_the_tunnel_is_gone() {
    require_docker_and_images(&[SSH_IMAGE]);
    let mut d = deployment::Deployment::start(deployment::Options {
        db: None,
        proxy: true,
    });
    let (first, last) = port_block();
    d.start_agent(
        "open",
        "127.0.0.1",
        &["--ports", &format!("{first}-{last}")],
    );
    let (key, kh) = d.account_key();
    let id = d
        .ok(&["create", SSH_IMAGE, "--ssh", "--wait"])
        .trim()
        .to_string();
    let v = d.wait_state(&id, "running");
    let (direct, proxied) = (ssh_port(&v), proxy_port(&v));
    assert_eq!(
        stdout(&ssh(proxied, &key.private, &kh, &[], "echo p")),
        "p\n"
    );

    d.stop_proxy();
    let o = ssh(
        proxied,
        &key.private,
        &kh,
        &["-o", "ConnectTimeout=3"],
        "true",
    );
    assert!(
        !o.status.success(),
        "the proxy path must fail without the proxy"
    );
    assert_eq!(
        stdout(&ssh(direct, &key.private, &kh, &[], "echo d")),
        "d\n"
    );
    let o = d.cli(&[
        "ssh",
        &id,
        "-i",
        key.private.to_str().unwrap(),
        "--",
        "echo",
        "auto",
    ]);
    assert_eq!(stdout(&o), "auto\n", "{}", stderr(&o));
    let o = d.cli(&[
        "ssh",
        &id,
        "--proxy",
        "-i",
        key.private.to_str().unwrap(),
        "-o",
        "ConnectTimeout=3",
        "--",
        "true",
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("nothing greets at the proxy endpoint"),
        "berth ssh --proxy says why it fails: {}",
        stderr(&o)
    );
}

/// This machine's address on its default route (not loopback).
fn this_machines_address() -> String {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    // No packet is sent: connecting a UDP socket only picks the route and source address.
    s.connect("192.0.2.1:9")
        .expect("this test needs a default route (any non-loopback address)");
    let ip = s.local_addr().unwrap().ip();
    assert!(!ip.is_loopback(), "no non-loopback address: {ip}");
    ip.to_string()
}

/// `berth up --public-ip IP`: users are told to reach the proxy at IP, and they can.
#[test]
fn berth_up_with_a_public_ip_serves_its_proxy_there() {
    require_docker_and_images(&[SSH_IMAGE]);
    let ip = this_machines_address();
    let b = Berth::up_with(&["--public-ip", &ip]);
    let (key, kh) = b.account_key();
    let id = b.create(&[SSH_IMAGE, "--ssh", "--wait"]);
    let v = b.wait_state(id, "running");
    let shown = v["proxy_ssh"].as_str().unwrap().to_string();
    assert!(shown.starts_with(&format!("{ip}:")), "{v:#}");
    let port = proxy_port(&v);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let o = ssh_at(
            &ip,
            port,
            &key.private,
            &kh,
            &[],
            "echo via the proxy at the public IP",
        );
        if o.status.success() {
            assert_eq!(stdout(&o), "via the proxy at the public IP\n");
            break;
        }
        assert!(Instant::now() < deadline, "ssh to {shown}: {}", stderr(&o));
        std::thread::sleep(Duration::from_millis(200));
    }
    let o = ssh_at(&ip, ssh_port(&v), &key.private, &kh, &[], "echo direct");
    assert_eq!(stdout(&o), "direct\n", "{}", stderr(&o));
}

/// The server names another proxy host after a restart (and the proxy's certificate names
/// it): agents move their tunnels by themselves, no agent restart.
#[test]
fn agents_follow_the_proxy_the_server_names() {
    require_docker_and_images(&[SSH_IMAGE]);
    let mut d = deployment::Deployment::start(deployment::Options {
        db: None,
        proxy: true,
    });
    d.start_agent("nat", "127.0.0.1", &[]);
    let (key, kh) = d.account_key();
    let id = d
        .ok(&["create", SSH_IMAGE, "--ssh", "--wait"])
        .trim()
        .to_string();
    let v = d.wait_state(&id, "running");
    let port = proxy_port(&v);
    let o = ssh(port, &key.private, &kh, &[], "true");
    assert!(o.status.success(), "{}", stderr(&o));

    d.stop_proxy();
    d.stop_server();
    d.set_proxy_host("localhost");
    d.start_server();
    d.start_proxy();
    assert!(
        d.show(&id)["proxy_ssh"]
            .as_str()
            .unwrap()
            .starts_with("localhost:"),
        "{:#}",
        d.show(&id)
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let o = ssh_at(
            "localhost",
            port,
            &key.private,
            &kh,
            &["-o", "ConnectTimeout=2"],
            "echo moved",
        );
        if o.status.success() {
            assert_eq!(stdout(&o), "moved\n");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the agent did not move its tunnel to the new proxy: {}",
            stderr(&o)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
