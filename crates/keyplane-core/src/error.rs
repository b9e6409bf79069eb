//! The dialect-neutral error of every core rule. Each dialect owns the table from these kinds to its
//! code, message and HTTP status, matched exhaustively so a new kind cannot ship unmapped.

/// A request-level failure: the whole call fails and nothing changes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoreError {
    #[error("missing parameter {0}")]
    MissingParameter(String),
    #[error("invalid parameter {name}: {reason}")]
    InvalidParameter { name: String, reason: String },
    #[error("unknown region {0}")]
    RegionNotFound(String),
    #[error("unknown zone {0}")]
    ZoneNotFound(String),
    #[error("unknown image {0}")]
    ImageNotFound(String),
    #[error("invalid key pair name {0:?}")]
    InvalidKeyPairName(String),
    #[error("invalid description")]
    InvalidDescription,
    #[error("invalid public key: {0}")]
    InvalidPublicKey(String),
    #[error("key pair {0} already exists")]
    KeyPairAlreadyExists(String),
    #[error("key pair {0} not found")]
    KeyPairNotFound(String),
    #[error("key pair quota of {0} per region exceeded")]
    KeyPairQuotaExceeded(usize),
    #[error("key pair {0} is still bound to instances")]
    KeyPairInUse(String),
    #[error("instance ID list is malformed")]
    InvalidInstanceIds,
    #[error("more than {0} instance IDs")]
    TooManyInstanceIds(usize),
    #[error("key pair name list is malformed")]
    InvalidKeyPairNames,
    #[error("more than {0} key pair names")]
    TooManyKeyPairNames(usize),
    #[error("instance {0} not found")]
    InstanceNotFound(String),
    #[error("the instance status does not allow this operation")]
    IncorrectInstanceStatus,
    #[error("invalid tag: {0}")]
    InvalidTag(String),
    #[error("too many tags")]
    TooManyTags,
    #[error("invalid status {0}")]
    InvalidStatus(String),
    #[error("unknown filter key {0}")]
    InvalidFilterKey(String),
    #[error("the pagination token is invalid")]
    InvalidNextToken,
    #[error("the client token is malformed")]
    InvalidClientToken,
    #[error("the client token was used with other parameters")]
    IdempotentParameterMismatch,
    #[error("a request with this client token is still being processed")]
    IdempotentProcessing,
    #[error("throttled")]
    Throttled,
    #[error("not authorized: {action} on {resource}")]
    Forbidden { action: String, resource: String },
    #[error("malformed policy document: {0}")]
    MalformedPolicy(String),
    #[error("user {0} already exists")]
    UserAlreadyExists(String),
    #[error("user {0} not found")]
    UserNotFound(String),
    #[error("user {0} still has AccessKeys")]
    UserHasAccessKeys(String),
    #[error("user {0} still has policies")]
    UserHasPolicies(String),
    #[error("invalid user name {0:?}")]
    InvalidUserName(String),
    #[error("at most {0} AccessKeys per user")]
    AccessKeyLimit(usize),
    #[error("AccessKey {0} not found")]
    AccessKeyNotFound(String),
    #[error("policy {0} already exists")]
    PolicyAlreadyExists(String),
    #[error("policy {0} not found")]
    PolicyNotFound(String),
    #[error("policy {0} is still attached")]
    PolicyInUse(String),
    #[error("policy {0} is already attached to the user")]
    PolicyAlreadyAttached(String),
    #[error("policy {0} is not attached to the user")]
    PolicyNotAttached(String),
    #[error("invalid password: {0}")]
    InvalidPassword(String),
    /// The user has no console password (GetLoginProfile, UpdateLoginProfile, DeleteLoginProfile).
    #[error("user {0} has no login profile")]
    LoginProfileNotFound(String),
    /// An instance login password that breaks the vendor rule (the reason never quotes it).
    #[error("invalid instance password: {0}")]
    InvalidInstancePassword(String),
    /// An instance name, description or host name that breaks the vendor rule.
    #[error("invalid {attribute}: {reason}")]
    InvalidInstanceAttribute {
        attribute: InstanceAttribute,
        reason: String,
    },
    #[error("dry run passed")]
    DryRunOperation,
    /// The database is out of reach; nothing was written and the call may be retried.
    #[error("the service is temporarily unavailable")]
    ServiceUnavailable,
    /// The queue of CPU-heavy work (password hashing, key generation) is full; nothing was done
    /// and the call may be retried.
    #[error("the server is busy")]
    Busy,
    #[error("internal error: {0}")]
    Internal(String),
    #[error("grant {0} not found")]
    GrantNotFound(String),
    /// The key pair was revoked (`keyplane access revoke-key`): it cannot be bound or granted
    /// until it is unrevoked.
    #[error("key pair {0} is revoked")]
    KeyPairRevoked(String),
    /// An emulator control called on a server that does not run as an emulator (SPEC section 14).
    #[error("emulator mode is off")]
    EmulatorOff,
    /// An error an emulator fault injects (SPEC section 14): the dialect answers `code` with its
    /// own HTTP status for a code it knows, else `status`.
    #[error("injected {code}: {message}")]
    Injected {
        code: &'static str,
        message: String,
        status: u16,
    },
}

