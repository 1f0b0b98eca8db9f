use std::fmt;
use std::str::FromStr;

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// Why an id string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid id: expected 26 characters of Crockford base32")]
pub struct IdParseError;

macro_rules! opaque_id {
    ($name:ident, $doc:literal) => {
        #[doc = $doc]
        ///
        /// 128 bits: 48 bits of milliseconds since the Unix epoch, then 80 random bits, so ids
        /// sort by creation time and new records append at the end of ordered stores. Shown as
        /// 26 characters of Crockford base32. The id carries no personal data.
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name([u8; 16]);

        impl $name {
            /// Builds an id from a millisecond timestamp and 10 random bytes.
            pub fn from_parts(unix_ms: u64, random: [u8; 10]) -> Self {
                let mut b = [0u8; 16];
                b[..6].copy_from_slice(&unix_ms.to_be_bytes()[2..]);
                b[6..].copy_from_slice(&random);
                $name(b)
            }

            /// Wraps raw bytes read back from storage.
            pub fn from_bytes(bytes: [u8; 16]) -> Self {
                $name(bytes)
            }

            /// Reads an id from the first 16 bytes of a slice.
            pub fn from_slice(bytes: &[u8]) -> Option<Self> {
                let arr: [u8; 16] = bytes.get(..16)?.try_into().ok()?;
                Some($name(arr))
            }

            /// The raw bytes, as stored.
            pub fn as_bytes(&self) -> &[u8; 16] {
                &self.0
            }

            /// The milliseconds since the Unix epoch the id was made with: when the record
            /// it names was created.
            pub fn unix_ms(&self) -> u64 {
                let mut b = [0u8; 8];
                b[2..].copy_from_slice(&self.0[..6]);
                u64::from_be_bytes(b)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let n = u128::from_be_bytes(self.0);
                let mut out = [0u8; 26];
                for (i, c) in out.iter_mut().enumerate() {
                    // 128 bits = 3 + 25 * 5: the first character carries the top 3 bits.
                    let shift = 125 - 5 * i;
                    *c = ALPHABET[((n >> shift) & 0x1f) as usize];
                }
                f.write_str(std::str::from_utf8(&out).map_err(|_| fmt::Error)?)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({self})", stringify!($name))
            }
        }

        impl FromStr for $name {
            type Err = IdParseError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let s = s.trim();
                if s.len() != 26 {
                    return Err(IdParseError);
                }
                let mut n: u128 = 0;
                for (i, ch) in s.bytes().enumerate() {
                    let ch = ch.to_ascii_uppercase();
                    let ch = match ch {
                        b'O' => b'0',
                        b'I' | b'L' => b'1',
                        other => other,
                    };
                    let v = ALPHABET.iter().position(|&a| a == ch).ok_or(IdParseError)? as u128;
                    if i == 0 {
                        // The first character holds only the top 3 bits.
                        if v > 7 {
                            return Err(IdParseError);
                        }
                        n = v;
                    } else {
                        n = (n << 5) | v;
                    }
                }
                Ok($name(n.to_be_bytes()))
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

opaque_id!(
    SubjectId,
    "The stable opaque id of a subject (individual, household or organisation)."
);
opaque_id!(GiftId, "The opaque id of one gift.");
opaque_id!(
    InteractionId,
    "The opaque id of one interaction (a call, a meeting...): the same id in every participant's copy."
);
