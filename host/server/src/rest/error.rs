//! API errors: an HTTP status and Discord's JSON error body `{"code": N, "message": "..."}`.

use bytes::Bytes;
use guildhall_core::guild::GuildError;
use guildhall_store::StoreError;
use http_body_util::Full;
use hyper::{Response, StatusCode};

use guildhall_runtime::actors::directory::LocateError;
use guildhall_runtime::actors::guild_actor::CallError;

/// Discord's JSON error codes used here.
pub mod code {
    pub const GENERAL: u32 = 0;
    pub const UNKNOWN_CHANNEL: u32 = 10003;
    pub const UNKNOWN_GUILD: u32 = 10004;
    pub const UNKNOWN_INVITE: u32 = 10006;
    pub const UNKNOWN_APPLICATION: u32 = 10002;
    pub const UNKNOWN_MEMBER: u32 = 10007;
    pub const UNKNOWN_MESSAGE: u32 = 10008;
    pub const UNKNOWN_ROLE: u32 = 10011;
    pub const UNKNOWN_BAN: u32 = 10026;
    pub const MAX_GUILDS: u32 = 30001;
    pub const MAX_ROLES: u32 = 30005;
    pub const MAX_REACTIONS: u32 = 30010;
    pub const MAX_CHANNELS: u32 = 30013;
    pub const MAX_INVITES: u32 = 30016;
    /// Guildhall's own (plugins are not Discord's), in the 300xx "maximum reached" family
    /// beside codes Discord does not use.
    pub const MAX_PLUGINS: u32 = 30090;
    pub const BANNED: u32 = 40007;
    pub const INVALID_ROLE: u32 = 50028;
    pub const UNKNOWN_USER: u32 = 10013;
    pub const UNKNOWN_EMOJI: u32 = 10014;
    pub const REQUEST_TOO_LARGE: u32 = 40005;
    pub const MISSING_ACCESS: u32 = 50001;
    /// "Cannot execute action on a DM channel".
    pub const DM_UNSUPPORTED: u32 = 50003;
    pub const NOT_AUTHOR: u32 = 50005;
    pub const EMPTY_MESSAGE: u32 = 50006;
    pub const MISSING_PERMISSIONS: u32 = 50013;
    pub const INVALID_FORM_BODY: u32 = 50035;
    pub const OWNER_CANNOT_LEAVE: u32 = 50055;
    pub const INVALID_JSON: u32 = 50109;
    pub const OVERLOADED: u32 = 130000;
    /// Discord's "message was blocked by automatic moderation".
    pub const AUTOMOD_BLOCKED: u32 = 200000;
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: u32,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: u32, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into() }
    }
    pub fn bad_request(code: u32, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }
    pub fn invalid_form(message: impl Into<String>) -> ApiError {
        ApiError::bad_request(code::INVALID_FORM_BODY, format!("Invalid Form Body: {}", message.into()))
    }
    pub fn unauthorized() -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, code::GENERAL, "401: Unauthorized")
    }
    pub fn not_found(code: u32, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, code, message)
    }
    pub fn forbidden(code: u32, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, code, message)
    }
    /// Discord's refusal past a quota: 400, "Maximum number of {what} reached ({limit})".
    pub fn quota(code: u32, what: &str, limit: usize) -> ApiError {
        ApiError::bad_request(code, format!("Maximum number of {what} reached ({limit})"))
    }
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code::OVERLOADED, message)
    }

    pub fn into_response(self) -> Response<Full<Bytes>> {
        let body = serde_json::json!({ "code": self.code, "message": self.message });
        super::response::json_response(self.status, &body)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::Conflict(m) => ApiError::invalid_form(m),
            StoreError::NotFound => ApiError::not_found(code::GENERAL, "404: Not Found"),
            StoreError::Unavailable(m) => ApiError::unavailable(format!("storage unavailable: {m}")),
            StoreError::Unreachable(m) => ApiError::unavailable(format!("cluster unavailable: {m}")),
            StoreError::Corrupt(m) => {
                tracing::error!(error = %m, "corrupt record");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, code::GENERAL, "500: Internal Server Error")
            }
        }
    }
}

impl From<GuildError> for ApiError {
    fn from(e: GuildError) -> ApiError {
        let message = e.to_string();
        match e {
            GuildError::NotMember => ApiError::forbidden(code::MISSING_ACCESS, message),
            GuildError::UnknownChannel => ApiError::not_found(code::UNKNOWN_CHANNEL, message),
            GuildError::UnknownMessage => ApiError::not_found(code::UNKNOWN_MESSAGE, message),
            GuildError::NotAuthor => ApiError::forbidden(code::NOT_AUTHOR, message),
            GuildError::MissingPermissions => ApiError::forbidden(code::MISSING_PERMISSIONS, message),
            GuildError::AlreadyMember => ApiError::bad_request(code::GENERAL, message),
            GuildError::OwnerCannotLeave => ApiError::bad_request(code::OWNER_CANNOT_LEAVE, message),
            GuildError::UnknownRole => ApiError::not_found(code::UNKNOWN_ROLE, message),
            GuildError::UnknownMember => ApiError::not_found(code::UNKNOWN_MEMBER, message),
            GuildError::UnknownBan => ApiError::not_found(code::UNKNOWN_BAN, message),
            GuildError::UnknownInvite => ApiError::not_found(code::UNKNOWN_INVITE, message),
            GuildError::UnknownGuild => ApiError::not_found(code::UNKNOWN_GUILD, message),
            GuildError::InvalidRole => ApiError::bad_request(code::INVALID_ROLE, message),
            GuildError::TooManyRoles => ApiError::bad_request(code::MAX_ROLES, message),
            GuildError::TooManyChannels(_) => ApiError::bad_request(code::MAX_CHANNELS, message),
            GuildError::TooManyOverwrites => ApiError::invalid_form(format!("permission_overwrites: {message}")),
            GuildError::Banned => ApiError::forbidden(code::BANNED, message),
            GuildError::Busy => ApiError::unavailable(message),
            GuildError::Storage(m) => ApiError::unavailable(format!("storage unavailable: {m}")),
            GuildError::Blocked(reason) => ApiError::bad_request(code::AUTOMOD_BLOCKED, reason),
        }
    }
}

impl From<CallError> for ApiError {
    fn from(e: CallError) -> ApiError {
        match e {
            CallError::Guild(g) => g.into(),
            CallError::Busy => ApiError::unavailable("guild is busy, retry later"),
            CallError::Stopped => ApiError::unavailable("guild is restarting, retry later"),
        }
    }
}

impl From<LocateError> for ApiError {
    fn from(e: LocateError) -> ApiError {
        match e {
            LocateError::UnknownGuild => ApiError::not_found(code::UNKNOWN_GUILD, "Unknown Guild"),
            LocateError::UnknownChannel => ApiError::not_found(code::UNKNOWN_CHANNEL, "Unknown Channel"),
            LocateError::Storage(s) => s.into(),
            LocateError::Unreachable(m) => ApiError::unavailable(format!("cluster unavailable: {m}")),
        }
    }
}

impl From<guildhall_core::snowflake::NextIdError> for ApiError {
    fn from(e: guildhall_core::snowflake::NextIdError) -> ApiError {
        tracing::error!(error = %e, "cannot generate ids");
        ApiError::unavailable(format!("cannot generate ids: {e}"))
    }
}
