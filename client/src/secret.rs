//! A secret string that can cross the wire but never shows in `Debug` and is wiped on drop.

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A password, client secret or access token.
///
/// It is zeroized when dropped, its `Debug` is redacted, and it has no `Display`. Serializing it
/// writes the secret itself: only protocol messages that must carry it use this type, and
/// whoever serializes one wipes the buffer afterwards.
#[derive(Clone)]
pub struct SecretText(SecretString);

impl SecretText {
    pub fn new(s: impl Into<String>) -> Self {
        Self(SecretString::from(s.into()))
    }

    /// The secret itself. Callers must not copy it into a non-zeroizing type.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    pub fn is_empty(&self) -> bool {
        self.expose().is_empty()
    }

    /// Comparison in constant time for secrets of the same length (the length is not secret).
    pub fn ct_eq(&self, other: &SecretText) -> bool {
        use subtle::ConstantTimeEq;
        self.expose()
            .as_bytes()
            .ct_eq(other.expose().as_bytes())
            .into()
    }
}

impl From<String> for SecretText {
    fn from(s: String) -> Self {
        Self(SecretString::from(s))
    }
}

impl From<SecretString> for SecretText {
    fn from(s: SecretString) -> Self {
        Self(s)
    }
}

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretText([redacted])")
    }
}

impl Serialize for SecretText {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.expose())
    }
}

impl<'de> Deserialize<'de> for SecretText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // `SecretString`'s own deserializer moves the one allocated `String` into the box.
        SecretString::deserialize(d).map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let s = SecretText::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn round_trips_through_json() {
        let s = SecretText::new("p&ss=w+rd%20/:x ünï\"\\");
        let json = serde_json::to_string(&s).unwrap();
        let back: SecretText = serde_json::from_str(&json).unwrap();
        assert!(back.ct_eq(&s));
        assert!(!back.ct_eq(&SecretText::new("other")));
        assert!(!back.ct_eq(&SecretText::new("")));
    }
}
