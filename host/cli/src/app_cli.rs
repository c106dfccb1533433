//! `guildhall app`: bot applications for Discord libraries (discord.py, discord.js, ...):
//! create one (a bot user and its token) and add its bot to a guild.

use bytes::Bytes;
use guildhall_client::{ApiClient, Method};
use serde_json::{json, Value};

#[derive(clap::Subcommand)]
pub enum AppCmd {
    /// Create a bot application; prints it with the bot's token (shown once).
    Create {
        /// The application's and its bot's name (2 to 32 of a-z, 0-9, '_', '.').
        name: String,
        #[arg(long)]
        description: Option<String>,
        /// Turn on the privileged MESSAGE_CONTENT intent.
        #[arg(long)]
        message_content: bool,
        /// Turn on the privileged GUILD_MEMBERS intent.
        #[arg(long)]
        members: bool,
        /// Turn on the privileged GUILD_PRESENCES intent.
        #[arg(long)]
        presences: bool,
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// Your (a person's) token, or GUILDHALL_TOKEN.
        #[arg(long, env = "GUILDHALL_TOKEN")]
        token: String,
    },
    /// Add an application's bot to a guild you manage, with a role holding `permissions`.
    Authorize {
        /// The application's id (its bot's user id).
        #[arg(long)]
        app: String,
        #[arg(long)]
        guild: String,
        /// The permission bitfield the bot's role gets (decimal).
        #[arg(long, default_value = "0")]
        permissions: u64,
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        #[arg(long, env = "GUILDHALL_TOKEN")]
        token: String,
    },
}

pub async fn run(cmd: AppCmd) -> Result<(), String> {
    match cmd {
        AppCmd::Create { name, description, message_content, members, presences, url, token } => {
            let flags = [(message_content, 1u64 << 18), (members, 1 << 14), (presences, 1 << 12)]
                .into_iter()
                .filter(|(on, _)| *on)
                .fold(0, |acc, (_, flag)| acc | flag);
            let body = json!({ "name": name, "description": description, "flags": flags });
            post(&url, &token, "/applications", &body).await
        }
        AppCmd::Authorize { app, guild, permissions, url, token } => {
            let body = json!({ "guild_id": guild, "permissions": permissions.to_string(), "authorize": true });
            post(&url, &token, &format!("/oauth2/authorize?client_id={app}&scope=bot"), &body).await
        }
    }
}

async fn post(url: &str, token: &str, path: &str, body: &Value) -> Result<(), String> {
    let authority = url.strip_prefix("http://").ok_or("only http:// URLs are supported")?.trim_end_matches('/');
    let mut client = ApiClient::connect(authority).await.map_err(|e| e.to_string())?;
    let bytes = Bytes::from(body.to_string());
    let answer =
        client.request(Method::POST, path, Some(token), "application/json", bytes).await.map_err(|e| e.to_string())?;
    println!("{}", String::from_utf8_lossy(&answer.body));
    if answer.status.is_success() {
        Ok(())
    } else {
        Err(format!("the server answered {}", answer.status))
    }
}
