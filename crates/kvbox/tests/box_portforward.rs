//! `virtctl port-forward`, `ssh` and `scp`, and Services from `virtctl expose`, against box mode as a user types
//! them, reaching the **guest**: a VM on the pod network with the masquerade binding and `ports: [80, 22]`, whose
//! guest serves HTTP on 80 and SSH on 22 (dropbear, the key from cloud-init). virt-api dials the VMI's address (the
//! pod IP) and the pod's NAT carries 80 and 22 to the guest; every other port stays the pod's own, which an echo
//! server in the pod's network namespace shows (TCP and UDP port-forwarding, and that 23 is not forwarded).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/node.rs"]
mod node;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use node::{NodeBox, eventually};

fn virtctl_bin() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_BIN_EXE_kvbox")).with_file_name("virtctl");
    assert!(p.exists(), "{} missing: build the workspace", p.display());
    p
}

fn virtctl_cmd(b: &NodeBox, kubeconfig: &str) -> Command {
    let mut c = Command::new(virtctl_bin());
    c.env("KUBECONFIG", b.dir().join(kubeconfig))
        .env("HOME", b.dir().join("home"));
    c
}

fn virtctl(b: &NodeBox, kubeconfig: &str, args: &[&str]) -> (i32, String, String) {
    let out = virtctl_cmd(b, kubeconfig).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Kills the process (and waits for it) when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const ECHO: &str = r#"
import socket, sys, threading
def serve(c):
    while True:
        d = c.recv(4096)
        if not d:
            break
        c.sendall(b"echo:" + d)
    c.close()
def tcp():
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", 7777))
    s.listen()
    while True:
        c, _ = s.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind(("0.0.0.0", 7778))
threading.Thread(target=tcp, daemon=True).start()
while True:
    d, a = u.recvfrom(4096)
    u.sendto(b"udp:" + d, a)
"#;

/// Runs `argv` in the network namespace of the pod with `pod_uid`.
fn in_pod(pod_uid: &str, argv: &[&str]) -> Killed {
    Killed(
        Command::new("ip")
            .args(["netns", "exec", &format!("kvbox-{pod_uid}")])
            .args(argv)
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

fn listening(addr: &str) -> bool {
    std::net::TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_millis(500)).is_ok()
}

/// Starts `virtctl port-forward ARGS` and returns it with the local ports it printed, in order.
fn forward(b: &NodeBox, args: &[&str], count: usize) -> (Killed, Vec<u16>) {
    let mut child = virtctl_cmd(b, "kubeconfig.yaml")
        .arg("port-forward")
        .args(args)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut ports = Vec::new();
    while ports.len() < count {
        let line = lines.next().expect("port-forward ended").unwrap();
        // "forwarding tcp 127.0.0.1:PORT to REMOTE"
        let local = line.split_whitespace().nth(2).unwrap();
        ports.push(local.rsplit(':').next().unwrap().parse().unwrap());
    }
    std::thread::spawn(move || for _ in lines {});
    (Killed(child), ports)
}

/// The test VM on the masquerade binding forwarding 80 and 22, its guest holding `key` for root.
fn masquerade_vm(key: &str) -> String {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/vm-testguest.yaml"),
    )
    .unwrap()
    .replace(
        "hostname: testvm-guest",
        &format!("hostname: pf-guest\n            ssh_authorized_keys:\n            - {key}"),
    )
    .replace("name: testvm", "name: pf");
    let mut vm: serde_json::Value = serde_norway::from_str(&text).unwrap();
    let spec = &mut vm["spec"]["template"]["spec"];
    spec["domain"]["devices"]["interfaces"] = serde_json::json!([{"name": "default", "masquerade": {},
        "ports": [{"name": "http", "port": 80}, {"port": 22, "protocol": "TCP"}]}]);
    spec["networks"] = serde_json::json!([{"name": "default", "pod": {}}]);
    vm.to_string()
}

/// An HTTP GET of `/` at `addr`: the body, if one came.
fn http_get(addr: &str) -> Option<String> {
    let mut c = std::net::TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(2)).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    c.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
    let mut text = String::new();
    c.read_to_string(&mut text).ok()?;
    text.split_once("\r\n\r\n").map(|(_, body)| body.to_string())
}

