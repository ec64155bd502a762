//! SNTP client (RFC 4330, NTPv4 packet format of RFC 5905 §7.3): the 48-byte request, the
//! server's answer, and clock offset / round-trip delay / root distance.

use crate::cursor::{Cursor, DecodeError};

pub const PACKET_LEN: usize = 48;
/// Seconds from 1900-01-01 (NTP era 0) to 1970-01-01.
pub const UNIX_OFFSET: u64 = 2_208_988_800;

/// A wall-clock time since the Unix epoch as a 64-bit NTP timestamp (32.32 fixed point).
pub fn ntp_timestamp(since_unix: std::time::Duration) -> u64 {
    let secs = since_unix.as_secs().wrapping_add(UNIX_OFFSET) & 0xFFFF_FFFF;
    let frac = (u64::from(since_unix.subsec_nanos()) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

/// Client request: LI 0, version 4, mode 3 (client); `transmit` is echoed back by the server
/// as the origin timestamp, which is how we match the answer to our request.
pub fn request(transmit: u64) -> [u8; PACKET_LEN] {
    let mut p = [0u8; PACKET_LEN];
    p[0] = 0x23;
    p[40..48].copy_from_slice(&transmit.to_be_bytes());
    p
}

/// The server's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// Leap indicator: 3 = clock not synchronised (alarm).
    pub leap: u8,
    pub version: u8,
    pub mode: u8,
    /// 0 = kiss-of-death, 1 = primary (GPS, PPS), 2..=15 secondary, 16 = unsynchronised.
    pub stratum: u8,
    pub poll: i8,
    pub precision: i8,
    /// Seconds.
    pub root_delay: f64,
    /// Seconds.
    pub root_dispersion: f64,
    pub reference_id: [u8; 4],
    pub reference: u64,
    pub origin: u64,
    pub receive: u64,
    pub transmit: u64,
}

fn short_fmt_signed(v: u32) -> f64 {
    f64::from(v as i32) / 65536.0
}

/// Difference `a - b` of two NTP timestamps in seconds (era-safe for spans under 68 years).
pub fn diff(a: u64, b: u64) -> f64 {
    (a.wrapping_sub(b) as i64) as f64 / 4_294_967_296.0
}

/// Parses a server answer (exactly the 48-byte header; extension fields and MACs ignored).
pub fn parse(buf: &[u8]) -> Result<Response, DecodeError> {
    if buf.len() < PACKET_LEN {
        return Err(DecodeError::Truncated {
            what: "NTP packet",
            needed: PACKET_LEN - buf.len(),
        });
    }
    let mut c = Cursor::new(buf);
    let b0 = c.u8("flags")?;
    let r = Response {
        leap: b0 >> 6,
        version: (b0 >> 3) & 7,
        mode: b0 & 7,
        stratum: c.u8("stratum")?,
        poll: c.u8("poll")? as i8,
        precision: c.u8("precision")? as i8,
        root_delay: short_fmt_signed(c.u32("root delay")?),
        root_dispersion: f64::from(c.u32("root dispersion")?) / 65536.0,
        reference_id: {
            let b = c.take(4, "reference id")?;
            [b[0], b[1], b[2], b[3]]
        },
        reference: c.u64("reference timestamp")?,
        origin: c.u64("origin timestamp")?,
        receive: c.u64("receive timestamp")?,
        transmit: c.u64("transmit timestamp")?,
    };
    if !(1..=4).contains(&r.version) {
        return Err(DecodeError::invalid(format!(
            "NTP version {} is not 1-4",
            r.version
        )));
    }
    if r.mode != 4 && r.mode != 5 {
        return Err(DecodeError::invalid(format!(
            "NTP mode {} is not a server answer (4)",
            r.mode
        )));
    }
    Ok(r)
}

impl Response {
    /// `(offset, delay)` in seconds, with `t1` our transmit time and `t4` our receive time
    /// (RFC 5905 §8: offset = ((T2-T1) + (T3-T4)) / 2, delay = (T4-T1) - (T3-T2)).
    pub fn offset_delay(&self, t1: u64, t4: u64) -> (f64, f64) {
        let offset = (diff(self.receive, t1) + diff(self.transmit, t4)) / 2.0;
        let delay = diff(t4, t1) - diff(self.transmit, self.receive);
        (offset, delay.max(0.0))
    }

    /// Root distance in seconds: how far the server may be from true time, as seen from us
    /// ((root delay + delay) / 2 + root dispersion, RFC 5905 §11.2 without jitter terms).
    pub fn root_distance(&self, delay: f64) -> f64 {
        (self.root_delay.abs() + delay) / 2.0 + self.root_dispersion
    }

    /// The kiss code of a kiss-of-death packet (stratum 0 with an ASCII code in the reference
    /// id), e.g. `RATE`, `DENY`. Stratum 0 with a zero reference id is just "unsynchronised".
    pub fn kiss_code(&self) -> Option<String> {
        let r = self.reference_id;
        let len = r.iter().position(|b| *b == 0).unwrap_or(4);
        (self.stratum == 0 && len > 0 && r[..len].iter().all(u8::is_ascii_alphanumeric))
            .then(|| r[..len].iter().map(|b| *b as char).collect())
    }

    /// The reference id for display: ASCII source for stratum 1 (`GPS`, `PPS`), IPv4 address
    /// (or hash) of the upstream server otherwise.
    pub fn reference_text(&self) -> String {
        let r = self.reference_id;
        if self.stratum <= 1 {
            r.iter()
                .take_while(|b| **b != 0)
                .map(|b| {
                    if b.is_ascii_graphic() {
                        *b as char
                    } else {
                        '?'
                    }
                })
                .collect()
        } else {
            format!("{}.{}.{}.{}", r[0], r[1], r[2], r[3])
        }
    }

    /// Stratum 0 (unspecified), 16, or leap indicator 3 (alarm).
    pub fn unsynchronised(&self) -> bool {
        self.stratum == 0 || self.stratum >= 16 || self.leap == 3
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn answer(stratum: u8, t2: u64, t3: u64, origin: u64) -> [u8; 48] {
        let mut p = [0u8; 48];
        p[0] = 0x24; // LI 0, VN 4, mode 4
        p[1] = stratum;
        p[4..8].copy_from_slice(&0x0000_8000u32.to_be_bytes()); // root delay 0.5 s
        p[8..12].copy_from_slice(&0x0000_4000u32.to_be_bytes()); // root dispersion 0.25 s
        p[12..16].copy_from_slice(b"GPS\0");
        p[24..32].copy_from_slice(&origin.to_be_bytes());
        p[32..40].copy_from_slice(&t2.to_be_bytes());
        p[40..48].copy_from_slice(&t3.to_be_bytes());
        p
    }

    #[test]
    fn offset_and_delay() {
        let s = |x: f64| (x * 4_294_967_296.0) as u64;
        let t1 = s(1000.0);
        // Server 2 s ahead, 0.1 s each way, 0.05 s processing.
        let t2 = s(1002.1);
        let t3 = s(1002.15);
        let t4 = s(1000.25);
        let r = parse(&answer(1, t2, t3, t1)).unwrap();
        let (o, d) = r.offset_delay(t1, t4);
        assert!((o - 2.0).abs() < 1e-6, "{o}");
        assert!((d - 0.2).abs() < 1e-6, "{d}");
        assert_eq!(r.root_delay, 0.5);
        assert_eq!(r.root_dispersion, 0.25);
        assert!((r.root_distance(d) - 0.6).abs() < 1e-6);
        assert_eq!(r.reference_text(), "GPS");
        assert_eq!(r.origin, t1);
        let mut kod = answer(0, 0, 0, t1);
        kod[12..16].copy_from_slice(b"RATE");
        assert_eq!(parse(&kod).unwrap().kiss_code().as_deref(), Some("RATE"));
        assert!(parse(&answer(16, 0, 0, 0)).unwrap().unsynchronised());
        // chrony before synchronising: stratum 0, leap 3, reference id 0 — not a kiss.
        let mut unsync = answer(0, 0, 0, t1);
        unsync[0] = 0xe4;
        unsync[12..16].copy_from_slice(&[0, 0, 0, 0]);
        let r = parse(&unsync).unwrap();
        assert_eq!(r.kiss_code(), None);
        assert!(r.unsynchronised());
    }

    #[test]
    fn rejects_non_answers() {
        assert!(
            parse(&request(5)).is_err(),
            "a client packet is not an answer"
        );
        assert!(parse(b"short").is_err());
        let r = request(0x0123_4567_89ab_cdef);
        assert_eq!(r[0], 0x23);
        assert_eq!(&r[40..], &0x0123_4567_89ab_cdefu64.to_be_bytes());
        let t = ntp_timestamp(std::time::Duration::from_millis(1_500));
        assert_eq!(t >> 32, UNIX_OFFSET + 1);
        assert_eq!(t & 0xffff_ffff, 1 << 31);
    }

    proptest! {
        #[test]
        fn never_panics(buf in proptest::collection::vec(any::<u8>(), 0..96), t1 in any::<u64>(), t4 in any::<u64>()) {
            if let Ok(r) = parse(&buf) {
                let (o, d) = r.offset_delay(t1, t4);
                prop_assert!(o.is_finite() && d.is_finite());
                let _ = r.root_distance(d);
                let _ = r.kiss_code();
                let _ = r.reference_text();
            }
        }
    }
}
