//! JSON-RPC 2.0 framing and the version handshake of the local socket protocol.
//!
//! One request per line, one response per line, UTF-8 JSON, a line at most [`MAX_LINE`] bytes
//! including the newline. The first request on a connection must be `Hello`.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::error::{BrokerError, ErrorKind};

/// The longest request or response line, newline included.
pub const MAX_LINE: usize = 64 * 1024;

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: Version = Version { major: 1, minor: 0 };

/// A protocol version. Peers are compatible when their majors are equal; a minor adds methods or
/// optional fields only. It travels as the string `"MAJOR.MINOR"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub major: u16,
    pub minor: u16,
}

impl Version {
    pub fn compatible_with(self, other: Version) -> bool {
        self.major == other.major
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

impl std::str::FromStr for Version {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("invalid protocol version {s:?}: expected MAJOR.MINOR");
        let (major, minor) = s.split_once('.').ok_or_else(bad)?;
        let num = |p: &str| {
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            p.parse::<u16>().map_err(|_| bad())
        };
        Ok(Version {
            major: num(major)?,
            minor: num(minor)?,
        })
    }
}

impl Serialize for Version {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Serialize `value` as one protocol line (JSON and a newline) into a buffer sized exactly
/// beforehand, so that it never reallocates and leaves an unwiped copy of a secret behind. The
/// caller wipes the buffer when done with it.
pub fn to_line<T: Serialize>(value: &T) -> serde_json::Result<Vec<u8>> {
    write_exact(|w| {
        serde_json::to_writer(&mut *w, value)?;
        w.write_all(b"\n").map_err(serde_json::Error::io)?;
        Ok(())
    })
}

/// Run `write` twice: once to count the bytes, once into a buffer of exactly that size. For
/// output that may hold a secret: the buffer never reallocates, so no stale copy is left behind.
pub fn write_exact<E>(
    write: impl Fn(&mut dyn std::io::Write) -> Result<(), E>,
) -> Result<Vec<u8>, E> {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    write(&mut count)?;
    let mut out = Vec::with_capacity(count.0);
    write(&mut out)?;
    Ok(out)
}

/// A request as read off the wire: the params stay raw until the method is known, so that a
/// secret in them is parsed once, straight into its zeroizing type, from the connection's buffer.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRequest<'a> {
    #[serde(borrow)]
    pub jsonrpc: std::borrow::Cow<'a, str>,
    #[serde(default)]
    pub id: Option<serde_json::Value>,
    #[serde(borrow)]
    pub method: std::borrow::Cow<'a, str>,
    #[serde(borrow, default)]
    pub params: Option<&'a RawValue>,
}

/// A request as a client writes it.
#[derive(Debug, Serialize)]
pub struct Request<'a, P: Serialize> {
    pub jsonrpc: &'static str,
    pub id: u64,
    pub method: &'a str,
    pub params: &'a P,
}

/// A notification from the daemon to a subscribed connection: no id, no reply.
#[derive(Debug, Serialize, Deserialize)]
pub struct Event<E> {
    pub jsonrpc: String,
    pub method: String,
    pub params: E,
}

/// A response: exactly one of `result` and `error`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Response<R> {
    pub jsonrpc: String,
    pub id: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<R>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<RpcError>,
}

/// A JSON-RPC error object. `data.kind` carries the broker's [`ErrorKind`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<RpcErrorData>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RpcErrorData {
    pub kind: ErrorKind,
}

/// JSON-RPC 2.0 reserved codes.
pub mod codes {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    pub const INTERNAL_ERROR: i64 = -32603;
    /// First of the implementation-defined server errors; the broker's errors use -32000 - n.
    pub const SERVER_ERROR_BASE: i64 = -32000;
}

impl From<&BrokerError> for RpcError {
    fn from(e: &BrokerError) -> Self {
        RpcError {
            code: e.kind.rpc_code(),
            message: e.message.clone(),
            data: Some(RpcErrorData { kind: e.kind }),
        }
    }
}

impl From<RpcError> for BrokerError {
    fn from(e: RpcError) -> Self {
        let kind = match e.data {
            Some(d) => d.kind,
            None => ErrorKind::from_rpc_code(e.code),
        };
        BrokerError::new(kind, e.message)
    }
}

