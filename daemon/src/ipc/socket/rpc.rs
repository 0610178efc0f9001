//! The socket's JSON-RPC 2.0 envelope and method table: a request line is parsed, its id and
//! version checked, its params decoded into the method's type (straight into zeroizing types
//! where they hold a secret), and one [`Broker`] method called. A reply line that may hold a
//! secret is sized exactly and wiped after it is written.

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokenbroker_client::protocol::{codes, methods, RawRequest, Response, RpcError, RpcErrorData};
use tokenbroker_client::types::*;
use tokenbroker_client::{BrokerError, ErrorKind, PROTOCOL_VERSION};

use crate::broker::{Broker, Subscription};
use crate::policy::Caller;

/// What a connection knows of itself.
pub struct Session {
    /// Its slot (and its app's count of subscriptions).
    pub ticket: super::Ticket,
    /// The pidfd of the process that connected, to check it again at every request.
    pub pidfd: Option<std::os::fd::OwnedFd>,
    /// The caller as identified when it connected: every request must come from it.
    pub caller: Caller,
    /// Hello was answered.
    pub greeted: bool,
    /// Set by Subscribe: the connection then also delivers events.
    pub subscription: Option<Subscription>,
}

pub fn rpc_error(code: i64, message: impl Into<String>) -> RpcError {
    let kind = ErrorKind::from_rpc_code(code);
    RpcError {
        code,
        message: message.into(),
        data: Some(RpcErrorData { kind }),
    }
}

pub fn error_line(id: serde_json::Value, error: RpcError) -> Vec<u8> {
    let resp: Response<()> = Response {
        jsonrpc: "2.0".into(),
        id,
        result: None,
        error: Some(error),
    };
    let mut v = serde_json::to_vec(&resp).unwrap_or_else(|_| b"{}".to_vec());
    v.push(b'\n');
    v
}

fn result_line<R: Serialize>(id: serde_json::Value, result: R) -> Vec<u8> {
    let resp = Response {
        jsonrpc: "2.0".into(),
        id: id.clone(),
        result: Some(result),
        error: None,
    };
    // Exactly sized: a reply may hold an access token, and is wiped after it is written.
    match tokenbroker_client::protocol::to_line(&resp) {
        Ok(v) => v,
        Err(e) => error_line(
            id,
            rpc_error(
                codes::INTERNAL_ERROR,
                format!("cannot encode the reply: {e}"),
            ),
        ),
    }
}

pub fn params<P: DeserializeOwned>(
    raw: Option<&serde_json::value::RawValue>,
) -> Result<P, RpcError> {
    let text = raw.map(|r| r.get()).unwrap_or("{}");
    if !text.trim_start().starts_with('{') {
        return Err(rpc_error(
            codes::INVALID_PARAMS,
            "params must be an object (by-name parameters)",
        ));
    }
    serde_json::from_str(text).map_err(|e| {
        // serde's message names the field, never a value of ours.
        rpc_error(codes::INVALID_PARAMS, format!("invalid params: {e}"))
    })
}

impl Session {
    /// Whether a request line came from the process that connected, and that process still
    /// runs the program it ran then. A connection is its process's: a child that inherited it,
    /// or the process after it executed another program, is refused.
    pub fn same_process(&self, senders: super::framing::Senders) -> Result<(), BrokerError> {
        let bound = self.caller.pid;
        if senders.mixed || (senders.pid.is_some() && bound.is_some() && senders.pid != bound) {
            return Err(BrokerError::new(
                ErrorKind::Denied,
                format!(
                    "a request came from another process (pid {}) than the one that opened the connection (pid {}): every process opens its own connection",
                    senders.pid.unwrap_or(0),
                    bound.unwrap_or(0)
                ),
            ));
        }
        #[cfg(target_os = "linux")]
        match &self.pidfd {
            Some(fd) => {
                use std::os::fd::AsFd;
                crate::policy::caller::recheck(&self.caller, fd.as_fd())
            }
            // A kernel before 6.5: by the pid.
            None => crate::policy::caller::recheck_by_pid(&self.caller),
        }
        .map_err(|m| BrokerError::new(ErrorKind::Denied, m))?;
        Ok(())
    }
}

/// A request line's envelope, checked: JSON-RPC 2.0 with a number or string id. Err: the id to
/// answer with (null when there is none) and the error; the connection is closed after it.
pub fn envelope(
    line: &[u8],
) -> Result<(serde_json::Value, RawRequest<'_>), (serde_json::Value, RpcError)> {
    let req: RawRequest = serde_json::from_slice(line).map_err(|e| {
        let code = if e.is_data() {
            codes::INVALID_REQUEST
        } else {
            codes::PARSE_ERROR
        };
        (
            serde_json::Value::Null,
            rpc_error(code, format!("malformed request: {e}")),
        )
    })?;
    let id = match &req.id {
        Some(id @ (serde_json::Value::Number(_) | serde_json::Value::String(_))) => id.clone(),
        _ => {
            return Err((
                serde_json::Value::Null,
                rpc_error(
                    codes::INVALID_REQUEST,
                    "a request needs a number or string id",
                ),
            ))
        }
    };
    if req.jsonrpc != "2.0" {
        return Err((
            id,
            rpc_error(codes::INVALID_REQUEST, "jsonrpc must be \"2.0\""),
        ));
    }
    Ok((id, req))
}

