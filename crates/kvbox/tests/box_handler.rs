//! The handler's TLS endpoint in box mode, called the way virt-api calls it: the node's
//! `handler.kubevirt-rs.io/endpoint` annotation, the client certificate from `kubevirt/kubevirt-virt-handler-certs`
//! and the KubeVirt CA bundle. The console reaches the guest's shell, a second console takes over the first,
//! VNC speaks RFB, guest agent data comes back in upstream's shapes, pause/unpause reach the VMI status, and callers
//! without virt-api's certificate are refused.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/node.rs"]
mod node;

use std::time::{Duration, Instant};

use base64::Engine as _;
use futures_util::{SinkExt as _, StreamExt as _};
use handler::certs::Identity;
use handler::client::{HandlerClient, Tls};
use node::{NodeBox, eventually};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

const BASE: &str = "/v1/namespaces/default/virtualmachineinstances/testvm";

fn b64(s: &str) -> String {
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(s.trim())
            .unwrap(),
    )
    .unwrap()
}

/// The CA bundle and the identity in Secret `secret` of the `kubevirt` namespace.
fn identity(b: &NodeBox, secret: &str) -> Identity {
    let get = |what: &str, path: &str| b.get(&format!("{what} -n kubevirt"), path);
    Identity {
        ca_bundle: get("configmap kubevirt-ca", "{.data.ca-bundle}"),
        cert: b64(&get(&format!("secret {secret}"), "{.data.tls\\.crt}")),
        key: b64(&get(&format!("secret {secret}"), "{.data.tls\\.key}")),
    }
}

/// Reads binary frames until their text contains `want`; panics after `secs`.
async fn read_until(ws: &mut WebSocketStream<Tls>, want: &str, secs: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut seen = String::new();
    while !seen.contains(want) {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, ws.next()).await {
            Ok(Some(Ok(Message::Binary(b)))) => seen.push_str(&String::from_utf8_lossy(&b)),
            Ok(Some(Ok(Message::Close(c)))) => panic!("closed ({c:?}) before {want:?}; saw {seen:?}"),
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(e))) => panic!("{e} before {want:?}; saw {seen:?}"),
            Ok(None) => panic!("ended before {want:?}; saw {seen:?}"),
            Err(_) => panic!("no {want:?} within {secs} s; saw {seen:?}"),
        }
    }
    seen
}

async fn type_line(ws: &mut WebSocketStream<Tls>, line: &str) {
    ws.send(Message::Binary(format!("{line}\n").into_bytes().into()))
        .await
        .unwrap();
}

/// Waits for the next frame that is not payload: a Close (returns true) or a Ping (false).
async fn next_control(ws: &mut WebSocketStream<Tls>, secs: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, ws.next()).await {
            Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => return true,
            Ok(Some(Ok(Message::Ping(_)))) => return false,
            Ok(Some(Ok(_))) => {}
            Err(_) => panic!("no control frame within {secs} s"),
        }
    }
}

fn json(a: &handler::client::Answer) -> serde_json::Value {
    serde_json::from_slice(&a.body).unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&a.body)))
}

