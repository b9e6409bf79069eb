//! The Volcengine error table: every core and authentication failure to HTTP status, code and
//! message, matched exhaustively. Codes follow the AttachKeyPair seed (the authority), the gateway's
//! common codes and `shared/wire/volcengine/REPORT.md` section 9; `CodeN` is the gateway's number
//! where one is documented, else 0.

use axum::http::StatusCode;
use keyplane_core::error::InstanceAttribute;
use keyplane_core::{CoreError, InstanceFailure};
use keyplane_sig::SigError;

use crate::auth::AuthError;
use crate::wire::WireError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolcError {
    pub status: StatusCode,
    pub code_n: i64,
    pub code: String,
    pub message: String,
}

fn e(status: u16, code: &str, message: impl Into<String>) -> VolcError {
    gw(status, 0, code, message)
}

fn gw(status: u16, code_n: i64, code: &str, message: impl Into<String>) -> VolcError {
    VolcError {
        status: StatusCode::from_u16(status).expect("valid status"),
        code_n,
        code: code.to_string(),
        message: message.into(),
    }
}

impl VolcError {
    pub fn missing(what: &str) -> Self {
        gw(
            400,
            100002,
            "MissingParameter",
            format!("The request is missing {what} parameter."),
        )
    }

    /// An action or version this API does not have, with what it does have when that is likely
    /// what was meant.
    pub fn unknown_action(action: &str, version: &str) -> Self {
        let hint = if version != super::VERSION {
            format!(" This ECS API serves version {}.", super::VERSION)
        } else {
            keyplane_core::suggest::did_you_mean(action, &crate::actions::names(super::ACTIONS))
        };
        gw(
            404,
            100008,
            "InvalidActionOrVersion",
            format!("Could not find operation {action} for version {version}.{hint}"),
        )
    }
}

