//! Installing guild plugins (guild owner only): upload a component, list, configure,
//! enable or disable, remove. The kind is read from the world the component implements.

use guildhall_core::guild::MemberCommand;
use guildhall_core::model::{audit_action, GuildId, Member, PluginRecord, User, UserId, UserRecord};
use guildhall_core::Snowflake;
use guildhall_plugins::{PluginError, PluginKind};
use hyper::StatusCode;
use serde_json::{json, Value};

use super::ctx::{
    actor_timeout, created, guild_handle, no_content, now_iso, ok, record_audit, require_permission, ApiResult, Ctx,
};
use super::error::{code, ApiError};
use guildhall_api::requests::PluginUpdate;
use guildhall_core::permissions::Permissions;
use guildhall_runtime::actors::audit::change;
use guildhall_runtime::actors::guild_actor::GuildMsg;
use guildhall_runtime::plugin_runners::pubsub::Scope;

const MAX_NAME_CHARS: usize = 32;

fn plugin_json(p: &PluginRecord) -> Value {
    json!({
        "id": p.id,
        "guild_id": p.guild_id,
        "name": p.name,
        "kind": p.kind,
        "enabled": p.enabled,
        "config": p.config,
        "component_sha256": p.component_sha256,
        "created_at": p.created_at,
    })
}

async fn reload(ctx: &Ctx, guild_id: GuildId) -> Result<(), ApiError> {
    // The indexing worker looks at the guild's indexer again now (its change re-indexes).
    if let Some(search) = &ctx.app.search {
        search.plugins_changed(guild_id).await;
    }
    let handle = guild_handle(ctx, guild_id).await?;
    handle.send(GuildMsg::PluginsChanged).await;
    Ok(())
}

/// How long an upload waits for its turn to compile (`plugins.max_concurrent_compiles`)
/// before it is answered 503.
const COMPILE_WAIT: std::time::Duration = std::time::Duration::from_secs(20);

fn plugin_error(e: PluginError) -> ApiError {
    match e {
        PluginError::TooLarge { .. } => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, code::REQUEST_TOO_LARGE, e.to_string())
        }
        PluginError::Cache(_) | PluginError::Capacity(_) => ApiError::unavailable(e.to_string()),
        _ => ApiError::bad_request(code::INVALID_FORM_BODY, format!("Invalid plugin: {e}")),
    }
}

/// What an upload must pass before its body is read or compiled: the owner, a valid name,
/// the content type, the guild's plugin quota. Gives the owner and the name.
async fn admit_upload(ctx: &Ctx, guild_id: GuildId) -> Result<(UserId, String), ApiError> {
    let owner = require_permission(ctx, guild_id, Permissions::MANAGE_GUILD).await?;
    let name = ctx.query("name").unwrap_or("").to_owned();
    let valid_name = !name.is_empty()
        && name.chars().count() <= MAX_NAME_CHARS
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !valid_name {
        return Err(ApiError::invalid_form(format!("name: 1 to {MAX_NAME_CHARS} characters of a-z, 0-9, '-' or '_'")));
    }
    if ctx.content_type() != Some("application/wasm") {
        return Err(ApiError::invalid_form("the body must be a component with Content-Type: application/wasm"));
    }
    let quota = ctx.app.config.quotas.plugins_per_guild;
    if ctx.app.store.guild_plugins(guild_id).await?.len() >= quota {
        return Err(ApiError::quota(code::MAX_PLUGINS, "plugins", quota));
    }
    Ok((owner, name))
}

