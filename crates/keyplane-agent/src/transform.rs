//! Pure text transforms of authorized_keys and sshd configuration, tested table-driven.
//!
//! The managed part is always between two marker lines; everything else a person wrote is kept as
//! it is. A marker without its partner is dropped on its own, never the lines around it.

use keyplane_core::pubkey::PublicKey;

pub const BEGIN: &str = "# BEGIN keyplane managed key (do not edit: changes are reported as drift)";
pub const END: &str = "# END keyplane managed key";
pub const GRANTS_BEGIN: &str =
    "# BEGIN keyplane grants (do not edit: changes are undone at the next apply)";
pub const GRANTS_END: &str = "# END keyplane grants";
pub const SSHD_BEGIN: &str = "# BEGIN keyplane managed block (password login)";
pub const SSHD_END: &str = "# END keyplane managed block";

fn is_marker(line: &str, marker: &str) -> bool {
    let head = marker.split(" (").next().unwrap_or(marker);
    line.trim_end_matches('\r').trim().starts_with(head)
}

/// Splits `text` into the lines outside managed sections and the lines inside them.
fn split(text: &str, begin: &str, end: &str) -> (Vec<String>, Vec<String>) {
    let lines: Vec<&str> = text.lines().collect();
    let (mut outside, mut inside) = (Vec::new(), Vec::new());
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim_end_matches('\r');
        if is_marker(line, begin) {
            match lines[i + 1..].iter().position(|l| is_marker(l, end)) {
                Some(n) => {
                    inside.extend(
                        lines[i + 1..i + 1 + n]
                            .iter()
                            .map(|l| l.trim_end_matches('\r').to_string()),
                    );
                    i += n + 2;
                }
                // A BEGIN with no END: drop the marker alone.
                None => i += 1,
            }
            continue;
        }
        if !is_marker(line, end) {
            outside.push(line.to_string());
        }
        i += 1;
    }
    (outside, inside)
}

/// authorized_keys with `key` (an OpenSSH line) as the only managed key, or none.
pub fn authorized_keys(old: &str, key: Option<&str>) -> String {
    let (mut lines, _) = split(old, BEGIN, END);
    while lines.last().is_some_and(|l| l.trim().is_empty()) {
        lines.pop();
    }
    if let Some(key) = key {
        lines.push(BEGIN.to_string());
        lines.push(key.to_string());
        lines.push(END.to_string());
    }
    if lines.is_empty() {
        return String::new();
    }
    lines.join("\n") + "\n"
}

/// authorized_keys with `lines` (granted keys, options included) as the grants section, or no
/// section when there are none; the vendor's managed key and every hand-written line are kept.
pub fn grants_section(old: &str, lines: &[String]) -> String {
    let (mut kept, _) = split(old, GRANTS_BEGIN, GRANTS_END);
    while kept.last().is_some_and(|l| l.trim().is_empty()) {
        kept.pop();
    }
    if !lines.is_empty() {
        kept.push(GRANTS_BEGIN.to_string());
        kept.extend(lines.iter().cloned());
        kept.push(GRANTS_END.to_string());
    }
    if kept.is_empty() {
        return String::new();
    }
    kept.join("\n") + "\n"
}

/// The grant IDs of the lines in the grants section (their comment names them).
pub fn granted_ids(text: &str) -> Vec<String> {
    let (_, inside) = split(text, GRANTS_BEGIN, GRANTS_END);
    inside
        .iter()
        .filter_map(|l| {
            l.rsplit_once(GRANT_TAG)
                .map(|(_, id)| id.trim().to_string())
        })
        .collect()
}

/// The comment that ends a granted line: `keyplane-grant:<GrantId>`.
pub const GRANT_TAG: &str = "keyplane-grant:";

/// SHA-256 fingerprints of the keys inside the managed sections (lines that do not parse count as
/// `invalid`, so an edit by hand is seen).
pub fn managed_fingerprints(text: &str) -> Vec<String> {
    let (_, inside) = split(text, BEGIN, END);
    inside
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            PublicKey::parse(l)
                .map(|k| k.sha256_fingerprint())
                .unwrap_or_else(|_| "invalid".into())
        })
        .collect()
}

fn password_lines(password_login: bool) -> String {
    let v = if password_login { "yes" } else { "no" };
    format!("PasswordAuthentication {v}\nKbdInteractiveAuthentication {v}\n")
}

/// `RevokedKeys FILE` when keys are revoked (SPEC section 15); nothing otherwise, so a host that
/// never had a key revoked keeps the drop-in every earlier release wrote.
fn revoked_line(revoked_keys: Option<&str>) -> String {
    revoked_keys.map_or(String::new(), |f| format!("RevokedKeys {f}\n"))
}

/// The drop-in that sorts first in `sshd_config.d` (sshd keeps the first value it reads).
pub fn dropin(password_login: bool, revoked_keys: Option<&str>) -> String {
    format!(
        "# Managed by keyplane: password login for SSH.\n{}{}",
        password_lines(password_login),
        revoked_line(revoked_keys)
    )
}

