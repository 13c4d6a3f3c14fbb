//! A minimal DER reader (X.690 §8.1): just enough to see which key a PKCS#8, PKCS#1 or SEC1
//! structure holds before aws-lc-rs parses it, so that a refusal can name the problem (the
//! curve, the RSA size) instead of aws-lc-rs's generic "invalid encoding".
//!
//! It borrows from the input and never copies key material.

/// SEQUENCE.
pub(super) const SEQUENCE: u8 = 0x30;
/// INTEGER.
pub(super) const INTEGER: u8 = 0x02;
/// OCTET STRING.
pub(super) const OCTET_STRING: u8 = 0x04;
/// OBJECT IDENTIFIER.
pub(super) const OID: u8 = 0x06;
/// The context-specific, constructed tag `[0]` (SEC1 `parameters`).
pub(super) const CONTEXT_0: u8 = 0xa0;

/// A cursor over consecutive DER elements.
#[derive(Debug, Clone, Copy)]
pub(super) struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    /// A reader over `input`.
    pub(super) fn new(input: &'a [u8]) -> Self {
        Self(input)
    }

    /// The next element's tag and contents, or `None` at the end or on malformed input.
    pub(super) fn next(&mut self) -> Option<(u8, &'a [u8])> {
        let (&tag, rest) = self.0.split_first()?;
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            // Long form: the low bits count the length octets; four cover any key.
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 4 || rest.len() < count {
                return None;
            }
            let (octets, rest) = rest.split_at(count);
            let len = octets
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
            (len, rest)
        };
        if rest.len() < len {
            return None;
        }
        let (value, rest) = rest.split_at(len);
        self.0 = rest;
        Some((tag, value))
    }

    /// The next element's contents if its tag is `tag`.
    pub(super) fn expect(&mut self, tag: u8) -> Option<&'a [u8]> {
        match self.next()? {
            (found, value) if found == tag => Some(value),
            _ => None,
        }
    }

    /// The contents of the next element tagged `tag`, skipping elements before it.
    pub(super) fn find(&mut self, tag: u8) -> Option<&'a [u8]> {
        loop {
            let (found, value) = self.next()?;
            if found == tag {
                return Some(value);
            }
        }
    }
}

/// The size in bits of a DER INTEGER's contents taken as an unsigned number.
pub(super) fn unsigned_bits(value: &[u8]) -> usize {
    let digits = value
        .iter()
        .position(|&b| b != 0)
        .map_or(&[][..], |start| &value[start..]);
    match digits.first() {
        Some(&top) => (digits.len() - 1) * 8 + (8 - top.leading_zeros() as usize),
        None => 0,
    }
}

/// An encoded OID in dotted form, for messages about algorithms logoutd does not know.
pub(super) fn dotted(oid: &[u8]) -> String {
    let mut arcs: Vec<u64> = Vec::new();
    let mut acc: u64 = 0;
    for &byte in oid {
        acc = (acc << 7) | u64::from(byte & 0x7f);
        if byte & 0x80 == 0 {
            if arcs.is_empty() {
                // The first octet group packs the first two arcs as 40 * a + b.
                let first = (acc / 40).min(2);
                arcs.push(first);
                arcs.push(acc - first * 40);
            } else {
                arcs.push(acc);
            }
            acc = 0;
        }
    }
    arcs.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_short_and_long_lengths() {
        let mut long = vec![OCTET_STRING, 0x81, 0x80];
        long.extend([7u8; 0x80]);
        long.extend([INTEGER, 1, 5]);
        let mut reader = Reader::new(&long);
        assert_eq!(reader.expect(OCTET_STRING).map(<[u8]>::len), Some(0x80));
        assert_eq!(reader.expect(INTEGER), Some(&[5u8][..]));
        assert!(reader.next().is_none());
    }

    #[test]
    fn truncated_input_reads_as_nothing() {
        assert!(Reader::new(&[SEQUENCE, 5, 1, 2]).next().is_none());
        assert!(Reader::new(&[SEQUENCE, 0x82, 1]).next().is_none());
    }

    #[test]
    fn counts_bits_of_unsigned_integers() {
        assert_eq!(unsigned_bits(&[0x00, 0x80, 0x00]), 16);
        assert_eq!(unsigned_bits(&[0x01, 0xff]), 9);
        assert_eq!(unsigned_bits(&[0x00]), 0);
    }

    #[test]
    fn prints_oids_dotted() {
        assert_eq!(dotted(&[0x2b, 0x81, 0x04, 0x00, 0x22]), "1.3.132.0.34");
        assert_eq!(
            dotted(&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07]),
            "1.2.840.10045.3.1.7"
        );
    }
}
