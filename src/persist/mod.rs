//! Persistence of the planned rules outside iptables: firewalld's direct.xml.