impl CoreError {
    /// One error of each kind a dialect renders with its own code: a dialect learns the HTTP
    /// status it gives a code from these (an injected fault of a known code answers with it).
    /// `Internal` is left out: rendering one logs it as a bug.
    pub fn examples() -> Vec<CoreError> {
        let s = String::new;
        vec![
            Self::MissingParameter(s()),
            Self::invalid("x", ""),
            Self::RegionNotFound(s()),
            Self::ZoneNotFound(s()),
            Self::ImageNotFound(s()),
            Self::InvalidKeyPairName(s()),
            Self::InvalidDescription,
            Self::InvalidPublicKey(s()),
            Self::KeyPairAlreadyExists(s()),
            Self::KeyPairNotFound(s()),
            Self::KeyPairQuotaExceeded(0),
            Self::KeyPairInUse(s()),
            Self::InvalidInstanceIds,
            Self::TooManyInstanceIds(0),
            Self::InvalidKeyPairNames,
            Self::TooManyKeyPairNames(0),
            Self::InstanceNotFound(s()),
            Self::IncorrectInstanceStatus,
            Self::InvalidTag(s()),
            Self::TooManyTags,
            Self::InvalidStatus(s()),
            Self::InvalidFilterKey(s()),
            Self::InvalidNextToken,
            Self::InvalidClientToken,
            Self::IdempotentParameterMismatch,
            Self::IdempotentProcessing,
            Self::Throttled,
            Self::Forbidden {
                action: s(),
                resource: s(),
            },
            Self::MalformedPolicy(s()),
            Self::UserAlreadyExists(s()),
            Self::UserNotFound(s()),
            Self::AccessKeyNotFound(s()),
            Self::PolicyNotFound(s()),
            Self::InvalidPassword(s()),
            Self::InvalidInstancePassword(s()),
            Self::DryRunOperation,
            Self::ServiceUnavailable,
            Self::Busy,
            Self::EmulatorOff,
            Self::GrantNotFound(s()),
            Self::KeyPairRevoked(s()),
        ]
    }

    pub fn missing(name: &str) -> Self {
        Self::MissingParameter(name.to_string())
    }

    pub fn invalid(name: &str, reason: impl Into<String>) -> Self {
        Self::InvalidParameter {
            name: name.to_string(),
            reason: reason.into(),
        }
    }
}

/// The instance attributes ModifyInstanceAttribute changes besides the password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceAttribute {
    InstanceName,
    Description,
    HostName,
}

impl std::fmt::Display for InstanceAttribute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::InstanceName => "InstanceName",
            Self::Description => "Description",
            Self::HostName => "HostName",
        })
    }
}

/// Why one instance of a batch could not be bound or unbound; the others still succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceFailure {
    NotFound,
    Windows,
    NotIoOptimized,
    NoAgent,
    IncorrectStatus,
    /// The caller's policies do not allow this instance.
    Forbidden,
    /// An emulator fault's code for this instance (SPEC section 14).
    Injected {
        code: &'static str,
        message: &'static str,
    },
}
