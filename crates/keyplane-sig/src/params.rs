//! Form decoding of a query string or `application/x-www-form-urlencoded` body.
//!
//! Unlike most decoders it keeps empty values (the old Alibaba SDK signs `SignatureType=`) and it
//! refuses bytes that are not UTF-8 instead of replacing them, so a mangled parameter is an error the
//! client sees rather than a silently different value.

/// Decoded `(name, value)` pairs in wire order.
pub type Params = Vec<(String, String)>;

/// A parameter whose bytes are not valid UTF-8 after percent-decoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("parameter is not valid UTF-8 after decoding: {0}")]
pub struct NotUtf8(pub String);

/// Decodes `a=1&b=&c` into `[("a","1"),("b",""),("c","")]`; `+` is a space.
pub fn decode_form(input: &[u8]) -> Result<Params, NotUtf8> {
    let mut out = Vec::new();
    for part in input.split(|b| *b == b'&') {
        if part.is_empty() {
            continue;
        }
        let (name, value) = match part.iter().position(|b| *b == b'=') {
            Some(i) => (&part[..i], &part[i + 1..]),
            None => (part, &[][..]),
        };
        let name = decode_component(name)?;
        let value = decode_component(value).map_err(|_| NotUtf8(name.clone()))?;
        out.push((name, value));
    }
    Ok(out)
}

fn decode_component(raw: &[u8]) -> Result<String, NotUtf8> {
    let plus_as_space: Vec<u8> = raw
        .iter()
        .map(|b| if *b == b'+' { b' ' } else { *b })
        .collect();
    let bytes: Vec<u8> = percent_encoding::percent_decode(&plus_as_space).collect();
    String::from_utf8(bytes).map_err(|_| NotUtf8(String::from_utf8_lossy(raw).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_empty_values_and_decodes_plus_as_space() {
        let p = decode_form(b"SignatureType=&KeyPairName=a+b%2A&flag").unwrap();
        assert_eq!(
            p,
            vec![
                ("SignatureType".into(), "".into()),
                ("KeyPairName".into(), "a b*".into()),
                ("flag".into(), "".into())
            ]
        );
    }

    #[test]
    fn refuses_bytes_that_are_not_utf8() {
        assert_eq!(
            decode_form(b"KeyPairName=%FF%FE").unwrap_err(),
            NotUtf8("KeyPairName".into())
        );
    }
}
