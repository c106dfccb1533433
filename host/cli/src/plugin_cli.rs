//! `guildhall plugin`: helps plugin authors scaffold, build and install components.

use std::path::{Path, PathBuf};
use std::process::Command;

use bytes::Bytes;
use guildhall_client::{ApiClient, Method};

#[derive(clap::Subcommand)]
pub enum PluginCmd {
    /// Scaffold a plugin crate (a cdylib using guildhall-sdk, built for wasm32-wasip2).
    New {
        name: String,
        /// `bot` (default) or `moderator`.
        #[arg(long, default_value = "bot")]
        kind: String,
        /// Where to create the crate (default: the current directory).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// The guildhall-sdk crate to depend on (default: the SDK next to this build's sources).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Build the plugin crate in DIR as a component: cargo build --release --target wasm32-wasip2.
    Build {
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Upload a component to a guild (you must own it).
    Install {
        #[arg(long)]
        guild: String,
        file: PathBuf,
        /// Plugin name (default: the file's stem).
        #[arg(long)]
        name: Option<String>,
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// Your token (or GUILDHALL_TOKEN).
        #[arg(long, env = "GUILDHALL_TOKEN")]
        token: String,
    },
}

pub async fn run(cmd: PluginCmd) -> Result<(), String> {
    match cmd {
        PluginCmd::New { name, kind, dir, sdk } => scaffold(&name, &kind, &dir, sdk),
        PluginCmd::Build { dir } => build(&dir).map(|path| println!("{}", path.display())),
        PluginCmd::Install { guild, file, name, url, token } => install(&guild, &file, name, &url, &token).await,
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

fn scaffold(name: &str, kind: &str, dir: &Path, sdk: Option<PathBuf>) -> Result<(), String> {
    if !valid_name(name) {
        return Err("a plugin name is 1 to 32 of a-z, 0-9, '-' and '_', starting with a letter".into());
    }
    let sdk = sdk.unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sdk"));
    let sdk = sdk.canonicalize().map_err(|e| format!("the SDK at {}: {e} (pass --sdk PATH)", sdk.display()))?;
    let root = dir.join(name);
    if root.exists() {
        return Err(format!("{} already exists", root.display()));
    }
    let (import, body) = match kind {
        "bot" => (
            "use guildhall_sdk::bot::{self, Bot, GuildEvent};",
            r#"pub struct Plugin;

impl Bot for Plugin {
    fn init(_config: &Config) -> Result<Self, String> {
        Ok(Plugin)
    }

    fn on_event(&mut self, event: GuildEvent) {
        if let GuildEvent::MessageCreate(m) = event {
            if !m.author.bot && m.content == "!hello" {
                let _ = bot::send(m.channel_id, "hello!");
            }
        }
    }
}

guildhall_sdk::export_bot!(Plugin);
"#,
        ),
        "moderator" => (
            "use guildhall_sdk::moderation::{Candidate, Moderator, Verdict};",
            r#"pub struct Plugin;

impl Moderator for Plugin {
    fn init(_config: &Config) -> Result<Self, String> {
        Ok(Plugin)
    }

    fn moderate(&mut self, candidate: &Candidate) -> Verdict {
        if candidate.content.contains("forbidden") {
            Verdict::Block("that word is not allowed here".into())
        } else {
            Verdict::Allow
        }
    }
}

guildhall_sdk::export_moderator!(Plugin);
"#,
        ),
        other => return Err(format!("unknown kind {other:?}: bot or moderator")),
    };
    std::fs::create_dir_all(root.join("src")).map_err(|e| e.to_string())?;
    let manifest = format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2021"

[lib]
crate-type = ["cdylib"]

[dependencies]
guildhall-sdk = {{ path = "{sdk}" }}

[profile.release]
opt-level = "s"
strip = true

# A workspace of its own, wherever it is created.
[workspace]
"#,
        sdk = sdk.display()
    );
    std::fs::write(root.join("Cargo.toml"), manifest).map_err(|e| e.to_string())?;
    let lib = format!("//! {name}: a Guildhall {kind} plugin.\n\n{import}\nuse guildhall_sdk::Config;\n\n{body}");
    std::fs::write(root.join("src/lib.rs"), lib).map_err(|e| e.to_string())?;
    println!("created {} ({kind}); build it with: guildhall plugin build --dir {}", root.display(), root.display());
    Ok(())
}

fn build(dir: &Path) -> Result<PathBuf, String> {
    let manifest = dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).map_err(|e| format!("{}: {e}", manifest.display()))?;
    let name = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("name = \"").and_then(|r| r.strip_suffix('"')))
        .ok_or("no package name in Cargo.toml")?
        .replace('-', "_");
    let status = Command::new("cargo")
        .args(["build", "--release", "--target", "wasm32-wasip2", "--manifest-path"])
        .arg(&manifest)
        .status()
        .map_err(|e| format!("running cargo: {e}"))?;
    if !status.success() {
        return Err("cargo build failed (is the target installed? rustup target add wasm32-wasip2)".into());
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| dir.join("target"));
    let wasm = target.join("wasm32-wasip2/release").join(format!("{name}.wasm"));
    if !wasm.exists() {
        return Err(format!("built, but {} is missing", wasm.display()));
    }
    Ok(wasm)
}

async fn install(guild: &str, file: &Path, name: Option<String>, url: &str, token: &str) -> Result<(), String> {
    let bytes = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let name =
        name.unwrap_or_else(|| file.file_stem().map(|s| s.to_string_lossy().replace('_', "-")).unwrap_or_default());
    let authority = url.strip_prefix("http://").ok_or("only http:// URLs are supported")?.trim_end_matches('/');
    let mut client = ApiClient::connect(authority).await.map_err(|e| e.to_string())?;
    let path = format!("/guilds/{guild}/plugins?name={name}");
    let answer = client
        .request(Method::POST, &path, Some(token), "application/wasm", Bytes::from(bytes))
        .await
        .map_err(|e| e.to_string())?;
    let (status, body) = (answer.status, answer.body);
    println!("{}", String::from_utf8_lossy(&body));
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("the server answered {status}"))
    }
}
