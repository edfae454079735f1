//! The bundled data plane: listeners on the redirect ports that relay each
//! connection to its original destination, with limits, timeouts, statistics
//! and a DNS proxy.