/// Handle one request line. Returns the reply line and whether to keep the connection open.
pub async fn handle(line: &[u8], broker: &Broker, session: &mut Session) -> (Vec<u8>, bool) {
    let (id, req) = match envelope(line) {
        Ok(r) => r,
        Err((id, e)) => return (error_line(id, e), false),
    };
    if !session.greeted && req.method != methods::HELLO {
        return (
            error_line(
                id,
                rpc_error(codes::INVALID_REQUEST, "the first request must be Hello"),
            ),
            false,
        );
    }
    if let Err(e) = broker.admit_request(&session.caller) {
        return (error_line(id, RpcError::from(&e)), true);
    }
    match dispatch(&req.method, req.params, broker, session).await {
        Ok(reply) => (reply(id), true),
        Err(Failure::Rpc(e)) => (error_line(id, e), true),
        Err(Failure::Broker(e)) => (error_line(id, RpcError::from(&e)), true),
        Err(Failure::Close(e)) => (error_line(id, e), false),
    }
}

enum Failure {
    Rpc(RpcError),
    Broker(BrokerError),
    /// Reply, then close the connection.
    Close(RpcError),
}

impl From<RpcError> for Failure {
    fn from(e: RpcError) -> Self {
        Failure::Rpc(e)
    }
}

impl From<BrokerError> for Failure {
    fn from(e: BrokerError) -> Self {
        Failure::Broker(e)
    }
}

type Reply = Box<dyn FnOnce(serde_json::Value) -> Vec<u8> + Send>;

fn ok<R: Serialize + Send + 'static>(r: R) -> Result<Reply, Failure> {
    Ok(Box::new(move |id| result_line(id, r)))
}

/// The method table: decode the params, call the one broker method.
async fn dispatch(
    method: &str,
    raw: Option<&serde_json::value::RawValue>,
    broker: &Broker,
    session: &mut Session,
) -> Result<Reply, Failure> {
    let caller = &session.caller;
    match method {
        methods::HELLO => {
            let p: HelloParams = params(raw).map_err(Failure::Close)?;
            if !p.protocol.compatible_with(PROTOCOL_VERSION) {
                return Err(Failure::Close(RpcError::from(&BrokerError::new(
                    ErrorKind::Protocol,
                    format!(
                        "this daemon speaks protocol {PROTOCOL_VERSION}, the client {}: upgrade the older one",
                        p.protocol
                    ),
                ))));
            }
            session.caller.client_hint = p
                .client
                .map(|c| c.chars().filter(|c| !c.is_control()).take(64).collect());
            session.greeted = true;
            ok(HelloReply {
                protocol: PROTOCOL_VERSION,
                daemon_version: env!("CARGO_PKG_VERSION").into(),
            })
        }
        methods::GET_TOKEN => ok(broker.get_token(caller, params(raw)?).await?),
        methods::LIST_ACCOUNTS => ok(broker.list_accounts(caller)),
        methods::STATUS => ok(broker.status(caller)),
        methods::SIGN_IN => {
            let p: SignInParams = params(raw)?;
            ok(broker.sign_in(caller, &p.account, p.password).await?)
        }
        methods::SIGN_OUT => {
            let p: AccountParams = params(raw)?;
            ok(broker.sign_out(caller, &p.account).await?)
        }
        methods::ADD_PROVIDER => ok(broker.add_provider(caller, params(raw)?).await?),
        methods::LIST_PROVIDERS => ok(broker.list_providers().await),
        methods::SET_APP_POLICY => ok(broker.set_app_policy(caller, params(raw)?).await?),
        methods::REMOVE_APP_POLICY => {
            let p: RemoveAppPolicyParams = params(raw)?;
            ok(broker.remove_app_policy(caller, &p.account, &p.exe).await?)
        }
        methods::GET_POLICY => {
            let p: PolicyQuery = params(raw)?;
            ok(broker.get_policy(caller, p.account.as_deref())?)
        }
        methods::LIST_CONSENTS => ok(broker.list_consents(caller)?),
        methods::INTROSPECT => {
            let p: AccountParams = params(raw)?;
            ok(broker.introspect(caller, &p.account).await?)
        }
        methods::LIST_PRESETS => ok(Broker::list_presets()),
        methods::ANSWER_CONSENT => {
            let p: AnswerConsentParams = params(raw)?;
            ok(broker.answer_consent(caller, p.id, p.answer)?)
        }
        methods::READ_AUDIT => {
            let p: AuditQuery = params(raw)?;
            ok(broker.read_audit(caller, &p)?)
        }
        methods::SUBSCRIBE => {
            let p: SubscribeParams = params(raw)?;
            if session.subscription.is_none() {
                let sub = broker.subscribe(caller, &p)?;
                session.ticket.subscribe()?;
                session.subscription = Some(sub);
            }
            ok(Done {})
        }
        methods::REMOVE_PROVIDER => {
            let p: NameParams = params(raw)?;
            ok(broker.remove_provider(caller, &p.name).await?)
        }
        methods::SET_CLIENT_SECRET => ok(broker.set_client_secret(caller, params(raw)?).await?),
        methods::ADD_ACCOUNT => ok(broker.add_account(caller, params(raw)?).await?),
        methods::REMOVE_ACCOUNT => {
            let p: NameParams = params(raw)?;
            ok(broker.remove_account(caller, &p.name).await?)
        }
        other => Err(Failure::Rpc(rpc_error(
            codes::METHOD_NOT_FOUND,
            format!("no method {:?}", other.chars().take(64).collect::<String>()),
        ))),
    }
}
