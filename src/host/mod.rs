//! The only code that touches the machine: finding and running the iptables
//! executables, probing features, reading resolv.conf and users, the loopback
//! interface and its `::6` address, and the install receipt.

pub mod receipt;
pub mod users;

pub use receipt::Mode;