/// For an sshd_config without an Include: the managed block at the very top, before any Match.
pub fn sshd_config_block(old: &str, password_login: bool, revoked_keys: Option<&str>) -> String {
    let (lines, _) = split(old, SSHD_BEGIN, SSHD_END);
    let mut out = format!(
        "{SSHD_BEGIN}\n{}{}{SSHD_END}\n",
        password_lines(password_login),
        revoked_line(revoked_keys)
    );
    if !lines.is_empty() {
        out.push_str(&(lines.join("\n") + "\n"));
    }
    out
}

/// Whether sshd_config includes the drop-in directory (an `Include` naming it or a glob in it).
pub fn includes_dir(config: &str, dir: &str) -> bool {
    let dir = dir.trim_end_matches('/');
    config.lines().any(|l| {
        let mut words = l.split_whitespace();
        words
            .next()
            .is_some_and(|w| w.eq_ignore_ascii_case("include"))
            && words.any(|w| {
                w.starts_with(dir) || (!w.starts_with('/') && dir.ends_with("sshd_config.d"))
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIN9gNeKySbL3MUv0aK94NY7akFL/u8wiGq5+p7UWr8/f k1";
    const K2: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJRIqHAmxWtbHTwwJEJtS5NH2MftmH1bOLMnTzFSCTBg k2";
    const HAND: &str = "ssh-rsa AAAAB3Nza hand@laptop";

    fn managed(k: &str) -> String {
        format!("{BEGIN}\n{k}\n{END}\n")
    }

    #[test]
    fn authorized_keys_transforms() {
        let cases: Vec<(&str, String, Option<&str>, String)> = vec![
            ("empty file", String::new(), Some(K1), managed(K1)),
            (
                "hand key kept",
                format!("{HAND}\n"),
                Some(K1),
                format!("{HAND}\n{}", managed(K1)),
            ),
            (
                "no trailing newline",
                HAND.to_string(),
                Some(K1),
                format!("{HAND}\n{}", managed(K1)),
            ),
            (
                "replace",
                format!("{HAND}\n{}", managed(K1)),
                Some(K2),
                format!("{HAND}\n{}", managed(K2)),
            ),
            (
                "unbind keeps hand keys",
                format!("{HAND}\n{}", managed(K1)),
                None,
                format!("{HAND}\n"),
            ),
            ("unbind of nothing", String::new(), None, String::new()),
            (
                "duplicated sections",
                format!("{}{HAND}\n{}", managed(K1), managed(K1)),
                Some(K2),
                format!("{HAND}\n{}", managed(K2)),
            ),
            (
                "stray BEGIN keeps the lines after it",
                format!("{BEGIN}\n{HAND}\n"),
                Some(K1),
                format!("{HAND}\n{}", managed(K1)),
            ),
            (
                "stray END",
                format!("{HAND}\n{END}\n"),
                None,
                format!("{HAND}\n"),
            ),
            (
                "CRLF",
                format!("{HAND}\r\n{BEGIN}\r\n{K1}\r\n{END}\r\n"),
                Some(K2),
                format!("{HAND}\n{}", managed(K2)),
            ),
            (
                "idempotent",
                format!("{HAND}\n{}", managed(K1)),
                Some(K1),
                format!("{HAND}\n{}", managed(K1)),
            ),
        ];
        for (what, old, key, want) in cases {
            assert_eq!(authorized_keys(&old, key), want, "{what}");
        }
    }

    #[test]
    fn fingerprints_come_only_from_the_managed_section() {
        let text = format!("{HAND}\n{}", managed(K1));
        let fps = managed_fingerprints(&text);
        assert_eq!(
            fps,
            vec![PublicKey::parse(K1).unwrap().sha256_fingerprint()]
        );
        assert!(managed_fingerprints(HAND).is_empty());
        assert_eq!(
            managed_fingerprints(&managed("ssh-ed25519 edited-by-hand")),
            vec!["invalid".to_string()]
        );
    }

    #[test]
    fn sshd_transforms() {
        assert_eq!(dropin(false, None), "# Managed by keyplane: password login for SSH.\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n");
        let cfg = "Port 22\nMatch User x\n  PasswordAuthentication yes\n";
        let once = sshd_config_block(cfg, false, None);
        assert!(once.starts_with(SSHD_BEGIN) && once.ends_with(cfg));
        assert_eq!(sshd_config_block(&once, false, None), once, "idempotent");
        assert!(sshd_config_block(&once, true, None)
            .contains("PasswordAuthentication yes\nKbdInteractiveAuthentication yes\n# END"));
        assert!(includes_dir(
            "Include /etc/ssh/sshd_config.d/*.conf\n",
            "/etc/ssh/sshd_config.d"
        ));
        assert!(!includes_dir("Port 22\n", "/etc/ssh/sshd_config.d"));
    }
}
