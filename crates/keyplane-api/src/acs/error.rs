//! The Alibaba error table: every core and authentication failure to HTTP status, code and message,
//! matched exhaustively so a new kind cannot ship unmapped. Codes and messages follow
//! `shared/wire/alibaba/REPORT.md` sections 8–9 and the seeds.

use axum::http::StatusCode;
use keyplane_core::error::InstanceAttribute;
use keyplane_core::{CoreError, InstanceFailure};
use keyplane_sig::SigError;

use crate::auth::AuthError;
use crate::wire::WireError;

/// An error ready to render: status, vendor code, message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

fn e(status: u16, code: &'static str, message: impl Into<String>) -> AliError {
    AliError {
        status: StatusCode::from_u16(status).expect("valid status"),
        code,
        message: message.into(),
    }
}

impl AliError {
    /// An action this API does not have; `known` are the ones it has, for a "did you mean".
    pub fn invalid_action(action: &str, known: &[&str]) -> Self {
        let hint = keyplane_core::suggest::did_you_mean(action, known);
        e(
            404,
            "InvalidAction.NotFound",
            format!(
                "Specified api ({action}) is not found, please check your url and method.{hint}"
            ),
        )
    }

    pub fn invalid_version() -> Self {
        e(
            400,
            "InvalidParameter",
            "The specified parameter \"Action or Version\" is not valid.",
        )
    }

    /// keyplane's native API (`/api/v1`) accepts only `ACS3-HMAC-SHA256`.
    pub fn v3_required() -> Self {
        e(
            400,
            "IncompleteSignature",
            "IncompleteSignature: keyplane's native API (/api/v1) needs an ACS3-HMAC-SHA256 Authorization header.",
        )
    }

    pub fn missing_signature() -> Self {
        e(
            400,
            "MissingParameter",
            "The input parameter \"Signature\" that is mandatory for processing this request is not supplied.",
        )
    }
}