/// Method names, the same on the socket and on D-Bus.
pub mod methods {
    pub const HELLO: &str = "Hello";
    pub const GET_TOKEN: &str = "GetToken";
    pub const LIST_ACCOUNTS: &str = "ListAccounts";
    pub const STATUS: &str = "Status";
    pub const SIGN_IN: &str = "SignIn";
    pub const SIGN_OUT: &str = "SignOut";
    pub const ADD_PROVIDER: &str = "AddProvider";
    pub const LIST_PROVIDERS: &str = "ListProviders";
    pub const REMOVE_PROVIDER: &str = "RemoveProvider";
    pub const SET_CLIENT_SECRET: &str = "SetClientSecret";
    pub const ADD_ACCOUNT: &str = "AddAccount";
    pub const REMOVE_ACCOUNT: &str = "RemoveAccount";
    pub const SET_APP_POLICY: &str = "SetAppPolicy";
    pub const REMOVE_APP_POLICY: &str = "RemoveAppPolicy";
    pub const GET_POLICY: &str = "GetPolicy";
    pub const SUBSCRIBE: &str = "Subscribe";
    pub const LIST_CONSENTS: &str = "ListConsents";
    pub const ANSWER_CONSENT: &str = "AnswerConsent";
    pub const READ_AUDIT: &str = "ReadAudit";
    pub const INTROSPECT: &str = "Introspect";
    pub const LIST_PRESETS: &str = "ListPresets";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_encoding_round_trips() {
        for (v, s) in [
            (Version { major: 1, minor: 0 }, "1.0"),
            (
                Version {
                    major: 1,
                    minor: 12,
                },
                "1.12",
            ),
            (
                Version {
                    major: 65535,
                    minor: 7,
                },
                "65535.7",
            ),
        ] {
            assert_eq!(v.to_string(), s);
            assert_eq!(s.parse::<Version>().unwrap(), v);
            let json = serde_json::to_string(&v).unwrap();
            assert_eq!(json, format!("\"{s}\""));
            assert_eq!(serde_json::from_str::<Version>(&json).unwrap(), v);
        }
    }

    #[test]
    fn version_rejects_garbage() {
        for s in [
            "", "1", "1.", ".1", "1.0.0", "a.b", "-1.0", "1.+2", "70000.0", " 1.0",
        ] {
            assert!(s.parse::<Version>().is_err(), "{s:?} parsed");
        }
    }

    #[test]
    fn version_compatibility_is_by_major() {
        let v = |major, minor| Version { major, minor };
        assert!(v(1, 0).compatible_with(v(1, 3)));
        assert!(v(1, 3).compatible_with(v(1, 0)));
        assert!(!v(1, 0).compatible_with(v(2, 0)));
        assert!(v(1, 9) < v(1, 10), "ordering is numeric, not textual");
    }

    #[test]
    fn lines_are_sized_exactly() {
        let v = serde_json::json!({"password": "p&ss=w+rd \u{fc}", "n": [1, 2, 3]});
        let line = to_line(&v).unwrap();
        assert_eq!(
            line.len(),
            line.capacity(),
            "no spare capacity: it never grew"
        );
        assert_eq!(line.last(), Some(&b'\n'));
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&line).unwrap(),
            v
        );
    }

    #[test]
    fn escaped_method_names_are_read() {
        let req: RawRequest =
            serde_json::from_str(r#"{"jsonrpc":"2.0","id":1,"method":"\u0048ello"}"#).unwrap();
        assert_eq!(req.method, "Hello");
    }

    #[test]
    fn raw_request_keeps_params_raw() {
        let line =
            r#"{"jsonrpc":"2.0","id":7,"method":"SignIn","params":{"account":"a","password":"x"}}"#;
        let req: RawRequest = serde_json::from_str(line).unwrap();
        assert_eq!(req.method, "SignIn");
        assert_eq!(
            req.params.unwrap().get(),
            r#"{"account":"a","password":"x"}"#
        );
    }

    #[test]
    fn error_kind_survives_the_wire() {
        let e = BrokerError::new(ErrorKind::NeedsSignIn, "sign in");
        let rpc = RpcError::from(&e);
        let back: BrokerError =
            serde_json::from_str::<RpcError>(&serde_json::to_string(&rpc).unwrap())
                .unwrap()
                .into();
        assert_eq!(back.kind, ErrorKind::NeedsSignIn);
        assert_eq!(back.message, "sign in");
    }
}
