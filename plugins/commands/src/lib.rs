//! commands: a bot answering `!ping`, `!roll NdM`, `!poll` (with reactions to vote),
//! `!remind <minutes> <text>`
//! and `!help`. Configuration: `{"prefix": "!"}` (1 to 3 characters; `!` by default).
//! Reminders are host timers: the host keeps them in storage, so they come even if the
//! bot is reloaded or the host restarts in between.

use guildhall_sdk::bot::{self, now_ms, Bot, GuildEvent, Message};
use guildhall_sdk::Config;

/// Longest reminder, in minutes (one week).
const MAX_REMIND_MINUTES: f64 = 7.0 * 24.0 * 60.0;

#[derive(Debug, PartialEq)]
pub enum Action {
    Say(String),
    /// Say this, then react to it with these emojis (a poll's voting buttons).
    Poll {
        text: String,
        reactions: Vec<&'static str>,
    },
    /// Set a timer that comes back with this payload, and say something now.
    Remind {
        delay_ms: u64,
        payload: String,
        ack: String,
    },
}

pub struct Commands {
    prefix: String,
    rng: u64,
}

impl Commands {
    pub fn new(prefix: &str, seed: u64) -> Commands {
        Commands { prefix: prefix.to_owned(), rng: seed | 1 }
    }

    fn next(&mut self) -> u64 {
        // xorshift64*: good enough for dice.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// What to do about a message (pure, apart from the dice).
    pub fn respond(&mut self, content: &str, author_id: u64, channel_id: u64) -> Option<Action> {
        let rest = content.trim().strip_prefix(self.prefix.as_str())?;
        let (command, args) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        let args = args.trim();
        match command {
            "ping" => Some(Action::Say("pong".into())),
            "roll" => Some(Action::Say(self.roll(args))),
            "poll" => Some(poll(args, &self.prefix)),
            "remind" => Some(remind(args, author_id, channel_id, &self.prefix)),
            "help" => Some(Action::Say(format!(
                "commands: {p}ping, {p}roll NdM, {p}poll question | option | option..., {p}remind <minutes> <text>, {p}help",
                p = self.prefix
            ))),
            _ => None,
        }
    }

    fn roll(&mut self, args: &str) -> String {
        let usage =
            format!("usage: {}roll NdM, e.g. {}roll 2d6 (N up to 100, M from 2 to 1000)", self.prefix, self.prefix);
        let Some((n, m)) = args.split_once('d') else { return usage };
        let n: u32 = if n.is_empty() { 1 } else { n.parse().unwrap_or(0) };
        let m: u32 = m.parse().unwrap_or(0);
        if !(1..=100).contains(&n) || !(2..=1000).contains(&m) {
            return usage;
        }
        let rolls: Vec<u64> = (0..n).map(|_| self.next() % u64::from(m) + 1).collect();
        let total: u64 = rolls.iter().sum();
        let shown: Vec<String> = rolls.iter().map(u64::to_string).collect();
        format!("rolled {n}d{m}: {} = {total}", shown.join(" + "))
    }
}

/// Voting buttons: keycap digits 1 to 9, then ten.
const POLL_EMOJIS: [&str; 10] = ["1️⃣", "2️⃣", "3️⃣", "4️⃣", "5️⃣", "6️⃣", "7️⃣", "8️⃣", "9️⃣", "🔟"];

fn poll(args: &str, prefix: &str) -> Action {
    let parts: Vec<&str> = args.split('|').map(str::trim).filter(|s| !s.is_empty()).collect();
    if parts.len() < 3 || parts.len() > 11 {
        return Action::Say(format!("usage: {prefix}poll question | option | option (2 to 10 options)"));
    }
    let mut text = format!("poll: {}", parts[0]);
    for (option, emoji) in parts[1..].iter().zip(POLL_EMOJIS) {
        text.push_str(&format!("\n{emoji} {option}"));
    }
    Action::Poll { text, reactions: POLL_EMOJIS[..parts.len() - 1].to_vec() }
}

fn remind(args: &str, author_id: u64, channel_id: u64, prefix: &str) -> Action {
    let usage = || Action::Say(format!("usage: {prefix}remind <minutes> <text>"));
    let Some((minutes, text)) = args.split_once(char::is_whitespace) else { return usage() };
    let Ok(minutes) = minutes.parse::<f64>() else { return usage() };
    if !(minutes > 0.0 && minutes <= MAX_REMIND_MINUTES) || text.trim().is_empty() {
        return usage();
    }
    let payload =
        serde_json::json!({ "channel": channel_id.to_string(), "user": author_id.to_string(), "text": text.trim() });
    Action::Remind {
        delay_ms: (minutes * 60_000.0) as u64,
        payload: payload.to_string(),
        ack: format!("<@{author_id}> I will remind you in {minutes} minute(s)."),
    }
}

/// The message a due reminder sends: (channel, content).
pub fn reminder_message(payload: &str) -> Option<(u64, String)> {
    let v: serde_json::Value = serde_json::from_str(payload).ok()?;
    let channel = v["channel"].as_str()?.parse().ok()?;
    let user = v["user"].as_str()?;
    let text = v["text"].as_str()?;
    Some((channel, format!("<@{user}> reminder: {text}")))
}

impl Bot for Commands {
    fn init(config: &Config) -> Result<Self, String> {
        let prefix =
            config.get("prefix").map(|p| p.as_str().ok_or("prefix must be a string")).transpose()?.unwrap_or("!");
        if prefix.is_empty() || prefix.chars().count() > 3 || prefix.chars().any(char::is_whitespace) {
            return Err("prefix must be 1 to 3 characters without spaces".into());
        }
        Ok(Commands::new(prefix, now_ms()))
    }

