//! Cluster DNS in box mode with real guests: a guest resolves a Service by its short name, another VMI by
//! `hostname.subdomain`, and names outside the cluster through the node's upstream resolver.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/guest.rs"]
mod guest;
#[path = "common/node.rs"]
mod node;

use guest::{in_guest, running, vmi};
use node::{NodeBox, eventually};

/// A resolver on loopback standing for the host's: `outside.example` is 192.0.2.80, every other name NXDOMAIN.
fn fake_upstream() -> std::net::SocketAddr {
    use hickory_proto::op::{Message, MessageType, ResponseCode};
    use hickory_proto::rr::{RData, Record, rdata::A};
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = sock.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, peer)) = sock.recv_from(&mut buf) {
            let Ok(q) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut r = q.clone();
            r.set_message_type(MessageType::Response);
            let Some(query) = q.queries().first() else {
                continue;
            };
            if query.name().to_ascii().eq_ignore_ascii_case("outside.example.") {
                if query.query_type() == hickory_proto::rr::RecordType::A {
                    r.add_answer(Record::from_rdata(
                        query.name().clone(),
                        60,
                        RData::A(A([192, 0, 2, 80].into())),
                    ));
                }
            } else {
                r.set_response_code(ResponseCode::NXDomain);
            }
            let _ = sock.send_to(&r.to_vec().unwrap(), peer);
        }
    });
    addr
}

/// Cluster DNS: a guest finds a Service by its short name (the search list its DHCP lease carried), another VMI by
/// `hostname.subdomain` (a headless Service named like the subdomain), and names outside the cluster through the
/// node's upstream resolver — and connects to what it found.
#[test]
fn guests_resolve_services_and_each_other_by_name() {
    let upstream = fake_upstream().to_string();
    let b = NodeBox::start(43, &["--dns-upstream", &upstream]);
    let mut web: serde_json::Value = serde_json::from_str(&vmi("dns-web", "bridge")).unwrap();
    web["metadata"]["labels"] = serde_json::json!({"app": "dns-web"});
    web["spec"]["hostname"] = serde_json::json!("web");
    web["spec"]["subdomain"] = serde_json::json!("grp");
    b.kubectl_in(&["apply", "-f", "-"], Some(&web.to_string()));
    b.kubectl_in(&["apply", "-f", "-"], Some(&vmi("dns-client", "masquerade")));
    let services = r#"
apiVersion: v1
kind: Service
metadata: {name: grp}
spec: {clusterIP: None, selector: {app: dns-web}, ports: [{name: http, port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: websvc}
spec: {selector: {app: dns-web}, ports: [{port: 8080, targetPort: 80}]}
"#;
    b.kubectl_in(&["apply", "-f", "-"], Some(services));
    let (_, web_pod, web_ip) = running(&b, "dns-web");
    let (client, client_pod, _) = running(&b, "dns-client");

    // The pods' resolv.conf, as the kubelet writes it: the node's DNS server and the namespace's search list.
    let resolv =
        std::fs::read_to_string(b.dir().join(format!("pods/{client_pod}/rootfs/etc/resolv.conf"))).unwrap();
    assert_eq!(
        resolv,
        "search default.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.251.43.1\noptions ndots:5\n"
    );
    assert!(
        std::fs::read_to_string(b.dir().join(format!("pods/{web_pod}/rootfs/etc/resolv.conf")))
            .unwrap()
            .contains("nameserver 10.251.43.1")
    );
    eventually("the headless Service names the VMI", 60, || {
        b.get("endpoints grp", "{.subsets[0].addresses[0].hostname}") == "web"
    });
    in_guest(
        &b,
        &client,
        "wget -qO- http://websvc:8080/ | sed 's/^/BY-SERVICE: /'",
        "BY-SERVICE: hello from dns-web-guest",
        60,
    );
    in_guest(
        &b,
        &client,
        "wget -qO- http://web.grp/ | sed 's/^/BY-HOSTNAME: /'",
        "BY-HOSTNAME: hello from dns-web-guest",
        60,
    );
    in_guest(
        &b,
        &client,
        &format!("nslookup web.grp.default.svc.cluster.local | grep -q '{web_ip}' && echo FQDN''-OK"),
        "FQDN-OK",
        60,
    );
    in_guest(
        &b,
        &client,
        "nslookup outside.example | grep -q 192.0.2.80 && echo UPSTREAM''-OK",
        "UPSTREAM-OK",
        60,
    );
    b.kubectl(&["delete", "vmi", "--all", "--wait=true", "--timeout=90s"]);
}
