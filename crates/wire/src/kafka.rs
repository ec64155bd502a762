//! Kafka wire protocol: `ApiVersions` (v0) and `Metadata` (v1 or v4, non-flexible versions)
//! requests and responses.
//!
//! Spec: the Kafka protocol guide, "Protocol Primitive Types" (INT16/INT32 big-endian, STRING =
//! INT16 length + bytes, NULLABLE_STRING with -1, ARRAY = INT32 count), "Common Request and
//! Response Structure" (Size INT32, request header v1 = api_key, api_version, correlation_id,
//! client_id; response header v0 = correlation_id) and the message schemas for ApiVersions
//! (api_key 18) and Metadata (api_key 3).

use crate::cursor::{Cursor, DecodeError, text_upto};

pub const API_METADATA: i16 = 3;
pub const API_VERSIONS: i16 = 18;
/// Largest response we accept (a Metadata answer for zero topics is small even for a big
/// cluster; ApiVersions is under 1 KiB).
pub const MAX_RESPONSE: usize = 1 << 20;

fn request(
    api_key: i16,
    version: i16,
    correlation_id: i32,
    client_id: &str,
    body: &[u8],
) -> Vec<u8> {
    let cid = &client_id.as_bytes()[..client_id.len().min(i16::MAX as usize)];
    let len = 2 + 2 + 4 + 2 + cid.len() + body.len();
    let mut out = Vec::with_capacity(4 + len);
    out.extend_from_slice(&(len as i32).to_be_bytes());
    out.extend_from_slice(&api_key.to_be_bytes());
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&correlation_id.to_be_bytes());
    out.extend_from_slice(&(cid.len() as i16).to_be_bytes());
    out.extend_from_slice(cid);
    out.extend_from_slice(body);
    out
}

/// `ApiVersions` v0 request (empty body). Every broker since 0.10 answers it.
pub fn api_versions_request(correlation_id: i32, client_id: &str) -> Vec<u8> {
    request(API_VERSIONS, 0, correlation_id, client_id, &[])
}

/// `Metadata` request for no topics (`version` 1 or 4): brokers and controller only.
pub fn metadata_request(version: i16, correlation_id: i32, client_id: &str) -> Vec<u8> {
    let mut body = 0i32.to_be_bytes().to_vec(); // topics: empty array (not null = all topics)
    if version >= 4 {
        body.push(0); // allow_auto_topic_creation = false
    }
    request(API_METADATA, version, correlation_id, client_id, &body)
}

/// Splits one size-prefixed response off the stream: `Ok(Some((body, used)))`, `Ok(None)` when
/// more bytes are needed.
pub fn frame(buf: &[u8], max: usize) -> Result<Option<(&[u8], usize)>, DecodeError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let size = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if size < 4 {
        return Err(DecodeError::invalid(format!(
            "Kafka response size {size} is too small for a correlation id"
        )));
    }
    let size = size as usize;
    if size > max {
        return Err(DecodeError::TooLong {
            what: "Kafka response",
            len: size,
            limit: max,
        });
    }
    if buf.len() < 4 + size {
        return Ok(None);
    }
    Ok(Some((&buf[4..4 + size], 4 + size)))
}

/// One entry of an `ApiVersions` answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiRange {
    pub api_key: i16,
    pub min: i16,
    pub max: i16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiVersions {
    pub correlation_id: i32,
    pub error_code: i16,
    pub apis: Vec<ApiRange>,
}

impl ApiVersions {
    pub fn range(&self, api_key: i16) -> Option<ApiRange> {
        self.apis.iter().copied().find(|a| a.api_key == api_key)
    }
}

fn array_len(
    c: &mut Cursor<'_>,
    min_item: usize,
    what: &'static str,
) -> Result<usize, DecodeError> {
    let n = c.i32(what)?;
    if n < 0 {
        return Ok(0);
    }
    let n = n as usize;
    if n.saturating_mul(min_item) > c.remaining() {
        return Err(DecodeError::TooLong {
            what,
            len: n,
            limit: c.remaining() / min_item.max(1),
        });
    }
    Ok(n)
}