    fn on_event(&mut self, event: GuildEvent) {
        match event {
            GuildEvent::MessageCreate(Message { author, content, channel_id, .. }) if !author.bot => {
                match self.respond(&content, author.id, channel_id) {
                    Some(Action::Say(text)) => {
                        let _ = bot::send(channel_id, &text);
                    }
                    Some(Action::Poll { text, reactions }) => {
                        if let Ok(poll) = bot::send(channel_id, &text) {
                            for emoji in reactions {
                                if bot::react(channel_id, poll.id, emoji).is_err() {
                                    break; // out of quota: the options are listed anyway
                                }
                            }
                        }
                    }
                    Some(Action::Remind { delay_ms, payload, ack }) => {
                        let said = match bot::set_timer(delay_ms, &payload) {
                            Ok(_) => ack,
                            Err(e) => format!("cannot set a reminder: {e:?}"),
                        };
                        let _ = bot::send(channel_id, &said);
                    }
                    None => {}
                }
            }
            GuildEvent::Timer(t) => {
                if let Some((channel, text)) = reminder_message(&t.payload) {
                    let _ = bot::send(channel, &text);
                }
            }
            _ => {}
        }
    }
}

guildhall_sdk::export_bot!(Commands);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        let mut c = Commands::new("!", 42);
        assert_eq!(c.respond("!ping", 1, 2), Some(Action::Say("pong".into())));
        assert_eq!(c.respond("ping", 1, 2), None);
        assert_eq!(c.respond("!nope", 1, 2), None);
        let Some(Action::Say(roll)) = c.respond("!roll 3d6", 1, 2) else { panic!() };
        let total: u64 = roll.rsplit("= ").next().unwrap().parse().unwrap();
        assert!((3..=18).contains(&total), "{roll}");
        assert!(matches!(c.respond("!roll 0d6", 1, 2), Some(Action::Say(s)) if s.starts_with("usage")));
        assert!(matches!(c.respond("!roll 1d1", 1, 2), Some(Action::Say(s)) if s.starts_with("usage")));
        let Some(Action::Poll { text, reactions }) = c.respond("!poll Lunch? | pizza | tacos", 1, 2) else { panic!() };
        assert_eq!(text, "poll: Lunch?\n1️⃣ pizza\n2️⃣ tacos");
        assert_eq!(reactions, ["1️⃣", "2️⃣"]);
        assert!(matches!(c.respond("!poll just a question", 1, 2), Some(Action::Say(s)) if s.starts_with("usage")));
        let Some(Action::Remind { delay_ms, payload, .. }) = c.respond("!remind 1.5 stretch", 7, 9) else { panic!() };
        assert_eq!(delay_ms, 90_000);
        assert_eq!(reminder_message(&payload), Some((9, "<@7> reminder: stretch".into())));
        assert!(matches!(c.respond("!remind soon stretch", 7, 9), Some(Action::Say(s)) if s.starts_with("usage")));
        assert!(matches!(c.respond("!help", 1, 2), Some(Action::Say(s)) if s.contains("!roll")));
        let mut other = Commands::new("?", 1);
        assert_eq!(other.respond("?ping", 1, 2), Some(Action::Say("pong".into())));
    }
}