#[test]
fn port_forward_services_ssh_and_scp_reach_the_guest() {
    let b = NodeBox::start(31, &[]);
    let keys = b.dir().join("sshkeys");
    std::fs::create_dir_all(&keys).unwrap();
    let id = keys.join("id");
    let keygen = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&id)
        .output()
        .unwrap();
    assert!(keygen.status.success());
    let public = std::fs::read_to_string(id.with_extension("pub")).unwrap();
    b.kubectl_in(&["apply", "-f", "-"], Some(&masquerade_vm(public.trim())));
    eventually("the VMI running with an address", 120, || {
        !b.get("vmi pf", "{.status.interfaces[0].ipAddress}").is_empty()
            && b.get("vmi pf", "{.status.phase}") == "Running"
    });
    let ip = b.get("vmi pf", "{.status.interfaces[0].ipAddress}");
    let vmi_uid = b.get("vmi pf", "{.metadata.uid}");
    let pod_uid = b.get(
        &format!("pods -l kubevirt.io/created-by={vmi_uid}"),
        "{.items[0].metadata.uid}",
    );
    // The guest sits behind the pod's NAT: 10.0.2.2 by DHCP, and its HTTP server answers on the pod IP's port 80.
    eventually("the guest's DHCP address", 120, || {
        b.serial(&vmi_uid).contains("eth0: 10.0.2.2")
    });
    eventually("the guest's HTTP server through the NAT", 60, || {
        http_get(&format!("{ip}:80")).is_some_and(|body| body.trim() == "hello from pf-guest")
    });
    let _echo = in_pod(&pod_uid, &["python3", "-c", ECHO]);
    eventually("the echo server listening", 30, || {
        listening(&format!("{ip}:7777"))
    });
    // Port 23 is not in `ports`: not forwarded, and nothing in the pod listens there.
    assert!(!listening(&format!("{ip}:23")));

    // The guest's port 80 through a local port.
    let (_web, web) = forward(&b, &["vmi/pf", "0:80"], 1);
    eventually("the guest's page through port-forward", 60, || {
        http_get(&format!("127.0.0.1:{}", web[0])).is_some_and(|body| body.trim() == "hello from pf-guest")
    });

    // TCP through a local port (0: any free one), for a VMI and a VM.
    let (_fwd, ports) = forward(&b, &["vmi/pf", "0:7777", "udp/0:7778"], 2);
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", ports[0])).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    conn.write_all(b"hello").unwrap();
    let mut got = [0u8; 10];
    conn.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"echo:hello");
    // A second connection gets its own tunnel.
    let mut again = std::net::TcpStream::connect(("127.0.0.1", ports[0])).unwrap();
    again.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    again.write_all(b"again").unwrap();
    again.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"echo:again");
    drop((conn, again));

    // UDP: a datagram each way.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut reply = [0u8; 64];
    let mut n = 0;
    eventually("a UDP reply", 30, || {
        udp.send_to(b"ping", ("127.0.0.1", ports[1])).unwrap();
        match udp.recv(&mut reply) {
            Ok(k) => {
                n = k;
                true
            }
            Err(_) => false,
        }
    });
    assert_eq!(&reply[..n], b"udp:ping");

    // --stdio, on the VM (its VMI is found through the owner).
    let mut stdio = virtctl_cmd(&b, "kubeconfig.yaml")
        .args(["port-forward", "--stdio=true", "vm/pf/default", "7777"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    stdio.stdin.as_mut().unwrap().write_all(b"line\n").unwrap();
    let mut out = String::new();
    BufReader::new(stdio.stdout.take().unwrap())
        .read_line(&mut out)
        .unwrap();
    assert_eq!(out, "echo:line\n");
    drop(stdio.stdin.take());
    assert!(stdio.wait().unwrap().success());

    // Refusals: upstream's messages, a non-zero exit.
    let refuse = |kc: &str, args: &[&str], want: &str| {
        let (code, _, err) = virtctl(&b, kc, args);
        assert_eq!(code, 1, "{args:?} should fail");
        assert!(err.contains(want), "{args:?}: {err}");
    };
    refuse(
        "kubeconfig.yaml",
        &["port-forward", "--stdio", "vmi/nope", "22"],
        "virtualmachineinstance.kubevirt.io \"nope\" not found",
    );
    refuse(
        "kubeconfig.yaml",
        &["port-forward", "--stdio", "vmi/pf", "1"],
        "dialing VM",
    );
    refuse(
        "kubeconfig.yaml",
        &["port-forward", "pod/pf", "1"],
        "unsupported resource type 'pod'",
    );
    refuse(
        "kubeconfig-view.yaml",
        &["port-forward", "--stdio", "vmi/pf", "7777"],
        "forbidden",
    );
    let (code, _, err) = virtctl(&b, "kubeconfig.yaml", &["pause", "vmi", "pf"]);
    assert_eq!(code, 0, "{err}");
    eventually("the Paused condition", 60, || {
        b.get("vmi pf", "{.status.conditions[?(@.type==\"Paused\")].status}") == "True"
    });
    refuse(
        "kubeconfig.yaml",
        &["port-forward", "--stdio", "vmi/pf", "7777"],
        "VMI is paused",
    );
    let (code, _, err) = virtctl(&b, "kubeconfig.yaml", &["unpause", "vmi", "pf"]);
    assert_eq!(code, 0, "{err}");
    eventually("unpaused", 60, || {
        b.get("vmi pf", "{.status.conditions[?(@.type==\"Paused\")].status}")
            .is_empty()
    });

    // Services from `virtctl expose`: the endpoints controller finds the VMI's pod, the service proxy carries a
    // ClusterIP (nftables DNAT) and a NodePort (a listener on the node address) to it.
    let (code, out, err) = virtctl(
        &b,
        "kubeconfig.yaml",
        &[
            "expose",
            "vmi",
            "pf",
            "--name",
            "pf-web",
            "--port",
            "8080",
            "--target-port",
            "80",
        ],
    );
    assert_eq!(
        (code, out.trim()),
        (0, "Service pf-web successfully created for vmi pf"),
        "{err}"
    );
    let (code, _, err) = virtctl(
        &b,
        "kubeconfig.yaml",
        &[
            "expose", "vmi", "pf", "--name", "pf-np", "--type", "NodePort", "--port", "80",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let cluster_ip = b.get("service pf-web", "{.spec.clusterIP}");
    assert!(
        cluster_ip.starts_with("10.252.31."),
        "a cluster IP from the box's range: {cluster_ip}"
    );
    eventually("the endpoints of pf-web", 30, || {
        b.get(
            "endpoints pf-web",
            "{.subsets[0].addresses[0].ip}:{.subsets[0].ports[0].port}",
        ) == format!("{ip}:80")
    });
    let guest_page = |addr: String| http_get(&addr).is_some_and(|body| body.trim() == "hello from pf-guest");
    eventually("the cluster IP reaching the guest", 30, || {
        guest_page(format!("{cluster_ip}:8080"))
    });
    let node_port = b.get("service pf-np", "{.spec.ports[0].nodePort}");
    eventually("the node port reaching the guest", 30, || {
        guest_page(format!("127.0.0.1:{node_port}"))
    });
    // A Service that selects nothing refuses connections at once (kube-proxy's reject).
    b.kubectl_in(
        &["apply", "-f", "-"],
        Some(
            r#"{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "nobody"},
            "spec": {"selector": {"app": "nothing"}, "ports": [{"port": 81}]}}"#,
        ),
    );
    let nobody = b.get("service nobody", "{.spec.clusterIP}");
    eventually("a refusal from the Service without endpoints", 30, || {
        matches!(
            std::net::TcpStream::connect_timeout(&format!("{nobody}:81").parse().unwrap(), Duration::from_secs(2)),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
        )
    });
    b.kubectl(&["delete", "service", "nobody"]);

    // kubectl's columns.
    let table = b.kubectl(&["get", "service", "pf-np"]);
    assert!(
        table.contains("PORT(S)") && table.contains(&format!("80:{node_port}/TCP")),
        "{table}"
    );
    let table = b.kubectl(&["get", "endpoints", "pf-web"]);
    assert!(
        table.contains("ENDPOINTS") && table.contains(&format!("{ip}:80")),
        "{table}"
    );
    b.kubectl(&["delete", "service", "pf-web", "pf-np"]);
    eventually("the rules and the listener gone", 30, || {
        let rules = Command::new("nft")
            .args(["list", "table", "ip", "kvbox-svc-kvbt31"])
            .output()
            .unwrap();
        !String::from_utf8_lossy(&rules.stdout).contains(&cluster_ip)
            && std::net::TcpStream::connect(("127.0.0.1", node_port.parse::<u16>().unwrap())).is_err()
    });

    // ssh and scp: the local OpenSSH client with virtctl as its ProxyCommand, to the guest's dropbear (port 22 is
    // forwarded), root's key from cloud-init.
    eventually("the guest's sshd through the NAT", 60, || {
        listening(&format!("{ip}:22"))
    });
    let id_s = id.display().to_string();
    let quiet = [
        "-t",
        "-o StrictHostKeyChecking=no",
        "-t",
        "-o UserKnownHostsFile=/dev/null",
        "-t",
        "-o LogLevel=ERROR",
    ];
    let mut ssh: Vec<&str> = vec!["ssh", "root@vmi/pf", "-i", &id_s];
    ssh.extend(quiet);
    ssh.extend(["-c", "echo ssh-$((6*7)) $(hostname)"]);
    let (code, out, err) = virtctl(&b, "kubeconfig.yaml", &ssh);
    assert_eq!(code, 0, "virtctl ssh: {err}");
    assert_eq!(out.trim(), "ssh-42 pf-guest", "the guest answered, not the pod");

    let local = b.dir().join("upload.txt");
    std::fs::write(&local, "copied through the tunnel\n").unwrap();
    let dest = "root@vm/pf/default:/tmp/remote.txt".to_string();
    let local_s = local.display().to_string();
    let mut scp: Vec<&str> = vec!["scp", "-i", &id_s];
    scp.extend(quiet);
    scp.extend(["-t", "-O", &local_s, &dest]);
    let (code, _, err) = virtctl(&b, "kubeconfig.yaml", &scp);
    assert_eq!(code, 0, "virtctl scp: {err}");
    let mut cat: Vec<&str> = vec!["ssh", "root@vmi/pf", "-i", &id_s];
    cat.extend(quiet);
    cat.extend(["-c", "cat /tmp/remote.txt"]);
    let (code, out, err) = virtctl(&b, "kubeconfig.yaml", &cat);
    assert_eq!((code, out.as_str()), (0, "copied through the tunnel\n"), "{err}");
    let (code, _, err) = virtctl(&b, "kubeconfig.yaml", &["scp", "a", "b"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("none of the two provided locations seems to be a remote location"),
        "{err}"
    );
}