fn string(c: &mut Cursor<'_>, what: &'static str) -> Result<Option<String>, DecodeError> {
    let n = c.i16(what)?;
    if n < 0 {
        return Ok(None);
    }
    Ok(Some(text_upto(c.take(n as usize, what)?, 1024)))
}

/// Parses an `ApiVersions` v0 response body (after the size prefix).
pub fn parse_api_versions(body: &[u8]) -> Result<ApiVersions, DecodeError> {
    let mut c = Cursor::new(body);
    let correlation_id = c.i32("correlation id")?;
    let error_code = c.i16("error code")?;
    let n = array_len(&mut c, 6, "api versions array")?;
    let mut apis = Vec::with_capacity(n);
    for _ in 0..n {
        apis.push(ApiRange {
            api_key: c.i16("api key")?,
            min: c.i16("min version")?,
            max: c.i16("max version")?,
        });
    }
    Ok(ApiVersions {
        correlation_id,
        error_code,
        apis,
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    pub correlation_id: i32,
    pub brokers: Vec<Broker>,
    pub cluster_id: Option<String>,
    /// -1 when the cluster has no active controller.
    pub controller_id: i32,
    pub topic_errors: Vec<(String, i16)>,
}

/// Parses a `Metadata` v1..=4 response body.
pub fn parse_metadata(body: &[u8], version: i16) -> Result<Metadata, DecodeError> {
    if !(1..=4).contains(&version) {
        return Err(DecodeError::invalid(format!(
            "Metadata v{version} is not supported by this parser"
        )));
    }
    let mut c = Cursor::new(body);
    let correlation_id = c.i32("correlation id")?;
    if version >= 3 {
        c.i32("throttle time")?;
    }
    let n = array_len(&mut c, 12, "brokers array")?;
    let mut brokers = Vec::with_capacity(n);
    for _ in 0..n {
        brokers.push(Broker {
            node_id: c.i32("node id")?,
            host: string(&mut c, "broker host")?.unwrap_or_default(),
            port: c.i32("broker port")?,
            rack: string(&mut c, "rack")?,
        });
    }
    let cluster_id = if version >= 2 {
        string(&mut c, "cluster id")?
    } else {
        None
    };
    let controller_id = c.i32("controller id")?;
    let nt = array_len(&mut c, 9, "topics array")?;
    let mut topic_errors = Vec::new();
    for _ in 0..nt {
        let err = c.i16("topic error")?;
        let name = string(&mut c, "topic name")?.unwrap_or_default();
        c.u8("is_internal")?;
        let np = array_len(&mut c, 18, "partitions array")?;
        for _ in 0..np {
            c.skip(10, "partition")?;
            let r = array_len(&mut c, 4, "replicas")?;
            c.skip(r * 4, "replicas")?;
            let i = array_len(&mut c, 4, "isr")?;
            c.skip(i * 4, "isr")?;
        }
        if err != 0 {
            topic_errors.push((name, err));
        }
    }
    Ok(Metadata {
        correlation_id,
        brokers,
        cluster_id,
        controller_id,
        topic_errors,
    })
}

/// A few error codes worth naming in messages.
pub fn error_name(code: i16) -> &'static str {
    match code {
        0 => "NONE",
        3 => "UNKNOWN_TOPIC_OR_PARTITION",
        5 => "LEADER_NOT_AVAILABLE",
        8 => "BROKER_NOT_AVAILABLE",
        15 => "COORDINATOR_NOT_AVAILABLE",
        29 => "TOPIC_AUTHORIZATION_FAILED",
        31 => "CLUSTER_AUTHORIZATION_FAILED",
        33 => "UNSUPPORTED_SASL_MECHANISM",
        35 => "UNSUPPORTED_VERSION",
        58 => "SASL_AUTHENTICATION_FAILED",
        _ => "UNKNOWN",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Built by hand from the Kafka protocol guide ("The Messages ApiVersions", v0):
    /// Size, correlation_id=7, error_code=0, [api_key=0 min=0 max=9, api_key=3 min=0 max=12,
    /// api_key=18 min=0 max=3].
    pub const API_VERSIONS_V0: &[u8] = &[
        0, 0, 0, 28, // size
        0, 0, 0, 7, // correlation_id
        0, 0, // error_code
        0, 0, 0, 3, // array of 3
        0, 0, 0, 0, 0, 9, // Produce 0..9
        0, 3, 0, 0, 0, 12, // Metadata 0..12
        0, 18, 0, 0, 0, 3, // ApiVersions 0..3
    ];

    /// "The Messages Metadata", response v4: throttle_time_ms=0, brokers=[{node_id=1,
    /// host="k1", port=9092, rack=null}], cluster_id="c1", controller_id=1, topics=[].
    pub const METADATA_V4: &[u8] = &[
        0, 0, 0, 38, // size
        0, 0, 0, 8, // correlation_id
        0, 0, 0, 0, // throttle_time_ms
        0, 0, 0, 1, // brokers: 1
        0, 0, 0, 1, 0, 2, b'k', b'1', 0, 0, 0x23, 0x84, 0xff,
        0xff, // node 1 k1:9092 rack null
        0, 2, b'c', b'1', // cluster_id
        0, 0, 0, 1, // controller_id
        0, 0, 0, 0, // topics: 0
    ];

    #[test]
    fn request_bytes_follow_the_spec() {
        assert_eq!(
            api_versions_request(7, "pw"),
            vec![0, 0, 0, 12, 0, 18, 0, 0, 0, 0, 0, 7, 0, 2, b'p', b'w']
        );
        let m = metadata_request(4, 8, "pw");
        assert_eq!(&m[..4], &[0, 0, 0, 17]);
        assert_eq!(&m[4..8], &[0, 3, 0, 4]);
        assert_eq!(&m[m.len() - 5..], &[0, 0, 0, 0, 0]);
    }

    #[test]
    fn parses_api_versions() {
        let (body, used) = frame(API_VERSIONS_V0, MAX_RESPONSE).unwrap().unwrap();
        assert_eq!(used, API_VERSIONS_V0.len());
        let v = parse_api_versions(body).unwrap();
        assert_eq!(v.correlation_id, 7);
        assert_eq!(v.error_code, 0);
        assert_eq!(v.range(API_METADATA).map(|r| r.max), Some(12));
        for i in 0..API_VERSIONS_V0.len() {
            assert_eq!(frame(&API_VERSIONS_V0[..i], MAX_RESPONSE).unwrap(), None);
        }
    }

    #[test]
    fn parses_metadata() {
        let (body, _) = frame(METADATA_V4, MAX_RESPONSE).unwrap().unwrap();
        let m = parse_metadata(body, 4).unwrap();
        assert_eq!(m.correlation_id, 8);
        assert_eq!(m.brokers.len(), 1);
        assert_eq!(m.brokers[0].host, "k1");
        assert_eq!(m.brokers[0].port, 9092);
        assert_eq!(m.cluster_id.as_deref(), Some("c1"));
        assert_eq!(m.controller_id, 1);
    }

    #[test]
    fn refuses_absurd_lengths() {
        assert!(frame(&[0x7f, 0xff, 0xff, 0xff], MAX_RESPONSE).is_err());
        assert!(frame(b"SSH-", MAX_RESPONSE).is_err());
        // An array claiming a billion entries in a short body.
        let body = [0, 0, 0, 1, 0, 0, 0x40, 0, 0, 0];
        assert!(parse_api_versions(&body).is_err());
    }

    proptest! {
        #[test]
        fn parsers_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..256), v in 0i16..6) {
            if let Ok(Some((body, n))) = frame(&buf, MAX_RESPONSE) {
                prop_assert!(n <= buf.len());
                let _ = parse_api_versions(body);
            }
            let _ = parse_api_versions(&buf);
            let _ = parse_metadata(&buf, v);
        }
    }
}
