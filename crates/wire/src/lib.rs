//! Sans-I/O codecs for Portwarden's probes.
//!
//! Everything here works on byte slices: it builds requests and parses responses but never opens
//! a socket, so each parser can be property-tested and fuzzed (see `fuzz/`). The `probe` crate
//! drives these codecs over real, timed sockets.
//!
//! ```
//! use portwarden_wire::{bytespec, expect::{Matcher, Match}};
//! let req = bytespec::parse_escaped("PING\\r\\n").unwrap();
//! assert_eq!(req, b"PING\r\n");
//! let m = Matcher::contains(b"+PONG".to_vec());
//! assert_eq!(m.check(b"+PONG\r\n", false), Match::MatchedAt(5));
//! ```
//!
//! Every parser bounds what it reads: no length field from the wire is trusted without a limit.

pub mod amqp;
pub mod base64;
pub mod bson;
pub mod bytespec;
pub mod cursor;
pub mod dns;
pub mod expect;
pub mod ftp;
pub mod http1;
pub mod imap;
pub mod kafka;
pub mod memcached;
pub mod mongodb;
pub mod mqtt;
pub mod mysql;
pub mod nats;
pub mod ntp;
pub mod pop3;
pub mod postgres;
pub mod printable;
pub mod resp;
pub mod scram;
pub mod smtp;
pub mod snmp;
pub mod ssh;
