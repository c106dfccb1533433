//! welcome: greets new members. Configuration:
//! `{"channel_id": "123", "message": "Welcome {user}!"}`; without `channel_id` it greets
//! in the guild's first channel. `{user}` becomes a mention, `{name}` the username.

use guildhall_sdk::bot::{self, guild, Bot, GuildEvent};
use guildhall_sdk::Config;

pub struct Welcome {
    channel_id: Option<u64>,
    template: String,
}

impl Welcome {
    pub fn greeting(&self, user_id: u64, username: &str) -> String {
        self.template.replace("{user}", &format!("<@{user_id}>")).replace("{name}", username)
    }
}

impl Bot for Welcome {
    fn init(config: &Config) -> Result<Self, String> {
        let channel_id = match config.get("channel_id") {
            None => None,
            Some(v) => Some(match v {
                serde_json::Value::String(s) => s.parse().map_err(|_| "channel_id must be a snowflake")?,
                serde_json::Value::Number(n) => n.as_u64().ok_or("channel_id must be a snowflake")?,
                _ => return Err("channel_id must be a snowflake".into()),
            }),
        };
        let template = config.get("message").and_then(|m| m.as_str()).unwrap_or("Welcome {user}!").to_owned();
        if template.trim().is_empty() || template.chars().count() > 1000 {
            return Err("message must be 1 to 1000 characters".into());
        }
        Ok(Welcome { channel_id, template })
    }

    fn on_event(&mut self, event: GuildEvent) {
        if let GuildEvent::MemberJoin(member) = event {
            if member.user.bot {
                return;
            }
            let channel = self.channel_id.or_else(|| guild::list_channels().first().map(|c| c.id));
            if let Some(channel) = channel {
                let _ = bot::send(channel, &self.greeting(member.user.id, &member.user.username));
            }
        }
    }
}

guildhall_sdk::export_bot!(Welcome);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greeting_fills_the_template() {
        let w = Welcome::init(&serde_json::json!({ "message": "Hi {name}, {user}!" })).unwrap();
        assert_eq!(w.greeting(5, "bob"), "Hi bob, <@5>!");
        assert!(Welcome::init(&serde_json::json!({ "channel_id": true })).is_err());
        assert_eq!(Welcome::init(&serde_json::json!({ "channel_id": "12" })).unwrap().channel_id, Some(12));
    }
}