/// POST /guilds/{id}/plugins?name=NAME with the component as the body
/// (`Content-Type: application/wasm`).
pub async fn install(ctx: &mut Ctx, guild_id: GuildId) -> ApiResult {
    let limit = ctx.app.plugins.max_component_bytes();
    let (owner, name) = match admit_upload(ctx, guild_id).await {
        Ok(admitted) => admitted,
        Err(refused) => {
            // A component is megabytes the client is still sending: closing the connection
            // on the unread rest resets it, and the client loses this answer.
            ctx.discard_body_up_to(limit).await;
            return Err(refused);
        }
    };
    let bytes: std::sync::Arc<[u8]> = ctx.body_bytes_up_to(limit).await?.as_ref().into();
    // Compiling takes milliseconds to seconds of CPU, a few at a time: off the async
    // workers, and an upload that cannot get a turn soon is told to come back.
    let loaded = ctx.app.plugins.load_async(bytes.clone(), Some(COMPILE_WAIT)).await.map_err(plugin_error)?;
    ctx.app.store.put_component(&loaded.hash, bytes.to_vec(), ctx.app.clock.unix_ms()).await?;
    let record = PluginRecord {
        id: ctx.app.new_id()?,
        guild_id,
        name,
        kind: loaded.kind,
        enabled: true,
        config: json!({}),
        component_sha256: loaded.hash.clone(),
        created_at: now_iso(ctx),
    };
    if loaded.kind == PluginKind::Bot {
        add_bot_user(ctx, &record).await?;
    }
    ctx.app.store.put_plugin(record.clone()).await?;
    reload(ctx, guild_id).await?;
    let entry = ctx.app.audit.entry(guild_id, Some(owner), Some(record.id), audit_action::INTEGRATION_CREATE);
    record_plugin(ctx, entry, &record).await?;
    created(&plugin_json(&record))
}

/// Every bot acts as a user of its own (`bot: true`, the plugin's id), member of the guild
/// (GUILD_MEMBER_ADD goes out). It cannot log in: it has no password.
async fn add_bot_user(ctx: &Ctx, record: &PluginRecord) -> Result<(), ApiError> {
    let user = User::new(record.id, format!("{}-{}", record.name, record.id.0 % 1_000_000), true);
    // "!" is not a valid password hash: nothing verifies against it.
    ctx.app.store.create_user(UserRecord::person(user.clone(), "!".into())).await?;
    let member = Member::new(user, now_iso(ctx));
    let handle = guild_handle(ctx, record.guild_id).await?;
    handle.call(MemberCommand::Join { member, invite: None }, actor_timeout(ctx)).await?;
    Ok(())
}

pub async fn list(ctx: &mut Ctx, guild_id: GuildId) -> ApiResult {
    require_permission(ctx, guild_id, Permissions::MANAGE_GUILD).await?;
    let plugins = ctx.app.store.guild_plugins(guild_id).await?;
    ok(&plugins.iter().map(plugin_json).collect::<Vec<_>>())
}

async fn find(ctx: &Ctx, guild_id: GuildId, plugin_id: Snowflake) -> Result<PluginRecord, ApiError> {
    let plugins = ctx.app.store.guild_plugins(guild_id).await?;
    plugins.into_iter().find(|p| p.id == plugin_id).ok_or_else(|| ApiError::not_found(code::GENERAL, "Unknown Plugin"))
}

/// PATCH /guilds/{id}/plugins/{plugin_id} {enabled?, config?}. A moderator's new
/// configuration is tried (instantiate and `init`) before it is accepted; a bot's pub/sub
/// subscriptions (`subscribe`) are checked.
pub async fn update(ctx: &mut Ctx, guild_id: GuildId, plugin_id: Snowflake) -> ApiResult {
    let owner = require_permission(ctx, guild_id, Permissions::MANAGE_GUILD).await?;
    let body: PluginUpdate = ctx.json().await?;
    let mut record = find(ctx, guild_id, plugin_id).await?;
    let old = record.clone();
    if let Some(config) = body.config {
        if !config.is_object() {
            return Err(ApiError::invalid_form("config: must be a JSON object"));
        }
        if record.kind == PluginKind::Moderator {
            try_config(ctx, &record, &config).await?;
        }
        if record.kind == PluginKind::Bot {
            let scope = Scope { guild: guild_id, plugin: record.name.clone() };
            ctx.app
                .plugin_bus
                .subscriptions(&scope, &config)
                .map_err(|e| ApiError::invalid_form(format!("config: {e}")))?;
        }
        record.config = config;
    }
    if let Some(enabled) = body.enabled {
        record.enabled = enabled;
    }
    ctx.app.store.put_plugin(record.clone()).await?;
    reload(ctx, guild_id).await?;
    let mut entry = ctx.app.audit.entry(guild_id, Some(owner), Some(record.id), audit_action::INTEGRATION_UPDATE);
    if let Some(entry) = &mut entry {
        entry.changes.extend(change("enabled", json!(old.enabled), json!(record.enabled)));
        entry.changes.extend(change("config", old.config, record.config.clone()));
    }
    record_plugin(ctx, entry, &record).await?;
    ok(&plugin_json(&record))
}

