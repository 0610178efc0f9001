//! JSON-RPC 2.0 framing of the local socket protocol: the envelope, error codes, method names.
//!
//! One request per line, one response per line, UTF-8 JSON, a line at most [`MAX_LINE`] bytes
//! including the newline. The first request on a connection must be `Hello`.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::error::{BrokerError, ErrorKind};
use crate::types::Notification;

/// The longest request or response line, newline included.
pub const MAX_LINE: usize = 64 * 1024;

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

/// An event as the JSON-RPC notification line a subscribed connection receives: the method is
/// the event's name, the params the event. Empty if it cannot be encoded (it always can).
pub fn notification_line(n: &Notification) -> Vec<u8> {
    let ev = Event {
        jsonrpc: "2.0".into(),
        method: n.name().into(),
        params: n,
    };
    let mut v = serde_json::to_vec(&ev).unwrap_or_default();
    v.push(b'\n');
    v
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

impl ErrorKind {
    /// The JSON-RPC error code: -32001 onwards, in the order of [`ErrorKind::ALL`].
    pub fn rpc_code(self) -> i64 {
        let idx = ErrorKind::ALL.iter().position(|k| *k == self).unwrap_or(0) as i64;
        codes::SERVER_ERROR_BASE - 1 - idx
    }

    pub fn from_rpc_code(code: i64) -> ErrorKind {
        use codes::*;
        match code {
            PARSE_ERROR | INVALID_REQUEST => ErrorKind::Protocol,
            METHOD_NOT_FOUND | INVALID_PARAMS => ErrorKind::InvalidArgument,
            _ => {
                let idx = SERVER_ERROR_BASE - 1 - code;
                usize::try_from(idx)
                    .ok()
                    .and_then(|i| ErrorKind::ALL.get(i).copied())
                    .unwrap_or(ErrorKind::Internal)
            }
        }
    }
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
    fn rpc_codes_are_distinct_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for k in ErrorKind::ALL {
            let c = k.rpc_code();
            assert!((-32099..=-32001).contains(&c), "{k:?} -> {c}");
            assert!(seen.insert(c));
            assert_eq!(ErrorKind::from_rpc_code(c), k);
        }
        assert_eq!(ErrorKind::from_rpc_code(-32700), ErrorKind::Protocol);
        assert_eq!(ErrorKind::from_rpc_code(-32602), ErrorKind::InvalidArgument);
        assert_eq!(ErrorKind::from_rpc_code(12), ErrorKind::Internal);
    }

    #[test]
    fn notification_lines_name_the_event() {
        let line = notification_line(&Notification::SignInRequired {
            account: "a".into(),
            reason: "r".into(),
        });
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["method"], "SignInRequired");
        assert_eq!(v["params"]["event"], "SignInRequired");
        assert_eq!(line.last(), Some(&b'\n'));
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