impl From<CoreError> for VolcError {
    fn from(err: CoreError) -> Self {
        match err {
            CoreError::MissingParameter(name) if name == "KeyPairNameAndKeyPairId" => e(
                400,
                "MissingParameter.KeyPairNameAndKeyPairId",
                "The required parameters KeyPairName and KeyPairId are not supplied.",
            ),
            CoreError::MissingParameter(name) => e(
                400,
                &format!("MissingParameter.{name}"),
                format!("The required parameter {name} is not supplied."),
            ),
            CoreError::InvalidParameter { name, reason } => e(
                400,
                "InvalidParameter",
                format!("The specified parameter {name} is invalid. {reason}"),
            ),
            CoreError::RegionNotFound(r) => e(404, "InvalidRegion.NotFound", format!("The specified region {r} does not exist.")),
            CoreError::ZoneNotFound(_) => e(404, "InvalidZone.NotFound", "The specified zone does not exist."),
            CoreError::ImageNotFound(_) => e(404, "InvalidImage.NotFound", "The specified image does not exist."),
            CoreError::InvalidKeyPairName(_) => e(400, "InvalidKeyPairName.Malformed", "The specified KeyPairName is malformed."),
            CoreError::InvalidDescription => e(
                400,
                "InvalidKeyPairDescription.Malformed",
                "The specified KeyPairDescription is malformed.",
            ),
            CoreError::InvalidPublicKey(reason) => e(
                400,
                "InvalidPublicKey.Malformed",
                format!("The specified PublicKey is malformed. ({reason})"),
            ),
            CoreError::KeyPairAlreadyExists(_) => e(
                400,
                "InvalidKeyPairName.Duplicate",
                "The specified KeyPairName already exists.",
            ),
            CoreError::KeyPairNotFound(_) => e(404, "InvalidKeyPair.NotFound", "The specified KeyPair does not exist."),
            CoreError::KeyPairQuotaExceeded(n) => e(
                400,
                "QuotaExceeded.KeyPair",
                format!("You've reached the limit of {n} key pairs in this region."),
            ),
            CoreError::KeyPairInUse(_) => e(
                400,
                "InvalidParameter.KeypairAlreadyAttachedInstance",
                "The specified KeyPair is still bound to instances; detach it first.",
            ),
            CoreError::InvalidInstanceIds => e(400, "InvalidInstanceIds.Malformed", "The specified InstanceIds is malformed."),
            CoreError::TooManyInstanceIds(_) => e(
                400,
                "LimitExceeded.MaximumInstanceIds",
                "You've reached the limit on the number of InstanceIds that you can set.",
            ),
            CoreError::InvalidKeyPairNames => e(400, "InvalidKeyPairNames.Malformed", "The specified KeyPairNames is malformed."),
            CoreError::TooManyKeyPairNames(_) => e(
                400,
                "LimitExceeded.MaximumKeyPairNames",
                "You've reached the limit on the number of KeyPairNames that you can set.",
            ),
            CoreError::InstanceNotFound(_) => e(404, "InvalidInstance.NotFound", "The specified instance does not exist."),
            CoreError::IncorrectInstanceStatus => e(
                400,
                "InvalidInstanceStatus",
                "The status of the specified instance does not support this request.",
            ),
            CoreError::InvalidTag(reason) => e(400, "InvalidTag.Malformed", format!("The specified tag is malformed: {reason}.")),
            CoreError::TooManyTags => e(400, "LimitExceeded.MaximumTags", "You've reached the limit on the number of tags."),
            CoreError::InvalidStatus(_) => e(400, "InvalidStatus.Malformed", "The specified Status is malformed."),
            CoreError::InvalidFilterKey(k) => e(400, "InvalidParameter", format!("The filter {k} is not supported.")),
            CoreError::InvalidNextToken => e(400, "InvalidNextToken.Malformed", "The specified NextToken is malformed."),
            CoreError::InvalidClientToken => e(400, "InvalidClientToken.Malformed", "The specified ClientToken is malformed."),
            CoreError::IdempotentParameterMismatch => e(
                400,
                "IdempotentParameterMismatch",
                "The request uses the same client token as a previous, but non-identical request. Do not reuse a client token with different requests, unless the requests are identical.",
            ),
            CoreError::IdempotentProcessing => e(
                412,
                "IdempotentProcessing",
                "The request uses the same client token as a previous one that is still in process.",
            ),
            CoreError::Throttled => e(429, "FlowLimitExceeded", "You've reach the limit on request rate of resources."),
            CoreError::DryRunOperation => e(
                400,
                "DryRunOperation",
                "The request would have succeeded, but the DryRun parameter was used.",
            ),
            CoreError::Forbidden { action, resource } => gw(
                403,
                100013,
                "AccessDenied",
                format!("User is not authorized to perform: {action} on resource: {resource}."),
            ),
            // The RAM API is served in the Alibaba dialect only; these reach Volcengine callers
            // only through shared code, so they keep the Alibaba codes.
            other @ (CoreError::MalformedPolicy(_)
            | CoreError::UserAlreadyExists(_)
            | CoreError::UserNotFound(_)
            | CoreError::UserHasAccessKeys(_)
            | CoreError::UserHasPolicies(_)
            | CoreError::InvalidUserName(_)
            | CoreError::AccessKeyLimit(_)
            | CoreError::AccessKeyNotFound(_)
            | CoreError::PolicyAlreadyExists(_)
            | CoreError::PolicyNotFound(_)
            | CoreError::PolicyInUse(_)
            | CoreError::PolicyAlreadyAttached(_)
            | CoreError::PolicyNotAttached(_)
            | CoreError::InvalidPassword(_)
            | CoreError::LoginProfileNotFound(_)) => {
                let ali = crate::acs::error::AliError::from(other);
                e(ali.status.as_u16(), ali.code, ali.message)
            }
            CoreError::InvalidInstancePassword(reason) => e(
                400,
                "InvalidPassword.Malformed",
                format!("The specified parameter Password is invalid: {reason}."),
            ),
            CoreError::InvalidInstanceAttribute { attribute, reason } => {
                let (code, name) = match attribute {
                    InstanceAttribute::InstanceName => ("InvalidInstanceName.Malformed", "InstanceName"),
                    InstanceAttribute::Description => ("InvalidDescription.Malformed", "Description"),
                    InstanceAttribute::HostName => ("InvalidHostname.Malformed", "Hostname"),
                };
                e(400, code, format!("The specified parameter {name} is invalid: {reason}."))
            }
            CoreError::ServiceUnavailable => e(
                503,
                "ServiceUnavailable",
                "The service is temporarily unavailable. Please try again later.",
            ),
            CoreError::Busy => e(
                503,
                "ServiceUnavailable",
                "The server is busy with other requests. Please try again later.",
            ),
            CoreError::GrantNotFound(id) => e(
                404,
                "InvalidGrantId.NotFound",
                format!("The grant {id} does not exist in this account."),
            ),
            CoreError::KeyPairRevoked(name) => e(
                403,
                "KeyPairRevoked",
                format!("The key pair {name} is revoked: it cannot be bound or granted until it is unrevoked."),
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
                e(500, "InternalError", "An internal error has occurred.")
            }
        }
    }
}

