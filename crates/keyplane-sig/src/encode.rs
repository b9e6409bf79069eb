//! RFC 3986 percent-encoding, the canonical form both Alibaba signatures are computed over.
//!
//! Clients put `+` or `%20` for a space and may leave `*` or `~` bare on the wire, so a server must
//! never sign the raw query: it decodes, then re-encodes with this one function.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Everything but the unreserved set `A-Z a-z 0-9 - _ . ~` is escaped, as upper-case `%XX`.
const RFC3986: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes `s` per RFC 3986 (space is `%20`, `*` is `%2A`).
pub fn pct(s: &str) -> String {
    utf8_percent_encode(s, RFC3986).to_string()
}

#[cfg(test)]
mod tests {
    use super::pct;

    #[test]
    fn only_unreserved_characters_stay_literal() {
        assert_eq!(pct("a b*~-_.:/"), "a%20b%2A~-_.%3A%2F");
        assert_eq!(pct("新"), "%E6%96%B0");
    }
}
