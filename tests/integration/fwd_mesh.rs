//! Mesh test support for the forwarder tests: Universal Dataplane texts for
//! the test topology, and DNS queries over UDP or TCP from inside a
//! namespace.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::common::Netns;
use crate::fwd_kernel::in_ns;

/// A Universal Dataplane with one inbound per `(port, service)` and, when
/// `tp` is not empty, a `transparentProxying` section ending with `tp`
/// (indented four spaces: `reachableServices: [a]`).
pub fn dataplane(name: &str, address: &str, inbounds: &[(u16, &str)], tp: &str) -> String {
    let mut s = format!(
        "type: Dataplane\nmesh: default\nname: {name}\nnetworking:\n  address: {address}\n  inbound:\n"
    );
    for (port, service) in inbounds {
        s += &format!("  - port: {port}\n    tags:\n      kuma.io/service: {service}\n");
    }
    if !tp.is_empty() {
        s += "  transparentProxying:\n    redirectPortInbound: 15006\n    redirectPortOutbound: 15001\n";
        for line in tp.lines() {
            s += &format!("    {line}\n");
        }
    }
    s
}

/// Several documents in one file.
pub fn documents(docs: &[String]) -> String {
    docs.join("---\n")
}

/// A tiny upstream name server on UDP port 53 of `ns` that answers every A
/// query with one A record, `answer`, and other types with no records.
pub fn fake_upstream(ns: &Netns, answer: std::net::Ipv4Addr) {
    let up = in_ns(ns, || UdpSocket::bind("0.0.0.0:53").unwrap());
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = up.recv_from(&mut buf) {
            let q = Message::from_vec(&buf[..n]).unwrap();
            let mut a = Message::response(q.metadata.id, q.metadata.op_code);
            a.metadata.recursion_desired = q.metadata.recursion_desired;
            a.metadata.recursion_available = true;
            a.add_queries(q.queries.clone());
            if q.queries[0].query_type() == RecordType::A {
                let name = q.queries[0].name().clone();
                a.add_answer(Record::from_rdata(name, 60, RData::A(A(answer))));
            }
            up.send_to(&a.to_vec().unwrap(), from).unwrap();
        }
    });
}

/// `getent hosts NAME` (glibc: connected UDP sockets, no EDNS, TCP when an
/// answer is truncated) as `uid` inside `ns`, with `resolv` as its
/// /etc/resolv.conf (bind-mounted in the mount namespace `ip netns exec`
/// makes, so the host's file is untouched).
pub fn getent_hosts(
    ns: &Netns,
    uid: u32,
    resolv: &std::path::Path,
    name: &str,
) -> std::process::Output {
    let u = uid.to_string();
    ns.cmd(
        "sh",
        &[
            "-c",
            "mount --bind \"$1\" /etc/resolv.conf && exec setpriv --reuid=\"$2\" --regid=\"$2\" --clear-groups getent hosts \"$3\"",
            "sh",
            resolv.to_str().unwrap(),
            &u,
            name,
        ],
    )
    .stdin(std::process::Stdio::null())
    .output()
    .expect("getent runs")
}

/// Sends one query for `name` to `server` from inside `ns` and returns the answer.
pub fn dns_query(ns: &Netns, server: SocketAddr, name: &str, ty: RecordType, tcp: bool) -> Message {
    let mut q = Message::query();
    q.add_query(Query::query(Name::from_ascii(name).unwrap(), ty));
    q.metadata.recursion_desired = true;
    let bytes = q.to_vec().unwrap();
    let id = q.metadata.id;
    let answer = in_ns(ns, move || {
        if tcp {
            let mut s = TcpStream::connect_timeout(&server, Duration::from_secs(5)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.write_all(&(bytes.len() as u16).to_be_bytes()).unwrap();
            s.write_all(&bytes).unwrap();
            let mut len = [0u8; 2];
            s.read_exact(&mut len).unwrap();
            let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
            s.read_exact(&mut buf).unwrap();
            Message::from_vec(&buf).unwrap()
        } else {
            // Unspecified: a query to a remote server may be redirected to
            // the proxy, and a loopback source cannot leave for a remote one.
            let local: SocketAddr = if server.is_ipv4() {
                "0.0.0.0:0".parse().unwrap()
            } else {
                "[::]:0".parse().unwrap()
            };
            let s = UdpSocket::bind(local).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.send_to(&bytes, server).unwrap();
            let mut buf = [0u8; 4096];
            let n = s.recv(&mut buf).unwrap();
            Message::from_vec(&buf[..n]).unwrap()
        }
    });
    assert_eq!(answer.metadata.id, id);
    answer
}

/// The addresses of an answer's A and AAAA records, as text.
pub fn answer_addrs(m: &Message) -> Vec<String> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            RData::AAAA(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect()
}