impl From<AuthError> for VolcError {
    fn from(err: AuthError) -> Self {
        match err {
            AuthError::Signature(SigError::Missing) => {
                gw(401, 100003, "MissingAuthenticationToken", "Request is missing Authentication Token.")
            }
            AuthError::Signature(SigError::Incomplete(part)) => gw(
                401,
                100025,
                "InvalidCredential",
                format!("Invalid credential in 'Authorization', Pls check your authorization header. ({part} is missing or malformed; host and x-date must be signed)"),
            ),
            AuthError::Signature(SigError::UnsupportedMethod(m)) => gw(
                401,
                100025,
                "InvalidCredential",
                format!("Invalid credential in 'Authorization': unsupported algorithm {m}."),
            ),
            AuthError::Signature(SigError::PayloadHashMismatch | SigError::Mismatch { .. }) => gw(
                401,
                100010,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided. Check your Secret Access Key and signing method. Consult the service documentation for details.",
            ),
            AuthError::UnknownAccessKey => gw(
                401,
                100009,
                "InvalidAccessKey",
                "The accesskey included in the request is invalid.",
            ),
            AuthError::AccessKeyDisabled => gw(403, 100013, "AccessDenied", "The AccessKey is disabled."),
            AuthError::MissingTimestamp | AuthError::MissingNonce => {
                gw(400, 100004, "MissingRequestInfo", "The request is missing X-Date information.")
            }
            AuthError::Expired | AuthError::NonceUsed => {
                gw(400, 100006, "InvalidTimestamp", "The signature of the request is expired.")
            }
            AuthError::WrongService(s) => gw(404, 100007, "ServiceNotFound", format!("This service[{s}] not found.")),
            AuthError::Store(err) => err.into(),
        }
    }
}