impl From<CoreError> for AliError {
    fn from(err: CoreError) -> Self {
        match err {
            CoreError::MissingParameter(name) => e(
                400,
                "MissingParameter",
                format!("The input parameter \"{name}\" that is mandatory for processing this request is not supplied."),
            ),
            CoreError::InvalidParameter { name, reason } => e(
                400,
                "InvalidParameter",
                format!("The specified parameter \"{name}\" is not valid. {reason}"),
            ),
            CoreError::RegionNotFound(_) => {
                e(404, "InvalidRegionId.NotFound", "The specified RegionId does not exist.")
            }
            CoreError::ZoneNotFound(_) => {
                e(404, "InvalidZoneId.NotFound", "The specified ZoneId does not exist.")
            }
            CoreError::ImageNotFound(_) => e(
                404,
                "InvalidImageId.NotFound",
                "The specified ImageId does not exist.",
            ),
            CoreError::InvalidKeyPairName(_) => e(
                400,
                "InvalidKeyPairName.Malformed",
                "Specified Key Pair name is not valid.",
            ),
            CoreError::InvalidPublicKey(reason) => e(
                400,
                "InvalidPublicKeyBody.Malformed",
                format!("The PublicKeyBody format is not supported. ({reason})"),
            ),
            CoreError::KeyPairAlreadyExists(_) => {
                e(400, "KeyPair.AlreadyExist", "The key pair already exist.")
            }
            CoreError::KeyPairNotFound(_) => e(
                400,
                "InvalidKeyPairName.NotFound",
                "The specified KeyPairName does not exist in our records.",
            ),
            CoreError::KeyPairQuotaExceeded(_) => {
                e(403, "QuotaExceed.KeyPair", "The key pair quota exceeds.")
            }
            CoreError::KeyPairInUse(name) => e(
                400,
                "InvalidParameter.KeypairAlreadyAttachedInstance",
                format!("The key pair {name} is still bound to instances; unbind it first."),
            ),
            CoreError::InvalidInstanceIds => e(
                400,
                "InvalidInstanceIds.ValueNotSupported",
                "The specified parameter InstanceIds is not valid. Give a JSON array of instance IDs, e.g. [\"i-bp67acfmxazb4p****\",\"i-bp1i43l28m7u48p1****\"].",
            ),
            CoreError::TooManyInstanceIds(_) => e(
                403,
                "InstanceKeyPairLimitExceeded",
                "The specified instances are beyond the permitted range.",
            ),
            CoreError::InvalidKeyPairNames => e(
                400,
                "InvalidKeyPairNames.ValueNotSupported",
                "The specified parameter \"KeyPairNames\" is not valid.",
            ),
            CoreError::TooManyKeyPairNames(_) => e(
                403,
                "InstanceKeyPairLimitExceeded",
                "Exceeding the allowed amount of instance which will be deleted.",
            ),
            CoreError::InstanceNotFound(_) => e(
                404,
                "InvalidInstanceId.NotFound",
                "The specified InstanceId does not exist.",
            ),
            CoreError::IncorrectInstanceStatus => e(
                403,
                "IncorrectInstanceStatus",
                "The current status of the resource does not support this operation.",
            ),
            CoreError::InvalidTag(reason) => e(
                400,
                "InvalidTag.Malformed",
                format!("The specified tag is not valid: {reason}."),
            ),
            CoreError::TooManyTags => e(
                400,
                "InvalidTagCount",
                "The specified tags are beyond the permitted range.",
            ),
            CoreError::InvalidStatus(_) => {
                e(404, "InvalidStatus.NotFound", "The specified Status is not found")
            }
            CoreError::InvalidFilterKey(_) => e(
                404,
                "InvalidFilterKey.NotFound",
                "The specified filter key is not supported.",
            ),
            CoreError::InvalidNextToken => e(
                400,
                "InvalidParameter.NextToken",
                "The specified parameter \"NextToken\" is not valid.",
            ),
            CoreError::DryRunOperation => e(
                400,
                "DryRunOperation",
                "Request validation has been passed with DryRun flag set.",
            ),
            CoreError::InvalidDescription => e(
                400,
                "InvalidDescription.Malformed",
                "The specified description is not valid.",
            ),
            CoreError::InvalidClientToken => e(
                400,
                "InvalidClientToken.Malformed",
                "The specified ClientToken is malformed: at most 64 printable ASCII characters.",
            ),
            CoreError::IdempotentParameterMismatch => e(
                400,
                "IdempotentParameterMismatch",
                "The request uses the same client token as a previous, but non-identical request.",
            ),
            CoreError::IdempotentProcessing => e(
                409,
                "IdempotentProcessing",
                "The request uses the same client token as a previous one that is still in process.",
            ),
            CoreError::Throttled => e(
                400,
                "Throttling",
                "Request was denied due to request throttling.",
            ),
            CoreError::Forbidden { .. } => e(
                403,
                "Forbidden.RAM",
                "User not authorized to operate on the specified resource, or this API doesn't support RAM.",
            ),
            CoreError::MalformedPolicy(reason) => e(
                400,
                "MalformedPolicyDocument",
                format!("The policy document is malformed: {reason}."),
            ),
            CoreError::UserAlreadyExists(_) => e(409, "EntityAlreadyExists.User", "The user already exists."),
            CoreError::UserNotFound(_) => e(404, "EntityNotExist.User", "The user does not exist."),
            CoreError::LoginProfileNotFound(_) => e(404, "EntityNotExist.User.LoginProfile", "The login profile of the user does not exist."),
            CoreError::UserHasAccessKeys(_) => e(
                409,
                "DeleteConflict.User.AccessKey",
                "The user has access keys; delete them first.",
            ),
            CoreError::UserHasPolicies(_) => e(
                409,
                "DeleteConflict.User.Policy",
                "The user has attached policies; detach them first.",
            ),
            CoreError::InvalidUserName(_) => e(
                400,
                "InvalidParameter.UserName.InvalidChars",
                "The user name must be 1-64 letters, digits, '.', '_', '-' or '@'.",
            ),
            CoreError::AccessKeyLimit(n) => e(
                409,
                "LimitExceeded.User.AccessKey",
                format!("The count of access keys of the user exceeds the limit: {n}."),
            ),
            CoreError::AccessKeyNotFound(_) => e(
                404,
                "EntityNotExist.User.AccessKey",
                "The user access key does not exist.",
            ),
            CoreError::PolicyAlreadyExists(_) => e(409, "EntityAlreadyExists.Policy", "The policy already exists."),
            CoreError::PolicyNotFound(_) => e(404, "EntityNotExist.Policy", "The policy does not exist."),
            CoreError::PolicyInUse(_) => e(
                409,
                "DeleteConflict.Policy.User",
                "The policy is attached to users; detach it first.",
            ),
            CoreError::PolicyAlreadyAttached(_) => e(
                409,
                "EntityAlreadyExists.User.Policy",
                "The policy is already attached to the user.",
            ),
            CoreError::PolicyNotAttached(_) => e(
                404,
                "EntityNotExist.User.Policy",
                "The policy is not attached to the user.",
            ),
            CoreError::InvalidPassword(reason) => e(
                400,
                "InvalidParameter.Password",
                format!("The password does not meet the rules: {reason}."),
            ),
            CoreError::InvalidInstancePassword(reason) => e(
                400,
                "InvalidPassword.Malformed",
                format!("The specified parameter Password is not valid: {reason}."),
            ),
            CoreError::InvalidInstanceAttribute { attribute, reason } => e(
                400,
                match attribute {
                    InstanceAttribute::InstanceName => "InvalidInstanceName.Malformed",
                    InstanceAttribute::Description => "InvalidDescription.Malformed",
                    InstanceAttribute::HostName => "InvalidHostName.Malformed",
                },
                format!("The specified parameter {attribute} is not valid: {reason}."),
            ),
            CoreError::ServiceUnavailable => e(
                503,
                "ServiceUnavailable",
                "The request has failed due to a temporary failure of the server.",
            ),
            CoreError::Busy => e(
                503,
                "ServiceUnavailable",
                "The server is busy with other requests; try again in a moment.",
            ),
            CoreError::GrantNotFound(id) => e(
                404,
                "InvalidGrantId.NotFound",
                format!("The grant {id} does not exist in this account."),
            ),
            CoreError::KeyPairRevoked(name) => e(
                403,
                "KeyPairRevoked",
                format!("The key pair {name} is revoked: it cannot be bound or granted until `keyplane access unrevoke-key`."),
            ),
            CoreError::EmulatorOff => e(
                403,
                "OperationDenied.EmulatorOff",
                "Emulator mode is off: the emulator controls need a server started with \
                 `keyplane serve --emulator` (KEYPLANE_EMULATOR=1). Nothing was changed.",
            ),
            CoreError::Injected {
                code,
                message,
                status,
            } => e(known_status(code).unwrap_or(status), code, message),
            CoreError::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                internal()
            }
        }
    }
}

