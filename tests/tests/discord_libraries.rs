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
    guildhall_e2e::repo_root().join("tests/discord").join(name)
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

    let (bot_id, bot_token) = add_bot(&http, &owner, &gid, bot_name).await;
    let (bot_id, bot_token) = (bot_id.as_str(), bot_token.as_str());
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

/// A bot application of `owner`'s, added to the guild with [`BOT_PERMISSIONS`] (a managed
/// role): its (id, token).
async fn add_bot(http: &Http, owner: &str, guild: &str, name: &str) -> (String, String) {
    let app = http.post("/applications", owner, json!({ "name": name, "flags": BOT_FLAGS })).await;
    assert_eq!(app.status, StatusCode::CREATED, "{}", app.body);
    let (bot_id, bot_token) = (app.body["id"].as_str().unwrap(), app.body["token"].as_str().unwrap());
    let authorize = json!({ "guild_id": guild, "permissions": BOT_PERMISSIONS.to_string(), "authorize": true });
    ok(http.post(&format!("/oauth2/authorize?client_id={bot_id}&scope=bot"), owner, authorize).await, "authorize")
        .await;
    (bot_id.to_owned(), bot_token.to_owned())
}

/// Runs a library's scenario to the end; its output is shown (and returned), and it must
/// print PASS.
async fn run(program: PathBuf, args: &[PathBuf], world: &World) -> String {
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
    stdout.into_owned()
}

/// Rate limits on, as Discord's but for what the scenario's set-up sends through one
/// address in a second (150 messages of history): every answer the library reads carries
/// the `X-RateLimit-*` headers, and its reactions, reads, invites and guild changes are
/// held to Discord's limits.
const SCENARIO_LIMITS: &[(&str, &str)] = &[
    ("GUILDHALL_RATE_LIMITS__ENABLED", "true"),
    ("GUILDHALL_RATE_LIMITS__GLOBAL", "1000/1s"),
    ("GUILDHALL_RATE_LIMITS__PER_IP", "1000/1s"),
    ("GUILDHALL_RATE_LIMITS__MESSAGE_CREATE", "1000/1s"),
];

/// Low limits for the libraries' rate-limit scenarios: a global limit a burst of reads
/// passes (a 429 no header announced), and a message bucket the sends must wait for.
const LOW_LIMITS: &[(&str, &str)] =
    &[("GUILDHALL_RATE_LIMITS__GLOBAL", "8/2s"), ("GUILDHALL_RATE_LIMITS__MESSAGE_CREATE", "3/2s")];
const BURST: usize = 12;
const SENDS: usize = 6;

/// A bot in a guild, for a library to act as, and what its rate-limit scenario reads.
async fn limits_world(server: &Server) -> World {
    let http = server.http();
    let (owner, _) = http.register("limits_owner").await;
    let guild = ok(http.post("/guilds", &owner, json!({ "name": "limits" })).await, "guild").await;
    let gid = guild["id"].as_str().unwrap();
    let channels = ok(http.get(&format!("/guilds/{gid}/channels"), &owner).await, "channels").await;
    let (_, bot_token) = add_bot(&http, &owner, gid, "limited").await;
    let pairs = [
        ("GUILDHALL_API", format!("http://{}/api/v10", server.addr)),
        ("TOKEN", bot_token),
        ("CHANNEL_ID", channels[0]["id"].as_str().unwrap().to_owned()),
        ("BURST", BURST.to_string()),
        ("SENDS", SENDS.to_string()),
    ];
    World { env: pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect() }
}

/// What a rate-limit scenario printed as `NAME value`.
fn reported(stdout: &str, name: &str) -> f64 {
    let line = stdout.lines().find_map(|l| l.strip_prefix(name)).unwrap_or_else(|| panic!("no {name}: {stdout}"));
    line.trim().parse().expect("a number")
}