async fn try_config(ctx: &Ctx, record: &PluginRecord, config: &Value) -> Result<(), ApiError> {
    let loaded = match ctx.app.plugins.loaded(&record.component_sha256) {
        Some(loaded) => loaded,
        None => {
            let bytes = ctx
                .app
                .store
                .component(&record.component_sha256)
                .await?
                .ok_or_else(|| ApiError::unavailable("the plugin's component is missing from storage"))?;
            ctx.app.plugins.load_async(bytes.into(), Some(COMPILE_WAIT)).await.map_err(plugin_error)?
        }
    };
    let view = guildhall_plugins::GuildView {
        guild_id: record.guild_id.0,
        channels: std::sync::Arc::new(Vec::new()),
        members: std::sync::Arc::new(|_| Box::pin(async { None })),
        clock: ctx.app.clock.clone(),
    };
    // This checks the configuration (does init accept it?), not its timing: a wall-clock
    // deadline can be missed on a loaded host by a configuration that is fine, and a
    // refusal then would be wrong. The guild still holds every init to its deadline
    // (ten calls' worth), and one that misses it is a fault.
    let per_call = std::time::Duration::from_millis(ctx.app.config.plugins.moderation_deadline_ms);
    let deadline = per_call * guildhall_runtime::plugin_runners::moderation::INIT_DEADLINES * 10;
    match guildhall_plugins::ModeratorInstance::new(
        &ctx.app.plugins,
        &loaded,
        &record.name,
        view,
        &config.to_string(),
        deadline,
    )
    .await
    {
        Ok(_) => Ok(()),
        Err(PluginError::Config(reason)) => Err(ApiError::invalid_form(format!("config: {reason}"))),
        Err(e) => Err(plugin_error(e)),
    }
}

pub async fn remove(ctx: &mut Ctx, guild_id: GuildId, plugin_id: Snowflake) -> ApiResult {
    let owner = require_permission(ctx, guild_id, Permissions::MANAGE_GUILD).await?;
    let record = find(ctx, guild_id, plugin_id).await?;
    if record.kind == PluginKind::Bot {
        // The bot user leaves the guild (GUILD_MEMBER_REMOVE); its messages stay.
        let handle = guild_handle(ctx, guild_id).await?;
        match handle.call(MemberCommand::Leave { user: record.id }, actor_timeout(ctx)).await {
            Ok(_)
            | Err(guildhall_runtime::actors::guild_actor::CallError::Guild(
                guildhall_core::guild::GuildError::NotMember,
            )) => {}
            Err(e) => return Err(e.into()),
        }
    }
    match ctx.app.store.delete_plugin(guild_id, plugin_id).await {
        Ok(()) => {}
        Err(guildhall_store::StoreError::NotFound) => return Err(ApiError::not_found(code::GENERAL, "Unknown Plugin")),
        Err(e) => return Err(e.into()),
    }
    reload(ctx, guild_id).await?;
    let entry = ctx.app.audit.entry(guild_id, Some(owner), Some(record.id), audit_action::INTEGRATION_DELETE);
    record_plugin(ctx, entry, &record).await?;
    no_content()
}

/// An audit entry about a plugin names it and its kind.
async fn record_plugin(
    ctx: &Ctx,
    mut entry: Option<guildhall_core::model::AuditLogEntry>,
    plugin: &PluginRecord,
) -> Result<(), ApiError> {
    if let Some(entry) = &mut entry {
        entry.options.insert("plugin_name".into(), json!(plugin.name));
        entry.options.insert("plugin_kind".into(), json!(plugin.kind));
    }
    record_audit(ctx, entry).await
}
