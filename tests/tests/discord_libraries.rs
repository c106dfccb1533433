//! Real Discord libraries against a real host (issue 10): a discord.py bot and a discord.js
//! bot, unmodified but for where Discord is, log in, see their guild, answer, edit, delete,
//! react, page through history, answer a DM, see a member join, are refused where their
//! permissions say so, and ride out a dropped connection with RESUME. The libraries are
//! installed, pinned, by deploy/dev/discord-libs (the test command runs it); the scenarios
//! live beside their package lists in tests/discord/.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use guildhall_e2e::{Http, Server};
use hyper::{Method, StatusCode};
use serde_json::{json, Value};

/// Messages in #general before the bot connects, for the library's history iterator.
const HISTORY: usize = 150;

/// Permissions: VIEW_CHANNEL, SEND_MESSAGES, EMBED_LINKS, READ_MESSAGE_HISTORY, ADD_REACTIONS.
const BOT_PERMISSIONS: u64 = (1 << 10) | (1 << 11) | (1 << 14) | (1 << 16) | (1 << 6);
/// Application flags: the MESSAGE_CONTENT and GUILD_MEMBERS privileged intents.
const BOT_FLAGS: u64 = (1 << 18) | (1 << 14);

/// The installed libraries ($GUILDHALL_DISCORD_LIBS, default ~/.cache/guildhall/discord-libs),
/// or `None` to skip: never in CI or with GUILDHALL_REQUIRE_DISCORD_LIBS, where their
/// absence fails.
fn libraries() -> Option<PathBuf> {
    let root = std::env::var_os("GUILDHALL_DISCORD_LIBS").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/guildhall/discord-libs")
    });
    if root.join("py/bin/python").exists() {
        return Some(root);
    }
    if std::env::var_os("CI").is_some() || std::env::var_os("GUILDHALL_REQUIRE_DISCORD_LIBS").is_some() {
        panic!("the Discord libraries are not installed at {}: run deploy/dev/discord-libs", root.display());
    }
    eprintln!("SKIPPED: the Discord libraries are not installed (run deploy/dev/discord-libs)");
    None
}

fn scenario(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("discord").join(name)
}

async fn ok(answer: guildhall_e2e::Answer, what: &str) -> Value {
    assert!(answer.status.is_success(), "{what}: {} {}", answer.status, answer.body);
    answer.body
}

/// The world a library bot is tested in, made through REST: an owner, a person who will
/// join, a guild with #general (150 messages), #quiet (the bot may not send) and #secret
/// (hidden from @everyone), and the bot's application, added with a managed role.
struct World {
    env: Vec<(String, String)>,
}

async fn world(server: &Server, bot_name: &str) -> World {
    let http: Http = server.http();
    let (owner, _) = http.register(&format!("{bot_name}_owner")).await;
    let (joiner, joiner_id) = http.register(&format!("{bot_name}_joiner")).await;
    let guild = ok(http.post("/guilds", &owner, json!({ "name": "library test" })).await, "guild").await;
    let gid = guild["id"].as_str().unwrap().to_owned();
    let channels = ok(http.get(&format!("/guilds/{gid}/channels"), &owner).await, "channels").await;
    let general = channels[0]["id"].as_str().unwrap().to_owned();
    let mut made = Vec::new();
    for name in ["quiet", "secret"] {
        let c = ok(http.post(&format!("/guilds/{gid}/channels"), &owner, json!({ "name": name })).await, name).await;
        made.push(c["id"].as_str().unwrap().to_owned());
    }
    let (quiet, secret) = (made[0].clone(), made[1].clone());

    let app = http.post("/applications", &owner, json!({ "name": bot_name, "flags": BOT_FLAGS })).await;
    assert_eq!(app.status, StatusCode::CREATED, "{}", app.body);
    let (bot_id, bot_token) = (app.body["id"].as_str().unwrap(), app.body["token"].as_str().unwrap());
    let authorize = json!({ "guild_id": gid, "permissions": BOT_PERMISSIONS.to_string(), "authorize": true });
    ok(http.post(&format!("/oauth2/authorize?client_id={bot_id}&scope=bot"), &owner, authorize).await, "authorize")
        .await;
    // #quiet: the bot may read but not send; #secret: @everyone (and so the bot) cannot view.
    let deny_send = json!({ "type": 1, "deny": (1u64 << 11).to_string() });
    let path = format!("/channels/{quiet}/permissions/{bot_id}");
    assert_eq!(http.call(Method::PUT, &path, Some(&owner), Some(deny_send)).await.status, StatusCode::NO_CONTENT);
    let deny_view = json!({ "type": 0, "deny": (1u64 << 10).to_string() });
    let path = format!("/channels/{secret}/permissions/{gid}");
    assert_eq!(http.call(Method::PUT, &path, Some(&owner), Some(deny_view)).await.status, StatusCode::NO_CONTENT);
    let invite = ok(http.post(&format!("/channels/{general}/invites"), &owner, json!({})).await, "invite").await;

    for i in 0..HISTORY {
        let body = json!({ "content": format!("history {i}") });
        ok(http.post(&format!("/channels/{general}/messages"), &owner, body).await, "history").await;
    }
    let pairs = [
        ("GUILDHALL_API", format!("http://{}/api/v10", server.addr)),
        ("OWNER_TOKEN", owner),
        ("JOINER_TOKEN", joiner),
        ("JOINER_ID", joiner_id),
        ("BOT_TOKEN", bot_token.to_owned()),
        ("GUILD_ID", gid),
        ("GENERAL_ID", general),
        ("QUIET_ID", quiet),
        ("SECRET_ID", secret),
        ("INVITE_CODE", invite["code"].as_str().unwrap().to_owned()),
        ("HISTORY_COUNT", HISTORY.to_string()),
    ];
    World { env: pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect() }
}

/// Runs a library's scenario to the end; its output is shown, and it must print PASS.
async fn run(program: PathBuf, args: &[PathBuf], world: &World) {
    let mut command = tokio::process::Command::new(&program);
    command.args(args).envs(world.env.iter().cloned()).stdout(Stdio::piped()).stderr(Stdio::piped());
    command.kill_on_drop(true);
    let child = command.spawn().unwrap_or_else(|e| panic!("{}: {e}", program.display()));
    let output = tokio::time::timeout(Duration::from_secs(240), child.wait_with_output())
        .await
        .expect("the scenario finishes within 240 s")
        .expect("the scenario runs");
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    println!("{stdout}");
    assert!(output.status.success() && stdout.contains("PASS"), "the scenario failed:\n{stdout}\n{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_discord_py_bot_works_unmodified_but_for_where_discord_is() {
    let Some(libs) = libraries() else { return };
    let server = Server::start(&[]).await;
    let world = world(&server, "pybot").await;
    run(libs.join("py/bin/python"), &[scenario("discordpy_bot.py")], &world).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_discord_js_bot_works_unmodified_but_for_where_discord_is() {
    let Some(libs) = libraries() else { return };
    let js = libs.join("js");
    assert!(js.join("node_modules/discord.js").exists(), "discord.js is not installed: run deploy/dev/discord-libs");
    // ES modules resolve packages from where the script is: run it beside node_modules.
    let script = js.join(format!("discordjs_bot_{}.mjs", std::process::id()));
    std::fs::copy(scenario("discordjs_bot.mjs"), &script).expect("copy the scenario next to node_modules");
    let server = Server::start(&[]).await;
    let world = world(&server, "jsbot").await;
    run(PathBuf::from("node"), std::slice::from_ref(&script), &world).await;
    let _ = std::fs::remove_file(script);
}