/// The library waited for the message bucket (three sends per 2 s: the fourth of six
/// waits for the window), and every 429 the host served was met and waited out by it.
async fn assert_library_kept_to_the_limits(server: &Server, stdout: &str) -> u64 {
    let sequential = reported(stdout, "SEQUENTIAL_SECONDS");
    assert!(sequential >= 1.5, "{SENDS} sends at 3 per 2 s took only {sequential} s");
    let served = server.metric("guildhall_http_rate_limited_total").await;
    assert!(served >= 1, "the host never answered 429");
    served
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discord_py_keeps_to_the_rate_limits_and_waits_out_a_429() {
    let Some(libs) = libraries() else { return };
    let server = Server::start(LOW_LIMITS).await;
    let world = limits_world(&server).await;
    let stdout = run(libs.join("py/bin/python"), &[scenario("discordpy_limits.py")], &world).await;
    let served = assert_library_kept_to_the_limits(&server, &stdout).await;
    // discord.py warns once per 429 it handles: it met every one the host served.
    assert_eq!(reported(&stdout, "LIBRARY_429S") as u64, served, "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discord_js_keeps_to_the_rate_limits_and_waits_out_a_429() {
    let Some(libs) = libraries() else { return };
    let script = beside_node_modules(&libs, "discordjs_limits.mjs");
    let server = Server::start(LOW_LIMITS).await;
    let world = limits_world(&server).await;
    let stdout = run(PathBuf::from("node"), std::slice::from_ref(&script), &world).await;
    let _ = std::fs::remove_file(script);
    assert_library_kept_to_the_limits(&server, &stdout).await;
    // discord.js reports 429s and its own waits alike (`rateLimited`).
    assert!(reported(&stdout, "LIBRARY_429S") >= 1.0, "{stdout}");
}

/// A copy of a discord.js scenario beside node_modules (ES modules resolve packages from
/// where the script is).
fn beside_node_modules(libs: &std::path::Path, name: &str) -> PathBuf {
    let js = libs.join("js");
    assert!(js.join("node_modules/discord.js").exists(), "discord.js is not installed: run deploy/dev/discord-libs");
    let script = js.join(format!("{}_{}.mjs", name.trim_end_matches(".mjs"), std::process::id()));
    std::fs::copy(scenario(name), &script).expect("copy the scenario next to node_modules");
    script
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_discord_py_bot_works_unmodified_but_for_where_discord_is() {
    let Some(libs) = libraries() else { return };
    let server = Server::start(SCENARIO_LIMITS).await;
    let world = world(&server, "pybot").await;
    run(libs.join("py/bin/python"), &[scenario("discordpy_bot.py")], &world).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_discord_js_bot_works_unmodified_but_for_where_discord_is() {
    let Some(libs) = libraries() else { return };
    let script = beside_node_modules(&libs, "discordjs_bot.mjs");
    let server = Server::start(SCENARIO_LIMITS).await;
    let world = world(&server, "jsbot").await;
    run(PathBuf::from("node"), std::slice::from_ref(&script), &world).await;
    let _ = std::fs::remove_file(script);
}

/// One response, as the OpenAPI check reads it: Discord's path template, not the path.
fn record(out: &mut Vec<Value>, method: Method, template: &str, answer: &guildhall_e2e::Answer) {
    let body = if answer.status == StatusCode::NO_CONTENT { Value::Null } else { answer.body.clone() };
    out.push(json!({ "method": method.as_str(), "path": template, "status": answer.status.as_u16(), "body": body }));
}

/// Every implemented route's response, validated against Discord's own OpenAPI description
/// (tests/discord/discord-api-spec, MIT) by tests/discord/openapi_check.py; the known
/// differences are listed, with their reasons, in tests/discord/openapi-differences.txt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_have_the_shapes_of_discords_openapi_description() {
    let Some(libs) = libraries() else { return };
    let server = Server::start(&[]).await;
    let world = world(&server, "shapes").await;
    let env = |k: &str| world.env.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone()).unwrap();
    let (owner, bot, joiner) = (env("OWNER_TOKEN"), format!("Bot {}", env("BOT_TOKEN")), env("JOINER_TOKEN"));
    let (guild, general) = (env("GUILD_ID"), env("GENERAL_ID"));
    let http = server.http();
    let mut out = Vec::new();
    let call = |method: Method, path: String, template: &str, token: &str, body: Option<Value>| {
        let token = token.to_owned();
        let template = template.to_owned();
        async move {
            let answer = http.call(method.clone(), &path, Some(&token), body).await;
            assert!(answer.status.is_success() || answer.status.is_client_error(), "{path}: {}", answer.status);
            (method, template, answer)
        }
    };
    use Method as M;
    let me = call(M::GET, "/users/@me".into(), "/users/@me", &owner, None).await;
    let bot_id = {
        let a = call(M::GET, "/users/@me".into(), "/users/@me", &bot, None).await;
        let id = a.2.body["id"].as_str().unwrap().to_owned();
        record(&mut out, a.0, &a.1, &a.2);
        id
    };
    record(&mut out, me.0, &me.1, &me.2);
    let joiner_id = env("JOINER_ID");
    let a = call(M::POST, format!("/invites/{}", env("INVITE_CODE")), "/invites/{code}", &joiner, None).await;
    assert!(a.2.status.is_success());
    let mut steps: Vec<(Method, String, &str, &str, Option<Value>)> = vec![
        (M::GET, "/users/@me/guilds".into(), "/users/@me/guilds", &owner, None),
        (M::GET, format!("/guilds/{guild}"), "/guilds/{guild_id}", &owner, None),
        (M::PATCH, format!("/guilds/{guild}"), "/guilds/{guild_id}", &owner, Some(json!({ "name": "renamed" }))),
        (M::GET, format!("/guilds/{guild}/channels"), "/guilds/{guild_id}/channels", &bot, None),
        (
            M::POST,
            format!("/guilds/{guild}/channels"),
            "/guilds/{guild_id}/channels",
            &owner,
            Some(json!({ "name": "more" })),
        ),
        (M::GET, format!("/guilds/{guild}/members?limit=10"), "/guilds/{guild_id}/members", &owner, None),
        (M::GET, format!("/guilds/{guild}/members/{bot_id}"), "/guilds/{guild_id}/members/{user_id}", &owner, None),
        (M::GET, format!("/guilds/{guild}/roles"), "/guilds/{guild_id}/roles", &bot, None),
        (M::GET, format!("/channels/{general}"), "/channels/{channel_id}", &bot, None),
        (M::PATCH, format!("/channels/{general}"), "/channels/{channel_id}", &owner, Some(json!({ "topic": "talk" }))),
        (M::POST, format!("/channels/{general}/invites"), "/channels/{channel_id}/invites", &owner, Some(json!({}))),
        (M::GET, format!("/invites/{}", env("INVITE_CODE")), "/invites/{code}", &joiner, None),
        (M::GET, format!("/guilds/{guild}/invites"), "/guilds/{guild_id}/invites", &owner, None),
        (M::GET, format!("/channels/{general}/invites"), "/channels/{channel_id}/invites", &owner, None),
        (M::GET, format!("/channels/{general}/messages?limit=3"), "/channels/{channel_id}/messages", &bot, None),
        (
            M::GET,
            format!("/guilds/{guild}/messages/search?limit=5"),
            "/guilds/{guild_id}/messages/search",
            &owner,
            None,
        ),
        (M::POST, format!("/channels/{general}/typing"), "/channels/{channel_id}/typing", &bot, None),
        (M::GET, "/gateway".into(), "/gateway", &bot, None),
        (M::GET, "/gateway/bot".into(), "/gateway/bot", &bot, None),
        (M::GET, "/oauth2/applications/@me".into(), "/oauth2/applications/@me", &bot, None),
        (M::GET, "/applications/@me".into(), "/applications/@me", &bot, None),
        (M::PATCH, "/applications/@me".into(), "/applications/@me", &bot, Some(json!({ "description": "a test bot" }))),
        (M::GET, format!("/guilds/{guild}/audit-logs"), "/guilds/{guild_id}/audit-logs", &owner, None),
        (M::POST, "/users/@me/channels".into(), "/users/@me/channels", &owner, Some(json!({ "recipient_id": bot_id }))),
        // Refusals: Discord's error object.
        (
            M::POST,
            format!("/channels/{}/messages", env("QUIET_ID")),
            "/channels/{channel_id}/messages",
            &bot,
            Some(json!({ "content": "x" })),
        ),
        (M::GET, format!("/channels/{}/messages", env("SECRET_ID")), "/channels/{channel_id}/messages", &bot, None),
        // Last (the scenario's invite is used above): revoked, then unknown.
        (M::DELETE, format!("/invites/{}", env("INVITE_CODE")), "/invites/{code}", &owner, None),
        (M::GET, format!("/invites/{}", env("INVITE_CODE")), "/invites/{code}", &joiner, None),
    ];
    for (method, path, template, token, body) in steps.drain(..) {
        let (m, t, a) = call(method, path, template, token, body).await;
        record(&mut out, m, &t, &a);
    }
    // A message's life, with a reaction.
    let (m, t, sent) = call(
        M::POST,
        format!("/channels/{general}/messages"),
        "/channels/{channel_id}/messages",
        &bot,
        Some(json!({ "content": "shape" })),
    )
    .await;
    record(&mut out, m, &t, &sent);
    let message = sent.body["id"].as_str().unwrap().to_owned();
    let msg = format!("/channels/{general}/messages/{message}");
    let thumbs = "%F0%9F%91%8D";
    for (method, path, template, body) in [
        (M::GET, msg.clone(), "/channels/{channel_id}/messages/{message_id}", None),
        (M::PATCH, msg.clone(), "/channels/{channel_id}/messages/{message_id}", Some(json!({ "content": "edited" }))),
        (
            M::PUT,
            format!("{msg}/reactions/{thumbs}/@me"),
            "/channels/{channel_id}/messages/{message_id}/reactions/{emoji_name}/@me",
            None,
        ),
        (
            M::GET,
            format!("{msg}/reactions/{thumbs}"),
            "/channels/{channel_id}/messages/{message_id}/reactions/{emoji_name}",
            None,
        ),
        (
            M::DELETE,
            format!("{msg}/reactions/{thumbs}/@me"),
            "/channels/{channel_id}/messages/{message_id}/reactions/{emoji_name}/@me",
            None,
        ),
        (M::DELETE, msg.clone(), "/channels/{channel_id}/messages/{message_id}", None),
    ] {
        let (m, t, a) = call(method, path, template, &bot, body).await;
        record(&mut out, m, &t, &a);
    }
    // Roles, member roles, overwrites, kicks and bans (the owner manages).
    let (m, t, role) = call(
        M::POST,
        format!("/guilds/{guild}/roles"),
        "/guilds/{guild_id}/roles",
        &owner,
        Some(json!({ "name": "helpers", "permissions": "8192" })),
    )
    .await;
    record(&mut out, m, &t, &role);
    let role = role.body["id"].as_str().unwrap().to_owned();
    for (method, path, template, body) in [
        (
            M::PATCH,
            format!("/guilds/{guild}/roles/{role}"),
            "/guilds/{guild_id}/roles/{role_id}",
            Some(json!({ "color": 255 })),
        ),
        (
            M::PUT,
            format!("/guilds/{guild}/members/{joiner_id}/roles/{role}"),
            "/guilds/{guild_id}/members/{user_id}/roles/{role_id}",
            None,
        ),
        (
            M::PATCH,
            format!("/guilds/{guild}/members/{joiner_id}"),
            "/guilds/{guild_id}/members/{user_id}",
            Some(json!({ "nick": "jo" })),
        ),
        (
            M::DELETE,
            format!("/guilds/{guild}/members/{joiner_id}/roles/{role}"),
            "/guilds/{guild_id}/members/{user_id}/roles/{role_id}",
            None,
        ),
        (
            M::PUT,
            format!("/channels/{general}/permissions/{role}"),
            "/channels/{channel_id}/permissions/{overwrite_id}",
            Some(json!({ "type": 0, "allow": "64" })),
        ),
        (
            M::DELETE,
            format!("/channels/{general}/permissions/{role}"),
            "/channels/{channel_id}/permissions/{overwrite_id}",
            None,
        ),
        (M::DELETE, format!("/guilds/{guild}/roles/{role}"), "/guilds/{guild_id}/roles/{role_id}", None),
        (M::PUT, format!("/guilds/{guild}/bans/{joiner_id}"), "/guilds/{guild_id}/bans/{user_id}", Some(json!({}))),
        (M::GET, format!("/guilds/{guild}/bans"), "/guilds/{guild_id}/bans", None),
        (M::GET, format!("/guilds/{guild}/bans/{joiner_id}"), "/guilds/{guild_id}/bans/{user_id}", None),
        (M::DELETE, format!("/guilds/{guild}/bans/{joiner_id}"), "/guilds/{guild_id}/bans/{user_id}", None),
        (M::DELETE, format!("/guilds/{guild}/members/{bot_id}"), "/guilds/{guild_id}/members/{user_id}", None),
    ] {
        let (m, t, a) = call(method, path, template, &owner, body).await;
        record(&mut out, m, &t, &a);
    }

    let dir = std::env::temp_dir().join(format!("guildhall-openapi-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let responses = dir.join("responses.json");
    std::fs::write(&responses, serde_json::to_vec_pretty(&Value::Array(out)).unwrap()).unwrap();
    let args = [
        scenario("openapi_check.py"),
        scenario("discord-api-spec/openapi.json"),
        responses,
        scenario("openapi-differences.txt"),
    ];
    run(libs.join("py/bin/python"), &args, &world).await;
    let _ = std::fs::remove_dir_all(dir);
}
