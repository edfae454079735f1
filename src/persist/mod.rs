//! Persistence of the planned rules outside iptables: firewalld's
//! `direct.xml` ([`firewalld`]). Turning rules into text stays in
//! [`crate::render`]; this module owns where that text is kept and how it is
//! merged with, and removed from, files other tools also write.

pub mod firewalld;
