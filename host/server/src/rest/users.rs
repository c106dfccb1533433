//! Accounts, tokens, the current user, and DM channels.

use guildhall_core::model::{
    User, UserRecord, MAX_PASSWORD_CHARS, MAX_USERNAME_CHARS, MIN_PASSWORD_CHARS, MIN_USERNAME_CHARS,
};
use serde_json::json;

use super::ctx::{created, ok, ApiResult, Ctx};
use super::error::{code, ApiError};
use guildhall_api::requests::{Credentials, OpenDm};

pub(super) fn validate_username(name: &str) -> Result<(), ApiError> {
    let n = name.chars().count();
    let allowed = name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
    if !(MIN_USERNAME_CHARS..=MAX_USERNAME_CHARS).contains(&n) || !allowed {
        return Err(ApiError::invalid_form(format!(
            "username: must be {MIN_USERNAME_CHARS} to {MAX_USERNAME_CHARS} characters of a-z, 0-9, '_' or '.'"
        )));
    }
    Ok(())
}

async fn issue_token(ctx: &Ctx, user: &User) -> Result<String, ApiError> {
    let token = crate::auth::new_token(user.id);
    ctx.app.store.put_token(&token, user.id).await?;
    Ok(token)
}

/// Too many password hashes running or waiting: 503, try again.
fn busy(_: crate::passwords::Busy) -> ApiError {
    ApiError::unavailable("too many logins and registrations at once; try again")
}

pub async fn register(ctx: &mut Ctx) -> ApiResult {
    let creds: Credentials = ctx.json().await?;
    validate_username(&creds.username)?;
    let n = creds.password.chars().count();
    if !(MIN_PASSWORD_CHARS..=MAX_PASSWORD_CHARS).contains(&n) {
        return Err(ApiError::invalid_form(format!(
            "password: must be {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters"
        )));
    }
    if ctx.app.store.user_by_username(&creds.username).await?.is_some() {
        return Err(ApiError::invalid_form("username: Username is already taken"));
    }
    let password_hash = ctx.app.passwords.hash(creds.password).await.map_err(busy)?.map_err(ApiError::unavailable)?;
    let user = User::new(ctx.app.new_id()?, creds.username, false);
    // The store re-checks uniqueness atomically: two racing registrations cannot both win.
    ctx.app.store.create_user(UserRecord::person(user.clone(), password_hash)).await?;
    let token = issue_token(ctx, &user).await?;
    created(&json!({ "token": token, "user": user }))
}

pub async fn login(ctx: &mut Ctx) -> ApiResult {
    let creds: Credentials = ctx.json().await?;
    let invalid = || ApiError::invalid_form("login: Login or password is invalid.");
    let Some(record) = ctx.app.store.user_by_username(&creds.username).await? else {
        // Spend the same time as a real check, so the answer does not reveal who exists.
        ctx.app.passwords.hash(creds.password).await.map_err(busy)?.map_err(ApiError::unavailable)?;
        return Err(invalid());
    };
    if !ctx.app.passwords.verify(creds.password, record.password_hash).await.map_err(busy)? {
        return Err(invalid());
    }
    let token = issue_token(ctx, &record.user).await?;
    ok(&json!({ "token": token, "user": record.user }))
}

pub async fn me(ctx: &mut Ctx) -> ApiResult {
    ok(&ctx.user().await?.as_self())
}

/// GET /users/@me/guilds: partial guild objects, with the caller's permissions computed from
/// what is stored (no guild actor is asked, or started, for a listing).
pub async fn my_guilds(ctx: &mut Ctx) -> ApiResult {
    let user = ctx.user().await?;
    let mut out = Vec::new();
    for id in ctx.app.store.user_guilds(user.id).await? {
        let (guild, member) = tokio::try_join!(ctx.app.store.guild(id), ctx.app.store.member(id, user.id))?;
        if let (Some(g), Some(member)) = (guild, member) {
            let g = g.normalized();
            let permissions = g.member_permissions(&member);
            out.push(json!({
                "id": g.id,
                "name": g.name,
                "icon": g.icon,
                "banner": null,
                "owner": g.owner_id == user.id,
                "permissions": permissions,
                "features": [],
            }));
        }
    }
    ok(&out)
}

/// POST /users/@me/channels {recipient_id}: the DM channel, the same one every time.
pub async fn open_dm(ctx: &mut Ctx) -> ApiResult {
    let me = ctx.user().await?;
    let body: OpenDm = ctx.json().await?;
    if body.recipient_id == me.id {
        return Err(ApiError::invalid_form("recipient_id: cannot open a DM with yourself"));
    }
    let Some(them) = ctx.app.store.user(body.recipient_id).await? else {
        return Err(ApiError::not_found(code::UNKNOWN_USER, "Unknown User"));
    };
    let channel = ctx.app.store.get_or_create_dm(me, them.user, ctx.app.new_id()?).await?;
    ok(&channel)
}

pub async fn gateway_bot(ctx: &mut Ctx) -> ApiResult {
    let user = ctx.user().await?;
    let (remaining, reset_after) = ctx.app.limits.session_starts_left(user.id);
    ok(&json!({
        "url": ctx.app.config.gateway_url(),
        "shards": 1,
        "session_start_limit": {
            "total": crate::limits::SESSION_STARTS_PER_DAY,
            "remaining": remaining,
            "reset_after": reset_after,
            "max_concurrency": ctx.app.limits.identify_concurrency(),
        },
    }))
}
