#![allow(clippy::unwrap_used, clippy::panic)]

use base64::Engine as _;
use tokenbroker_client::SecretText;
use zeroize::Zeroizing;

use super::client_auth::{basic_auth_value, encode_form, encode_json, Field};
use super::http::Reply;
use super::reply::{oauth_error, parse_token_reply};
use crate::error::Error;

fn reply(status: u16, ct: &str, body: &str) -> Reply {
    Reply {
        status,
        content_type: ct.into(),
        body: Zeroizing::new(body.as_bytes().to_vec()),
    }
}

#[test]
fn form_encoding_of_awkward_secrets() {
    let pw = SecretText::new("p&ss=w+rd%20/:x ünï");
    let body = encode_form(&[
        ("grant_type", Field::Text("password")),
        ("password", Field::Secret(&pw)),
    ]);
    let text = String::from_utf8(body.to_vec()).unwrap();
    assert_eq!(
        text,
        "grant_type=password&password=p%26ss%3Dw%2Brd%2520%2F%3Ax+%C3%BCn%C3%AF"
    );
    let decoded: Vec<(String, String)> = form_urlencoded::parse(text.as_bytes())
        .into_owned()
        .collect();
    assert_eq!(decoded[1].1, "p&ss=w+rd%20/:x ünï");
    assert!(body.capacity() >= body.len());
}

#[test]
fn basic_auth_form_encodes_before_base64() {
    let v = basic_auth_value("my client", &SecretText::new("s3cr&t=+%/: é"));
    let text = std::str::from_utf8(&v).unwrap();
    let b64 = text.strip_prefix("Basic ").unwrap();
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    assert_eq!(
        std::str::from_utf8(&raw).unwrap(),
        "my+client:s3cr%26t%3D%2B%25%2F%3A+%C3%A9"
    );
}

#[test]
fn parses_a_token_reply() {
    let t = parse_token_reply(&reply(
        200,
        "application/json",
        r#"{"access_token":"at","token_type":"bearer","expires_in":"60","refresh_token":"rt","scope":"read write","id_token":"x"}"#,
    ))
    .unwrap();
    assert_eq!(t.access_token.expose(), "at");
    assert_eq!(t.expires_in, 60);
    assert_eq!(t.refresh_token.unwrap().expose(), "rt");
    assert_eq!(t.scopes.unwrap(), ["read", "write"]);
}

#[test]
fn refuses_broken_replies_without_echoing_them() {
    for (status, ct, body, want) in [
        (200, "text/html", "<html>login</html>", "not JSON"),
        (
            200,
            "application/json",
            r#"{"access_token":"secret-at","expires_in":"#,
            "cut short",
        ),
        (
            200,
            "application/json",
            r#"{"token_type":"Bearer"}"#,
            "missing",
        ),
        (
            200,
            "application/json",
            r#"{"access_token":""}"#,
            "empty access_token",
        ),
        (500, "text/html", "<h1>oops secret-at</h1>", "HTTP 500"),
    ] {
        let e = parse_token_reply(&reply(status, ct, body))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains(want), "{e}");
        assert!(!e.contains("secret-at"), "{e}");
    }
}

#[test]
fn json_bodies_are_exact_and_escaped() {
    let pw = SecretText::new("p&ss=w+rd%20/:x \"ünï\\");
    let body = encode_json(&[
        ("grant_type", Field::Text("password")),
        ("user_name", Field::Text("bob")),
        ("password", Field::Secret(&pw)),
    ]);
    assert_eq!(body.len(), body.capacity());
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["password"], "p&ss=w+rd%20/:x \"ünï\\");
    assert_eq!(v["user_name"], "bob");
}

#[test]
fn vendor_error_shapes_are_understood() {
    for (body, code, desc) in [
        (
            r#"{"error":"invalid_scope","error_description":"no such scope"}"#,
            "invalid_scope",
            "no such scope",
        ),
        (
            r#"{"success":false,"Message":"Bad client","ErrorCode":"invalid_client"}"#,
            "invalid_client",
            "Bad client",
        ),
        (
            r#"{"error":{"code":"invalid_grant","message":"locked"}}"#,
            "invalid_grant",
            "locked",
        ),
    ] {
        match oauth_error(&reply(400, "application/json", body)) {
            Error::OAuth {
                error, description, ..
            } => {
                assert_eq!(error, code);
                assert_eq!(description.as_deref(), Some(desc));
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn oauth_errors_are_reported_with_description() {
    let e = parse_token_reply(&reply(
        400,
        "application/json",
        r#"{"error":"invalid_grant","error_description":"Invalid credentials given."}"#,
    ))
    .err()
    .unwrap();
    assert!(e.is_invalid_grant());
    assert_eq!(
        e.to_string(),
        "invalid_grant: Invalid credentials given. (HTTP 400)"
    );
}

#[test]
fn lifetimes_are_capped_at_a_year_whatever_their_form() {
    use super::reply::MAX_EXPIRES_IN;
    for (expires_in, want) in [
        ("18446744073709551615", MAX_EXPIRES_IN),
        ("1.8e20", MAX_EXPIRES_IN),
        ("1e308", MAX_EXPIRES_IN),
        ("\"1e30\"", MAX_EXPIRES_IN),
        ("\"18446744073709551616\"", MAX_EXPIRES_IN),
        ("\"99999999999999999999999999\"", MAX_EXPIRES_IN),
        ("3600", 3600),
        ("59.9", 59),
        ("\" 120 \"", 120),
        ("0", 0),
    ] {
        let body = format!(r#"{{"access_token":"at","expires_in":{expires_in}}}"#);
        let t = parse_token_reply(&reply(200, "application/json", &body))
            .unwrap_or_else(|e| panic!("{expires_in}: {e}"));
        assert_eq!(t.expires_in, want, "{expires_in}");
    }
    for bad in ["-1", "-1e9", "\"-5\"", "\"soon\"", "\"\"", "true"] {
        let body = format!(r#"{{"access_token":"at","expires_in":{bad}}}"#);
        assert!(
            parse_token_reply(&reply(200, "application/json", &body)).is_err(),
            "{bad}"
        );
    }
}
