//! Bot applications, as Discord has them: an application owns a bot user (the same id) and
//! its token; privileged intents are application flags; a guild manager adds the bot to a
//! guild through the authorize route, with the permissions the bot asks for becoming its
//! managed role.

use guildhall_core::guild::{MemberCommand, Reply, RoleCommand};
use guildhall_core::model::{application_flags, Application, Member, Role, RoleTags, User, UserRecord};
use guildhall_core::permissions::Permissions;
use guildhall_core::Snowflake;
use serde_json::json;

use super::ctx::{
    actor_timeout, created, guild_handle, guild_permissions, notify_joined, now_iso, ok, unexpected, ApiResult, Ctx,
};
use super::error::{code, ApiError};
use guildhall_api::requests::{Authorize, CreateApplication, UpdateApplication};

fn unknown_application() -> ApiError {
    ApiError::not_found(code::UNKNOWN_APPLICATION, "Unknown Application")
}

fn check_flags(flags: u64) -> Result<u64, ApiError> {
    if flags & !application_flags::SETTABLE != 0 {
        return Err(ApiError::invalid_form("flags: only the privileged intent flags (1<<12, 1<<14, 1<<18) may be set"));
    }
    Ok(flags)
}

/// POST /applications {name, description?, flags?}: a person creates a bot application;
/// the answer carries the bot's token, once.
pub async fn create(ctx: &mut Ctx) -> ApiResult {
    let owner = ctx.user().await?;
    if owner.bot {
        return Err(ApiError::forbidden(code::MISSING_ACCESS, "bots cannot create applications"));
    }
    let body: CreateApplication = ctx.json().await?;
    super::users::validate_username(&body.name).map_err(|_| {
        ApiError::invalid_form("name: must be 2 to 32 characters of a-z, 0-9, '_' or '.' (it is the bot's username)")
    })?;
    let description = body.description.unwrap_or_default();
    if description.chars().count() > 400 {
        return Err(ApiError::invalid_form("description: Must be 400 or fewer in length."));
    }
    let flags = check_flags(body.flags.unwrap_or(0))?;
    let id = ctx.app.new_id()?;
    let bot = User::new(id, body.name.clone(), true);
    let application = Application { id, name: body.name, description, owner_id: owner.id, flags, bot_public: true };
    let record = UserRecord { user: bot.clone(), password_hash: String::new(), application: Some(application.clone()) };
    ctx.app.store.create_user(record).await.map_err(|e| match e {
        guildhall_store::StoreError::Conflict(_) => ApiError::invalid_form("name: Username is already taken"),
        other => other.into(),
    })?;
    let token = crate::auth::new_token(id);
    ctx.app.store.put_token(&token, id).await?;
    let mut body = application.discord_json(&bot, Some(&owner));
    body["token"] = json!(token);
    created(&body)
}

/// The caller's own application (they are its bot), or 404.
async fn own_application(ctx: &Ctx) -> Result<(UserRecord, Application), ApiError> {
    let user = ctx.user().await?;
    let record = ctx.app.store.user(user.id).await?.ok_or_else(ApiError::unauthorized)?;
    let application = record.application.clone().ok_or_else(unknown_application)?;
    Ok((record, application))
}

/// GET /applications/@me and GET /oauth2/applications/@me (what discord.py asks at login).
pub async fn me(ctx: &mut Ctx) -> ApiResult {
    let (record, application) = own_application(ctx).await?;
    let owner = ctx.app.store.user(application.owner_id).await?.map(|r| r.user);
    ok(&application.discord_json(&record.user, owner.as_ref()))
}

/// PATCH /applications/@me (the bot) or /applications/{id} (its owner): description and
/// privileged intent flags. Sessions already connected keep the intents they were given.
pub async fn update(ctx: &mut Ctx, id: Option<Snowflake>) -> ApiResult {
    let caller = ctx.user().await?;
    let id = id.unwrap_or(caller.id);
    let mut record = ctx.app.store.user(id).await?.ok_or_else(unknown_application)?;
    let Some(application) = &mut record.application else { return Err(unknown_application()) };
    if caller.id != application.id && caller.id != application.owner_id {
        return Err(ApiError::forbidden(code::MISSING_ACCESS, "Missing Access"));
    }
    let body: UpdateApplication = ctx.json().await?;
    if let Some(description) = body.description {
        if description.chars().count() > 400 {
            return Err(ApiError::invalid_form("description: Must be 400 or fewer in length."));
        }
        application.description = description;
    }
    if let Some(flags) = body.flags {
        application.flags = check_flags(flags)?;
    }
    let application = application.clone();
    ctx.app.store.update_user(record.clone()).await?;
    let owner = ctx.app.store.user(application.owner_id).await?.map(|r| r.user);
    ok(&application.discord_json(&record.user, owner.as_ref()))
}

/// POST /oauth2/authorize?client_id=APP&scope=bot {guild_id, permissions, authorize}: what
/// Discord's "add to server" page posts. The caller needs MANAGE_GUILD in the guild and
/// every permission they grant; the bot joins with a managed role holding them.
pub async fn authorize(ctx: &mut Ctx) -> ApiResult {
    let user = ctx.user().await?;
    let client_id: Snowflake =
        ctx.query_parse("client_id")?.ok_or_else(|| ApiError::invalid_form("client_id: required"))?;
    let scopes = ctx.query("scope").unwrap_or("bot").to_owned();
    if !scopes.split([' ', ',']).any(|s| s == "bot") {
        return Err(ApiError::invalid_form("scope: only the bot scope is supported"));
    }
    let body: Authorize = ctx.json().await?;
    if !body.authorize {
        return ok(&json!({ "location": "https://discord.com/oauth2/authorized?error=access_denied" }));
    }
    let record = ctx.app.store.user(client_id).await?.ok_or_else(unknown_application)?;
    let Some(application) = record.application else { return Err(unknown_application()) };
    let guild = body.guild_id;
    if !guild_permissions(ctx, user.id, guild).await?.contains(Permissions::MANAGE_GUILD) {
        return Err(ApiError::forbidden(code::MISSING_PERMISSIONS, "Missing Permissions"));
    }
    if ctx.app.store.member(guild, application.id).await?.is_some() {
        return ok(&json!({ "location": "https://discord.com/oauth2/authorized" }));
    }
    let permissions = body.permissions.unwrap_or(Permissions::NONE).known();
    let mut member = Member::new(record.user.clone(), now_iso(ctx));
    let handle = guild_handle(ctx, guild).await?;
    if permissions != Permissions::NONE {
        let mut role = Role::new(ctx.app.new_id()?, application.name.clone(), 1, permissions);
        role.tags = Some(RoleTags { bot_id: Some(application.id) });
        match handle.call(RoleCommand::Create { user: user.id, role }, actor_timeout(ctx)).await? {
            Reply::Role(role) => member.roles.push(role.id),
            other => return Err(unexpected(other)),
        }
    }
    handle.call(MemberCommand::Join { member, invite: None }, actor_timeout(ctx)).await?;
    notify_joined(ctx, &record.user, guild);
    ok(&json!({ "location": "https://discord.com/oauth2/authorized" }))
}