#[test]
fn virt_api_reaches_console_vnc_guest_agent_and_lifecycle_through_the_handler() {
    let b = NodeBox::start(24, &[]);
    let vm = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/vm-testguest.yaml"),
    )
    .unwrap();
    b.kubectl_in(&["apply", "-f", "-"], Some(&vm));
    eventually("the VMI Running with its guest agent", 150, || {
        b.get(
            "vmi testvm",
            r#"{.status.conditions[?(@.type=="AgentConnected")].status}"#,
        ) == "True"
    });
    let endpoint = b.get(
        "node box0",
        "{.metadata.annotations.handler\\.kubevirt-rs\\.io/endpoint}",
    );
    assert!(endpoint.starts_with("127.0.0.1:"), "{endpoint:?}");
    let id = identity(&b, "kubevirt-virt-handler-certs");
    let c = HandlerClient::new(&id).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // Guest agent data in upstream's shapes.
        let info = c
            .request(&endpoint, http::Method::GET, &format!("{BASE}/guestosinfo"), None)
            .await
            .unwrap();
        assert_eq!(info.status, 200, "{}", String::from_utf8_lossy(&info.body));
        let info = json(&info);
        assert_eq!(info["hostname"], "testvm-guest", "{info}");
        assert!(
            info["guestAgentVersion"].as_str().is_some_and(|v| !v.is_empty()),
            "{info}"
        );
        assert!(
            info["os"]["kernelRelease"]
                .as_str()
                .is_some_and(|v| !v.is_empty()),
            "{info}"
        );
        assert!(
            info["supportedCommands"]
                .as_array()
                .is_some_and(|c| !c.is_empty()),
            "{info}"
        );
        for op in ["userlist", "filesystemlist"] {
            let a = c
                .request(&endpoint, http::Method::GET, &format!("{BASE}/{op}"), None)
                .await
                .unwrap();
            assert_eq!(a.status, 200, "{op}: {}", String::from_utf8_lossy(&a.body));
            assert!(
                json(&a)["items"].is_array(),
                "{op}: {}",
                String::from_utf8_lossy(&a.body)
            );
        }
        let missing = c
            .request(
                &endpoint,
                http::Method::GET,
                "/v1/namespaces/default/virtualmachineinstances/nope/guestosinfo",
                None,
            )
            .await
            .unwrap();
        assert_eq!(missing.status, 404);
        assert_eq!(json(&missing)["reason"], "NotFound");

        // The console is the guest's shell.
        let mut first = c.websocket(&endpoint, &format!("{BASE}/console")).await.unwrap();
        type_line(&mut first, "echo first-$((6*7))").await;
        read_until(&mut first, "first-42", 30).await;
        // A second console takes over: the first is closed, the second talks to the same shell.
        let mut second = c.websocket(&endpoint, &format!("{BASE}/console")).await.unwrap();
        assert!(
            next_control(&mut first, 10).await,
            "the first console was not closed"
        );
        type_line(&mut second, "echo second-$((1+1))").await;
        read_until(&mut second, "second-2", 30).await;

        // VNC speaks RFB; a client asking to preserve a running session is refused while one is open.
        let mut vnc = c.websocket(&endpoint, &format!("{BASE}/vnc")).await.unwrap();
        read_until(&mut vnc, "RFB 003.00", 10).await;
        let refused = c
            .websocket(&endpoint, &format!("{BASE}/vnc?preserveSession=true"))
            .await;
        assert!(
            refused.as_ref().is_err_and(|e| e.to_string().contains("503")),
            "{:?}",
            refused.err()
        );
        drop(vnc);

        // Pause and unpause reach the VMI's Paused condition.
        let a = c
            .request(&endpoint, http::Method::PUT, &format!("{BASE}/pause"), None)
            .await
            .unwrap();
        assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    });
    let paused = || {
        b.get(
            "vmi testvm",
            r#"{.status.conditions[?(@.type=="Paused")].status}"#,
        )
    };
    eventually("the VMI Paused", 30, || paused() == "True");
    rt.block_on(async {
        let a = c
            .request(&endpoint, http::Method::PUT, &format!("{BASE}/unpause"), None)
            .await
            .unwrap();
        assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    });
    eventually("the VMI unpaused", 30, || paused().is_empty());

    rt.block_on(async {
        // An idle console is kept alive with pings.
        let mut console = c.websocket(&endpoint, &format!("{BASE}/console")).await.unwrap();
        assert!(
            !next_control(&mut console, 30).await,
            "an idle console was closed"
        );
        type_line(&mut console, "echo alive-$((2+3))").await;
        read_until(&mut console, "alive-5", 30).await;

        // Only virt-api's certificate gets in: not the handler's own (no clientAuth), not a user of the API server,
        // not another CN from the KubeVirt CA.
        let server_id = identity(&b, "kubevirt-virt-handler-server-certs");
        let user = {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_kvbox"))
                .args(["kubeconfig", "--data-dir"])
                .arg(b.dir())
                .args(["--user", "alice", "--group", "system:masters"])
                .output()
                .unwrap();
            let kc: serde_json::Value = serde_norway::from_slice(&out.stdout).unwrap();
            let u = &kc["users"][0]["user"];
            Identity {
                ca_bundle: id.ca_bundle.clone(),
                cert: b64(u["client-certificate-data"].as_str().unwrap()),
                key: b64(u["client-key-data"].as_str().unwrap()),
            }
        };
        let other_cn = {
            let ca = identity(&b, "kubevirt-ca");
            let ca_key = rcgen::KeyPair::from_pem(&ca.key).unwrap();
            let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            ca_params
                .distinguished_name
                .push(rcgen::DnType::CommonName, "kubevirt.io");
            let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
            let key = rcgen::KeyPair::generate().unwrap();
            let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            p.distinguished_name.push(
                rcgen::DnType::CommonName,
                "kubevirt.io:system:client:someone-else",
            );
            p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
            let cert = p.signed_by(&key, &issuer).unwrap();
            Identity {
                ca_bundle: id.ca_bundle.clone(),
                cert: cert.pem(),
                key: key.serialize_pem(),
            }
        };
        for (who, other) in [
            ("the handler's server certificate", server_id),
            ("an API server user", user),
            ("another CN", other_cn),
        ] {
            let bad = HandlerClient::new(&Identity {
                ca_bundle: id.ca_bundle.clone(),
                ..other
            })
            .unwrap();
            let r = bad
                .request(&endpoint, http::Method::GET, &format!("{BASE}/guestosinfo"), None)
                .await;
            assert!(r.is_err(), "{who} was let in: {:?}", r.map(|a| a.status));
        }
    });
}