pub fn internal() -> AliError {
    e(
        500,
        "InternalError",
        "The request processing has failed due to some unknown error, exception or failure.",
    )
}

impl From<AuthError> for AliError {
    fn from(err: AuthError) -> Self {
        match err {
            AuthError::Signature(SigError::Missing) => AliError::missing_signature(),
            AuthError::Signature(SigError::Incomplete(part)) => e(
                400,
                "IncompleteSignature",
                format!("The request signature does not conform to Aliyun standards. The element {part} is missing or malformed. server string to sign is:"),
            ),
            AuthError::Signature(SigError::UnsupportedMethod(m)) => e(
                400,
                "InvalidParamater",
                format!("The specified parameter \"SignatureMethod\" is not valid: {m}"),
            ),
            AuthError::Signature(SigError::PayloadHashMismatch) => e(
                400,
                "IncompleteSignature",
                "The request signature does not conform to Aliyun standards. x-acs-content-sha256 does not match the body. server string to sign is:",
            ),
            AuthError::Signature(SigError::Mismatch { string_to_sign }) => e(
                400,
                "SignatureDoesNotMatch",
                // No colon before the string to sign: aliyun-python-sdk-core takes what follows the
                // first colon and, when it equals its own, reports InvalidAccessKeySecret.
                format!(
                    "Specified signature is not matched with our calculation. Check that the \
                     AccessKey secret is the one issued with this AccessKey ID, and that nothing \
                     changed the request after it was signed. server string to sign is:{string_to_sign}"
                ),
            ),
            AuthError::UnknownAccessKey => e(
                404,
                "InvalidAccessKeyId.NotFound",
                "Specified access key is not found.",
            ),
            AuthError::AccessKeyDisabled => {
                e(403, "Forbidden.AccessKeyDisabled", "The Access Key is disabled.")
            }
            AuthError::MissingTimestamp => e(
                400,
                "IllegalTimestamp",
                "The input parameter \"Timestamp\" that is mandatory for processing this request is not supplied.",
            ),
            AuthError::Expired => e(
                400,
                "InvalidTimeStamp.Expired",
                "Specified time stamp or date value is expired.",
            ),
            AuthError::MissingNonce => e(
                400,
                "MissingParameter",
                "The input parameter \"SignatureNonce\" that is mandatory for processing this request is not supplied.",
            ),
            AuthError::NonceUsed => e(
                400,
                "SignatureNonceUsed",
                "Specified signature nonce was used already.",
            ),
            AuthError::WrongService(_) => AliError::missing_signature(),
            AuthError::Store(err) => err.into(),
        }
    }
}