impl From<WireError> for VolcError {
    fn from(err: WireError) -> Self {
        match err {
            WireError::BodyTooLarge(max) => e(
                413,
                "RequestEntityTooLarge",
                format!("The request body is larger than {max} bytes."),
            ),
            WireError::NotUtf8(name) => e(
                400,
                "InvalidParameter",
                format!("The parameter {name} is not UTF-8 text."),
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

/// The per-item `Error` of a batch (`OperationDetails`).
pub fn instance_failure(f: InstanceFailure) -> (&'static str, &'static str) {
    match f {
        InstanceFailure::NotFound => (
            "InvalidInstance.NotFound",
            "The specified instance does not exist.",
        ),
        InstanceFailure::Windows => (
            "InvalidKeyPairForWindows.Unsupported",
            "The OSType of this specified instance is Windows, which does not support key pairs.",
        ),
        InstanceFailure::NoAgent => (
            "InvalidResetAuthenticationAgent.NotFound",
            "The specified reset-authentication agent does not install on the instance.",
        ),
        InstanceFailure::IncorrectStatus => (
            "InvalidInstanceStatus",
            "The status of the specified instance does not support this request.",
        ),
        InstanceFailure::Injected { code, message } => (code, message),
        InstanceFailure::Forbidden => (
            "AccessDenied",
            "User is not authorized to perform this action on the specified instance.",
        ),
        // Volcengine has no I/O-optimization attribute; such an instance cannot take a key pair.
        InstanceFailure::NotIoOptimized => (
            "InvalidInstance.NotSupported",
            "The specified instance is not I/O optimized and does not support key pairs.",
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
        .map(VolcError::from)
        .find(|e| e.code == code)
        .map(|e| e.status.as_u16())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The AttachKeyPair seed's request-level codes, with their HTTP statuses.
    #[test]
    fn request_level_codes_match_the_seed() {
        let cases = [
            (
                CoreError::missing("KeyPairNameAndKeyPairId"),
                400,
                "MissingParameter.KeyPairNameAndKeyPairId",
            ),
            (
                CoreError::missing("InstanceIds"),
                400,
                "MissingParameter.InstanceIds",
            ),
            (
                CoreError::TooManyInstanceIds(100),
                400,
                "LimitExceeded.MaximumInstanceIds",
            ),
            (
                CoreError::InvalidClientToken,
                400,
                "InvalidClientToken.Malformed",
            ),
            (
                CoreError::IdempotentParameterMismatch,
                400,
                "IdempotentParameterMismatch",
            ),
            (
                CoreError::KeyPairNotFound("k".into()),
                404,
                "InvalidKeyPair.NotFound",
            ),
            (CoreError::IdempotentProcessing, 412, "IdempotentProcessing"),
            (CoreError::Internal("x".into()), 500, "InternalError"),
            (CoreError::Throttled, 429, "FlowLimitExceeded"),
            (CoreError::Busy, 503, "ServiceUnavailable"),
        ];
        for (err, status, code) in cases {
            let v = VolcError::from(err);
            assert_eq!((v.status.as_u16(), v.code.as_str()), (status, code));
        }
    }

    /// The seed's per-instance codes.
    #[test]
    fn per_instance_codes_match_the_seed() {
        assert_eq!(
            instance_failure(InstanceFailure::NotFound).0,
            "InvalidInstance.NotFound"
        );
        assert_eq!(
            instance_failure(InstanceFailure::Windows).0,
            "InvalidKeyPairForWindows.Unsupported"
        );
        assert_eq!(
            instance_failure(InstanceFailure::NoAgent).0,
            "InvalidResetAuthenticationAgent.NotFound"
        );
        assert_eq!(
            instance_failure(InstanceFailure::IncorrectStatus).0,
            "InvalidInstanceStatus"
        );
    }

    /// The gateway's codes for authentication failures.
    #[test]
    fn gateway_codes_carry_their_numbers() {
        let cases = [
            (
                AuthError::Signature(SigError::Missing),
                401,
                "MissingAuthenticationToken",
                100003,
            ),
            (AuthError::UnknownAccessKey, 401, "InvalidAccessKey", 100009),
            (
                AuthError::Signature(SigError::Mismatch {
                    string_to_sign: String::new(),
                }),
                401,
                "SignatureDoesNotMatch",
                100010,
            ),
            (AuthError::Expired, 400, "InvalidTimestamp", 100006),
            (AuthError::AccessKeyDisabled, 403, "AccessDenied", 100013),
        ];
        for (err, status, code, n) in cases {
            let v = VolcError::from(err);
            assert_eq!(
                (v.status.as_u16(), v.code.as_str(), v.code_n),
                (status, code, n)
            );
        }
    }
}
