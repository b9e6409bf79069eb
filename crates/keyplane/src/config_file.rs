//! `keyplane serve --config FILE`: the server's settings in a TOML file, the one the Debian package
//! installs as /etc/keyplane/server.toml (SPEC section 16). Its keys are the long flags of `serve`
//! with underscores (`listen`, `tls_cert`, `audit_retention`, ...). Each one stands behind the
//! flag's environment variable: a value is applied only when that variable is unset, and clap then
//! reads it like any other, so a flag wins over the environment, and the environment over the
//! file, and every value goes through the flag's own checks.

use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context};

/// A settings file is a few hundred bytes; a bigger one is a wrong path, not a configuration.
pub const MAX_BYTES: u64 = 64 * 1024;

/// Reads `path` and sets, for each key, the environment variable of the `serve` flag it names
/// when that variable is unset. Nothing is set unless the whole file is valid. Called before the
/// runtime starts, while the process has one thread.
pub fn apply(path: &Path, serve: &clap::Command) -> anyhow::Result<()> {
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_BYTES + 1).read_to_string(&mut text))
        .with_context(|| format!("reading the configuration {}", path.display()))?;
    if text.len() as u64 > MAX_BYTES {
        bail!(
            "the configuration {} is larger than {MAX_BYTES} bytes",
            path.display()
        );
    }
    for (env, value) in settings(&text, serve).with_context(|| path.display().to_string())? {
        if std::env::var_os(env).is_none() {
            std::env::set_var(env, value);
        }
    }
    Ok(())
}

/// The (environment variable, value) pairs of a settings file, or why it is refused.
fn settings<'a>(text: &str, serve: &'a clap::Command) -> anyhow::Result<Vec<(&'a str, String)>> {
    let table: toml::Table = text.parse().context("not valid TOML")?;
    let keys = keys(serve);
    let mut out = Vec::with_capacity(table.len());
    for (key, value) in table {
        let Some((_, env)) = keys.iter().find(|(k, _)| *k == key) else {
            let known: Vec<&str> = keys.iter().map(|(k, _)| k.as_str()).collect();
            bail!(
                "unknown key `{key}`; the keys are the flags of `keyplane serve` with underscores: {}",
                known.join(", ")
            );
        };
        let value = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(n) => n.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => bail!(
                "`{key}` must be a string, an integer or a boolean, not {}",
                other.type_str()
            ),
        };
        // An environment variable cannot hold a NUL byte (setting one would panic).
        if value.contains('\0') {
            bail!("`{key}` holds a NUL character");
        }
        out.push((*env, value));
    }
    Ok(out)
}

/// Each flag of `serve` that has an environment variable, as (file key, variable). `config`
/// itself is not a key: a file does not name another.
fn keys(serve: &clap::Command) -> Vec<(String, &str)> {
    serve
        .get_arguments()
        .filter(|a| a.get_id() != "config")
        .filter_map(|a| {
            let env = a.get_env()?.to_str()?;
            Some((a.get_long()?.replace('-', "_"), env))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn serve() -> clap::Command {
        crate::Cli::command()
            .find_subcommand("serve")
            .expect("serve")
            .clone()
    }

    #[test]
    fn keys_name_the_flags_environment_variables_with_values_as_clap_reads_them() {
        let cmd = serve();
        let mut got = settings(
            "listen = \"0.0.0.0:8443\"\nthrottle_per_second = 50\nemulator = true\n",
            &cmd,
        )
        .unwrap();
        got.sort();
        assert_eq!(
            got,
            [
                ("KEYPLANE_EMULATOR", "true".to_string()),
                ("KEYPLANE_LISTEN", "0.0.0.0:8443".to_string()),
                ("KEYPLANE_THROTTLE_PER_SECOND", "50".to_string()),
            ]
        );
    }

    #[test]
    fn unknown_keys_dashes_config_and_tables_are_refused() {
        let cmd = serve();
        for bad in [
            "lsten = \"x\"",
            "tls-cert = \"/x\"",
            "config = \"/etc/other.toml\"",
            "[db]\nurl = \"x\"",
            "listen = 1.5",
            "listen = ",
            "listen = \"127.0.0.1:80\\u0000\"",
        ] {
            assert!(settings(bad, &cmd).is_err(), "{bad}");
        }
        let err = settings("db = \"x\\u0000\"", &cmd).unwrap_err().to_string();
        assert!(err.contains("NUL"), "{err}");
        let err = settings("lsten = \"x\"", &cmd).unwrap_err().to_string();
        assert!(
            err.contains("unknown key `lsten`") && err.contains("tls_cert"),
            "{err}"
        );
    }

    #[test]
    fn the_packaged_server_toml_is_valid() {
        let cmd = serve();
        let got = settings(include_str!("../../../packaging/debian/server.toml"), &cmd).unwrap();
        let db = got.iter().find(|(env, _)| *env == "KEYPLANE_DB").unwrap();
        assert_eq!(db.1, "sqlite:///var/lib/keyplane/keyplane.db");
    }
}