impl From<WireError> for AliError {
    fn from(err: WireError) -> Self {
        match err {
            WireError::BodyTooLarge(max) => e(
                413,
                "RequestEntityTooLarge",
                format!("The request body is larger than the limit of {max} bytes."),
            ),
            WireError::NotUtf8(name) => e(
                400,
                "InvalidParameter",
                format!("The specified parameter \"{name}\" is not valid. It is not UTF-8 text."),
            ),
            WireError::Unreadable => e(400, "InvalidParameter", "The request could not be read."),
            WireError::NotAForm => e(
                415,
                "UnsupportedMediaType",
                "The request body must be application/x-www-form-urlencoded.",
            ),
        }
    }
}

/// The per-instance `Code` and `Message` of an AttachKeyPair/DetachKeyPair result.
pub fn instance_failure(f: InstanceFailure) -> (&'static str, &'static str) {
    match f {
        InstanceFailure::NotFound => (
            "InvalidInstanceId.NotFound",
            "The specified InstanceId does not exist.",
        ),
        InstanceFailure::Windows => (
            "DependencyViolation.WindowsInstance",
            "The instance creating is windows, cannot use ssh key pair to login",
        ),
        InstanceFailure::NotIoOptimized => (
            "DependencyViolation.IoOptimize",
            "The specified parameter InstanceIds is not valid.",
        ),
        InstanceFailure::NoAgent => (
            "InvalidResetAuthenticationAgent.NotFound",
            "The image of the instance has no agent that can apply a key pair.",
        ),
        InstanceFailure::IncorrectStatus => (
            "IncorrectInstanceStatus",
            "The current status of the resource does not support this operation.",
        ),
        InstanceFailure::Injected { code, message } => (code, message),
        InstanceFailure::Forbidden => (
            "Forbidden.RAM",
            "User not authorized to operate on the specified resource.",
        ),
    }
}

/// The HTTP status this dialect answers `code` with, if it is one of its own codes.
pub fn known_status(code: &str) -> Option<u16> {
    if code == "InternalError" {
        return Some(500);
    }
    CoreError::examples()
        .into_iter()
        .map(AliError::from)
        .find(|e| e.code == code)
        .map(|e| e.status.as_u16())
}
