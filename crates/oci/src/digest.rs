//! Content digests (`sha256:...`, and `sha512:...` when reading).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::Digest as _;

use crate::Error;

/// A digest algorithm polyarch can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    /// The name used in digest strings.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
}

/// A validated content digest such as `sha256:e3b0...`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

impl Digest {
    /// The sha256 digest of `bytes`.
    pub fn sha256(bytes: &[u8]) -> Digest {
        let mut d = Digester::new(Algorithm::Sha256);
        d.update(bytes);
        d.finish()
    }

    /// The digest of `bytes` with the same algorithm as `self`.
    pub fn of_same_kind(&self, bytes: &[u8]) -> Digest {
        let mut d = Digester::new(self.algorithm);
        d.update(bytes);
        d.finish()
    }

    /// Checks that `bytes` hash to this digest.
    pub fn verify(&self, bytes: &[u8]) -> Result<(), Error> {
        let actual = self.of_same_kind(bytes);
        if &actual == self {
            Ok(())
        } else {
            Err(Error::DigestMismatch { expected: self.to_string(), actual: actual.to_string() })
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The hex-encoded part after the colon.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// A new incremental hasher for this digest's algorithm.
    pub fn digester(&self) -> Digester {
        Digester::new(self.algorithm)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.name(), self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

fn valid_algorithm_syntax(a: &str) -> bool {
    // go-digest: [a-z0-9]+(?:[.+_-][a-z0-9]+)*
    !a.is_empty()
        && a.split(['.', '+', '_', '-'])
            .all(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
}

impl FromStr for Digest {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let invalid = |reason| Error::InvalidDigest { input: s.to_string(), reason };
        let (alg, hex) = s.split_once(':').ok_or_else(|| invalid("missing ':' between algorithm and hex"))?;
        if !valid_algorithm_syntax(alg) {
            return Err(invalid("malformed algorithm"));
        }
        let algorithm = match alg {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            other => return Err(Error::UnsupportedAlgorithm { input: s.to_string(), algorithm: other.to_string() }),
        };
        if hex.len() != algorithm.hex_len() {
            return Err(invalid("wrong length of the hex part"));
        }
        if !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(invalid("the hex part must be lower-case hexadecimal"));
        }
        Ok(Digest { algorithm, hex: hex.to_string() })
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An incremental hasher that yields a [`Digest`].
#[derive(Clone)]
pub enum Digester {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl Digester {
    pub fn new(algorithm: Algorithm) -> Digester {
        match algorithm {
            Algorithm::Sha256 => Digester::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => Digester::Sha512(sha2::Sha512::new()),
        }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Digester::Sha256(h) => h.update(bytes),
            Digester::Sha512(h) => h.update(bytes),
        }
    }

    pub fn finish(self) -> Digest {
        match self {
            Digester::Sha256(h) => Digest { algorithm: Algorithm::Sha256, hex: hex::encode(h.finalize()) },
            Digester::Sha512(h) => Digest { algorithm: Algorithm::Sha512, hex: hex::encode(h.finalize()) },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn sha256_of_empty() {
        assert_eq!(Digest::sha256(b"").to_string(), EMPTY);
    }

    #[test]
    fn parse_round_trip_and_verify() {
        let d: Digest = EMPTY.parse().unwrap();
        assert_eq!(d.to_string(), EMPTY);
        d.verify(b"").unwrap();
        assert!(d.verify(b"x").is_err());
    }

    #[test]
    fn sha512_accepted() {
        let mut h = Digester::new(Algorithm::Sha512);
        h.update(b"abc");
        let d = h.finish();
        let back: Digest = d.to_string().parse().unwrap();
        assert_eq!(back.algorithm(), Algorithm::Sha512);
    }

    #[test]
    fn rejects_bad_digests() {
        for bad in
            ["", "sha256", "sha256:abc", "SHA256:00", &EMPTY.to_uppercase(), "md5:d41d8cd98f00b204e9800998ecf8427e"]
        {
            assert!(bad.parse::<Digest>().is_err(), "{bad}");
        }
        assert!(matches!("md5:00".parse::<Digest>(), Err(Error::UnsupportedAlgorithm { .. })));
    }
}
