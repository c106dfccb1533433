//! GET /guilds/{id}/audit-logs (guild owner only), as Discord's: newest first,
//! `before` (an entry id), `limit` (1-100, default 50), and the filters `action_type` and
//! `user_id`.

use guildhall_core::model::{AuditLogEntry, GuildId};
use guildhall_core::Snowflake;
use serde_json::json;

use super::ctx::{ok, require_permission, ApiResult, Ctx};
use super::error::ApiError;
use guildhall_core::permissions::Permissions;

const MAX_LIMIT: usize = 100;
/// Entries read looking for matches of a filter before answering with what was found
/// (bounds the work one filtered request can cause).
const MAX_SCANNED: usize = 5_000;

pub async fn list(ctx: &mut Ctx, guild_id: GuildId) -> ApiResult {
    require_permission(ctx, guild_id, Permissions::VIEW_AUDIT_LOG).await?;
    let param = |name: &str| ctx.query(name);
    let before = param("before").map(|v| v.parse::<Snowflake>()).transpose();
    let before = before.map_err(|_| ApiError::invalid_form("before: Value is not snowflake."))?;
    let user_id = param("user_id").map(|v| v.parse::<Snowflake>()).transpose();
    let user_id = user_id.map_err(|_| ApiError::invalid_form("user_id: Value is not snowflake."))?;
    let action_type = param("action_type").map(|v| v.parse::<u16>()).transpose();
    let action_type = action_type.map_err(|_| ApiError::invalid_form("action_type: Value is not int."))?;
    let limit = match param("limit").map(|v| v.parse::<usize>()) {
        None => 50,
        Some(Ok(n)) if (1..=MAX_LIMIT).contains(&n) => n,
        Some(_) => return Err(ApiError::invalid_form(format!("limit: must be 1 to {MAX_LIMIT}"))),
    };
    let wanted = |e: &AuditLogEntry| {
        action_type.is_none_or(|a| e.action_type == a) && user_id.is_none_or(|u| e.user_id == Some(u))
    };
    let (mut found, mut cursor, mut scanned) = (Vec::new(), before, 0);
    while found.len() < limit && scanned < MAX_SCANNED {
        let page = ctx.app.store.audit_log(guild_id, cursor, MAX_LIMIT, ctx.app.clock.unix_ms()).await?;
        scanned += page.len();
        let last_page = page.len() < MAX_LIMIT;
        cursor = page.last().map(|e| e.id).or(cursor);
        found.extend(page.into_iter().filter(|e| wanted(e)).take(limit - found.len()));
        if last_page {
            break;
        }
    }
    // Discord's audit log object: the other lists are of what this host does not have.
    ok(&json!({
        "audit_log_entries": found,
        "users": [],
        "integrations": [],
        "webhooks": [],
        "threads": [],
        "guild_scheduled_events": [],
        "auto_moderation_rules": [],
        "application_commands": [],
    }))
}
