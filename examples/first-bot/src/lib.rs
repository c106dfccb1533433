//! Your first bot (see README.md next to this crate for the walk-through).
//!
//! It answers `!hello` and remembers, in its key-value store, how many times each member
//! said it: the store is private to this bot in this guild and survives restarts.

use guildhall_sdk::bot::{self, kv, Bot, GuildEvent};
use guildhall_sdk::Config;

pub struct FirstBot {
    greeting: String,
}

/// The reply for someone's `count`-th hello.
pub fn reply(greeting: &str, user_id: u64, count: u64) -> String {
    let times = if count == 1 { "1 hello".to_owned() } else { format!("{count} hellos") };
    format!("{greeting} <@{user_id}>! That makes {times} from you.")
}

impl Bot for FirstBot {
    fn init(config: &Config) -> Result<Self, String> {
        // Configuration is whatever JSON object the guild owner set; `{}` by default.
        let greeting = config.get("greeting").and_then(|g| g.as_str()).unwrap_or("Hello");
        Ok(FirstBot { greeting: greeting.to_owned() })
    }

    fn on_event(&mut self, event: GuildEvent) {
        let GuildEvent::MessageCreate(message) = event else { return };
        if message.author.bot || message.content.trim() != "!hello" {
            return; // never answer bots (including ourselves)
        }
        let key = format!("hellos:{}", message.author.id);
        let previous =
            kv::get(&key).and_then(|v| String::from_utf8(v).ok()).and_then(|s| s.parse().ok()).unwrap_or(0u64);
        let count = previous + 1;
        // Quotas apply (keys, bytes); if the store refuses, still answer.
        let _ = kv::set(&key, count.to_string().as_bytes());
        let _ = bot::send(message.channel_id, &reply(&self.greeting, message.author.id, count));
    }
}

guildhall_sdk::export_bot!(FirstBot);

#[cfg(test)]
mod tests {
    #[test]
    fn replies() {
        assert_eq!(super::reply("Hello", 7, 1), "Hello <@7>! That makes 1 hello from you.");
        assert_eq!(super::reply("Hi", 7, 3), "Hi <@7>! That makes 3 hellos from you.");
    }
}
