//! The cluster zone's answers and the server's replies (negative answers, truncation, forwarding to an upstream
//! resolver on loopback).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use hickory_proto::op::{Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use k8s_openapi::api::core::v1::{Endpoints, Service};
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher::Event;

use super::zone::{Answer, Cluster, lookup};

fn services() -> Vec<Service> {
    [
        serde_json::json!({"metadata": {"name": "web", "namespace": "team"},
            "spec": {"clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20"],
                "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}}),
        serde_json::json!({"metadata": {"name": "grp", "namespace": "team"},
            "spec": {"clusterIP": "None", "ports": [{"name": "http", "port": 80}]}}),
        serde_json::json!({"metadata": {"name": "empty", "namespace": "team"}, "spec": {"clusterIP": "None"}}),
        serde_json::json!({"metadata": {"name": "ext", "namespace": "team"},
            "spec": {"type": "ExternalName", "externalName": "db.example.org"}}),
    ]
    .into_iter()
    .map(|v| serde_json::from_value(v).unwrap())
    .collect()
}

fn endpoints() -> Vec<Endpoints> {
    [
        serde_json::json!({"metadata": {"name": "grp", "namespace": "team"},
        "subsets": [{"addresses": [{"ip": "10.244.0.7", "hostname": "db1"}, {"ip": "10.244.0.8"}],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}]}),
    ]
    .into_iter()
    .map(|v| serde_json::from_value(v).unwrap())
    .collect()
}

fn ask(qname: &str, qtype: RecordType) -> Answer {
    let svcs = services();
    let eps = endpoints();
    let service = |ns: &str, name: &str| {
        svcs.iter()
            .find(|s| s.metadata.namespace.as_deref() == Some(ns) && s.metadata.name.as_deref() == Some(name))
            .cloned()
            .map(Arc::new)
    };
    let endpoints = |ns: &str, name: &str| {
        eps.iter()
            .find(|s| s.metadata.namespace.as_deref() == Some(ns) && s.metadata.name.as_deref() == Some(name))
            .cloned()
            .map(Arc::new)
    };
    let c = Cluster {
        domain: "cluster.local",
        service: &service,
        endpoints: &endpoints,
    };
    lookup(&c, qname, qtype)
}

/// The records' data as text.
fn data(a: &Answer) -> Vec<String> {
    match a {
        Answer::Records(r) => r.iter().map(|r| r.data().to_string()).collect(),
        other => panic!("no records: {other:?}"),
    }
}

#[test]
fn a_service_name_is_its_cluster_ip() {
    assert_eq!(
        data(&ask("web.team.svc.cluster.local", RecordType::A)),
        ["10.96.0.20"]
    );
    // It exists, but has no IPv6 address: NODATA, not NXDOMAIN (resolvers ask for both).
    assert_eq!(
        ask("web.team.svc.cluster.local", RecordType::AAAA),
        Answer::Records(vec![])
    );
    assert_eq!(
        ask("nope.team.svc.cluster.local", RecordType::A),
        Answer::NoSuchName
    );
    assert_eq!(
        ask("web.other.svc.cluster.local", RecordType::A),
        Answer::NoSuchName
    );
}

#[test]
fn a_headless_service_is_its_endpoints_and_each_endpoint_has_a_name() {
    assert_eq!(
        data(&ask("grp.team.svc.cluster.local", RecordType::A)),
        ["10.244.0.7", "10.244.0.8"]
    );
    // hostname.subdomain: what a VMI with spec.hostname db1 and spec.subdomain grp is called.
    assert_eq!(
        data(&ask("db1.grp.team.svc.cluster.local", RecordType::A)),
        ["10.244.0.7"]
    );
    assert_eq!(
        data(&ask("10-244-0-8.grp.team.svc.cluster.local", RecordType::A)),
        ["10.244.0.8"]
    );
    assert_eq!(
        ask("db2.grp.team.svc.cluster.local", RecordType::A),
        Answer::NoSuchName
    );
    // Only headless Services have endpoint names; one without endpoints has no name at all.
    assert_eq!(
        ask("x.web.team.svc.cluster.local", RecordType::A),
        Answer::NoSuchName
    );
    assert_eq!(
        ask("empty.team.svc.cluster.local", RecordType::A),
        Answer::NoSuchName
    );
}

#[test]
fn srv_records_name_the_port_and_the_target() {
    assert_eq!(
        data(&ask("_http._tcp.web.team.svc.cluster.local", RecordType::SRV)),
        ["0 100 80 web.team.svc.cluster.local."]
    );
    assert_eq!(
        data(&ask("_http._tcp.grp.team.svc.cluster.local", RecordType::SRV)),
        [
            "0 50 8080 db1.grp.team.svc.cluster.local.",
            "0 50 8080 10-244-0-8.grp.team.svc.cluster.local."
        ]
    );
    assert_eq!(
        ask("_http._udp.web.team.svc.cluster.local", RecordType::SRV),
        Answer::NoSuchName
    );
}

#[test]
fn external_names_pods_the_apex_and_other_zones() {
    assert_eq!(
        data(&ask("ext.team.svc.cluster.local", RecordType::A)),
        ["db.example.org."]
    );
    assert_eq!(
        data(&ask("10-1-2-3.team.pod.cluster.local", RecordType::A)),
        ["10.1.2.3"]
    );
    assert_eq!(
        data(&ask("fd00--5.team.pod.cluster.local", RecordType::AAAA)),
        ["fd00::5"]
    );
    assert_eq!(
        ask("bogus.team.pod.cluster.local", RecordType::A),
        Answer::NoSuchName
    );
    assert_eq!(ask("cluster.local", RecordType::A), Answer::Records(vec![]));
    assert_eq!(
        ask("team.svc.cluster.local", RecordType::A),
        Answer::Records(vec![])
    );
    assert_eq!(ask("a.b.c.d.e.cluster.local", RecordType::A), Answer::NoSuchName);
    assert_eq!(ask("example.org", RecordType::A), Answer::NotOurs);
    assert_eq!(ask("notcluster.local", RecordType::A), Answer::NotOurs);
}

fn server(upstream: Vec<std::net::SocketAddr>) -> super::Server {
    let mut s: Writer<Service> = Writer::default();
    for svc in services() {
        s.apply_watcher_event(&Event::Apply(svc));
    }
    let mut e: Writer<Endpoints> = Writer::default();
    for ep in endpoints() {
        e.apply_watcher_event(&Event::Apply(ep));
    }
    super::Server {
        settings: super::Settings {
            addr: std::net::Ipv4Addr::LOCALHOST,
            domain: "cluster.local".into(),
            upstream,
        },
        services: s.as_reader(),
        endpoints: e.as_reader(),
    }
}

fn question(name: &str, qtype: RecordType) -> Vec<u8> {
    let mut m = Message::new();
    m.set_id(4242)
        .set_recursion_desired(true)
        .add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    m.to_vec().unwrap()
}

#[tokio::test]
async fn replies_are_authoritative_negative_ones_carry_the_soa() {
    let s = server(vec![]);
    let r = Message::from_vec(
        &s.reply(&question("Web.Team.svc.cluster.local.", RecordType::A), false)
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        (r.id(), r.message_type(), r.authoritative()),
        (4242, MessageType::Response, true)
    );
    assert_eq!(r.answers().len(), 1);
    let r = Message::from_vec(
        &s.reply(&question("nope.team.svc.cluster.local.", RecordType::A), false)
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(r.response_code(), ResponseCode::NXDomain);
    assert!(matches!(r.name_servers()[0].data(), RData::SOA(_)));
    // Garbage gets FORMERR; a name outside the zone with no upstream, SERVFAIL.
    let r = Message::from_vec(&s.reply(&[0x12, 0x34, 0xff], false).await.unwrap()).unwrap();
    assert_eq!((r.id(), r.response_code()), (0x1234, ResponseCode::FormErr));
    let r = Message::from_vec(
        &s.reply(&question("example.org.", RecordType::A), false)
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(r.response_code(), ResponseCode::ServFail);
}

#[tokio::test]
async fn other_names_go_to_the_upstream_resolver() {
    // A resolver on loopback that answers every question with 192.0.2.1.
    let up = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = up.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 1500];
        while let Ok((n, peer)) = up.recv_from(&mut buf).await {
            let q = Message::from_vec(&buf[..n]).unwrap();
            let mut r = q.clone();
            r.set_message_type(MessageType::Response)
                .add_answer(hickory_proto::rr::Record::from_rdata(
                    q.queries()[0].name().clone(),
                    60,
                    RData::A(hickory_proto::rr::rdata::A([192, 0, 2, 1].into())),
                ));
            up.send_to(&r.to_vec().unwrap(), peer).await.unwrap();
        }
    });
    // An unreachable one first: the next one answers.
    let s = server(vec!["127.0.0.1:9".parse().unwrap(), addr]);
    let r = Message::from_vec(
        &s.reply(&question("www.example.org.", RecordType::A), false)
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(r.answers()[0].data().to_string(), "192.0.2.1");
}

#[tokio::test]
async fn answers_too_big_for_a_datagram_are_truncated() {
    let mut s: Writer<Service> = Writer::default();
    s.apply_watcher_event(&Event::Apply(
        serde_json::from_value(
            serde_json::json!({"metadata": {"name": "big", "namespace": "team"},
            "spec": {"clusterIP": "None"}}),
        )
        .unwrap(),
    ));
    let addresses: Vec<serde_json::Value> = (1..=60)
        .map(|i| serde_json::json!({"ip": format!("10.244.1.{i}")}))
        .collect();
    let mut e: Writer<Endpoints> = Writer::default();
    e.apply_watcher_event(&Event::Apply(
        serde_json::from_value(
            serde_json::json!({"metadata": {"name": "big", "namespace": "team"},
            "subsets": [{"addresses": addresses}]}),
        )
        .unwrap(),
    ));
    let mut srv = server(vec![]);
    srv.services = s.as_reader();
    srv.endpoints = e.as_reader();
    let q = question("big.team.svc.cluster.local.", RecordType::A);
    let r = Message::from_vec(&srv.reply(&q, false).await.unwrap()).unwrap();
    assert!(r.truncated() && r.answers().is_empty());
    let r = Message::from_vec(&srv.reply(&q, true).await.unwrap()).unwrap();
    assert_eq!(r.answers().len(), 60);
}
