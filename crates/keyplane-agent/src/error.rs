//! The agent's one error type for work on the host. Its text is what the agent logs and reports
//! to the server (the console shows it), so it says what failed and where, in plain words; its
//! kind says whose problem it is.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostError {
    /// The desired state cannot be applied here: the user does not exist or has no home, the key
    /// or the password hash the server sent is not valid.
    Invalid(String),
    /// A path the agent, running as root, refuses to use: a symlink, a file with hard links or
    /// someone else's, one too large to be a key file.
    Refused(String),
    /// A file or directory could not be read or written.
    Io(String),
    /// A program (`sshd`, `chpasswd`, `mkdir`, the reload command) could not run or failed.
    Command(String),
}

impl HostError {
    /// The same kind of error, with what followed from it: `"{self}; {more}"`.
    pub fn and(self, more: impl fmt::Display) -> Self {
        let join = |m: String| format!("{m}; {more}");
        match self {
            Self::Invalid(m) => Self::Invalid(join(m)),
            Self::Refused(m) => Self::Refused(join(m)),
            Self::Io(m) => Self::Io(join(m)),
            Self::Command(m) => Self::Command(join(m)),
        }
    }

    /// A system call's failure on a descriptor already open (`fstat`, `fsync`).
    pub fn io(e: impl fmt::Display) -> Self {
        Self::Io(e.to_string())
    }
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid(m) | Self::Refused(m) | Self::Io(m) | Self::Command(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for HostError {}
