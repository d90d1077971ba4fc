//! The local Postgres clusters' password. Every local cluster authenticates with scram-sha-256;
//! the one role, `keel`, has a password made at random the first time a cluster is created, kept
//! under the state folder (never in the repository or in a connection URL of the configuration):
//!
//! - `{state}/secrets/postgres-password`: the password alone (what `initdb --pwfile` reads);
//! - `{state}/secrets/pgpass`: a libpq password file for it, which psql, pg_basebackup, the
//!   standbys' WAL receivers and sqlx all read through `PGPASSFILE`.
//!
//! Both are mode 0600 and belong to the Postgres user when the stack runs as root (its tools run as
//! that user). nisshi reads no password file: its storage URL gets the password from
//! [`with_password`], passed in its environment, not on its command line.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::unistd::{chown, geteuid, User};

use crate::tools::{state_dir, Tools};
use crate::LocalError;

/// Where the local password lives.
pub fn secrets_dir() -> PathBuf {
    state_dir().join("secrets")
}

/// The password alone, as `initdb --pwfile` reads it.
pub fn password_file() -> PathBuf {
    secrets_dir().join("postgres-password")
}

/// The password file libpq and sqlx read: `PGPASSFILE` when set, else the local one.
pub fn pgpass_file() -> PathBuf {
    std::env::var_os("PGPASSFILE")
        .filter(|f| !f.is_empty())
        .map_or_else(|| secrets_dir().join("pgpass"), PathBuf::from)
}

/// The local password, if one was made.
pub fn password() -> Option<String> {
    std::fs::read_to_string(password_file())
        .ok()
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
}

/// Makes the password and the password file once (later calls keep them), and points this
/// process and what it starts at the password file. Returns the password file.
pub fn ensure(tools: &Tools) -> Result<PathBuf, LocalError> {
    let dir = secrets_dir();
    let io = |what: String| move |source| LocalError::Io { what, source };
    std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
        .map_err(io(format!("restricting {}", dir.display())))?;
    let password = match password() {
        Some(password) => password,
        None => {
            let password = hex(&rand_bytes());
            write_private(&password_file(), &password)?;
            password
        }
    };
    let pgpass = secrets_dir().join("pgpass");
    // Any host, port and database on this machine, for the one local role.
    write_private(&pgpass, &format!("*:*:*:keel:{password}\n"))?;
    for path in [&dir, &password_file(), &pgpass] {
        give_to_postgres_user(tools, path)?;
    }
    use_local_pgpass();
    Ok(pgpass)
}

/// Points libpq and sqlx, in this process and what it starts, at the local password file, unless
/// `PGPASSFILE` is set already or there is no local password (not the local stack).
pub fn use_local_pgpass() {
    if std::env::var_os("PGPASSFILE").is_some_and(|f| !f.is_empty()) {
        return;
    }
    let pgpass = secrets_dir().join("pgpass");
    if pgpass.exists() {
        // Called at the start of a program, before it starts any thread.
        std::env::set_var("PGPASSFILE", pgpass);
    }
}

/// `postgres://keel@host:port/db` with the local password in it, for a client that reads no
/// password file (nisshi). Unchanged when there is no local password or the URL has one.
pub fn with_password(url: &str) -> String {
    match password() {
        Some(password) => insert_password(url, &password),
        None => url.to_owned(),
    }
}

fn insert_password(url: &str, password: &str) -> String {
    match url.split_once("://keel@") {
        Some((scheme, rest)) => format!("{scheme}://keel:{password}@{rest}"),
        None => url.to_owned(),
    }
}

fn write_private(path: &Path, text: &str) -> Result<(), LocalError> {
    let _ = std::fs::remove_file(path);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .map_err(|source| LocalError::Io {
            what: format!("writing {}", path.display()),
            source,
        })
}

/// Makes `path` the Postgres user's when the stack runs as root (its tools run as that user).
pub(crate) fn give_to_postgres_user(tools: &Tools, path: &Path) -> Result<(), LocalError> {
    if !geteuid().is_root() {
        return Ok(());
    }
    let user = User::from_name(&tools.pg_user)
        .ok()
        .flatten()
        .ok_or_else(|| LocalError::Failed {
            what: "finding the Postgres user".to_owned(),
            detail: format!("no user {} (install.sh creates it)", tools.pg_user),
        })?;
    chown(path, Some(user.uid), None).map_err(|e| LocalError::Failed {
        what: format!("giving {} to {}", path.display(), tools.pg_user),
        detail: e.to_string(),
    })
}

fn rand_bytes() -> [u8; 24] {
    let mut bytes = [0u8; 24];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .expect("/dev/urandom is readable");
    bytes
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_gets_the_password_only_where_it_names_the_local_role() {
        assert_eq!(
            insert_password("postgres://keel@127.0.0.1:54321/keel_tm", "pw"),
            "postgres://keel:pw@127.0.0.1:54321/keel_tm"
        );
        assert_eq!(
            insert_password("postgres://other@127.0.0.1:1/db", "pw"),
            "postgres://other@127.0.0.1:1/db"
        );
        assert_eq!(
            insert_password("postgres://keel:set@127.0.0.1:1/db", "pw"),
            "postgres://keel:set@127.0.0.1:1/db"
        );
    }
}
