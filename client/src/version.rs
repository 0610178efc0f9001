//! The protocol version and its handshake encoding.

use serde::{Deserialize, Serialize};

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
}
