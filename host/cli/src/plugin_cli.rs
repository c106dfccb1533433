//! `guildhall plugin`: helps plugin authors scaffold, build and install components.

use std::path::{Path, PathBuf};
use std::process::Command;

use bytes::Bytes;
use guildhall_client::{ApiClient, Method};
use guildhall_core::model::PluginKind;

#[derive(clap::Subcommand)]
pub enum PluginCmd {
    /// Scaffold a plugin: a Rust crate (a cdylib using guildhall-sdk, for wasm32-wasip2), or
    /// a JavaScript or Python module with its `plugin.json`.
    New {
        name: String,
        /// `bot` (default) or `moderator`.
        #[arg(long, default_value = "bot")]
        kind: PluginKind,
        /// `rust` (default), `js` or `python`.
        #[arg(long, default_value = "rust")]
        lang: String,
        /// Where to create it (default: the current directory).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// The SDK directory, `sdk/` of Guildhall's sources (default: the one next to this
        /// build's sources).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Build the plugin in DIR as a component: a Rust crate with cargo (wasm32-wasip2), a
    /// JavaScript or Python plugin (its plugin.json) with its SDK's build command.
    Build {
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Compile components into the host's cache ahead of their upload (the same cache a
    /// host with this `plugins.cache_dir` uses): a JavaScript or Python component takes
    /// seconds of CPU to compile.
    Precompile {
        /// The cache directory (a host's `plugins.cache_dir`).
        #[arg(long)]
        cache_dir: PathBuf,
        files: Vec<PathBuf>,
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
        PluginCmd::New { name, kind, lang, dir, sdk } => {
            if !valid_name(&name) {
                return Err("a plugin name is 1 to 32 of a-z, 0-9, '-' and '_', starting with a letter".into());
            }
            let sdk = sdk.unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sdk"));
            let sdk = sdk.canonicalize().map_err(|e| format!("the SDK at {}: {e} (pass --sdk PATH)", sdk.display()))?;
            match lang.as_str() {
                "rust" => scaffold(&name, kind, &dir, &sdk),
                "js" | "python" => scaffold_interpreted(&name, kind, &lang, &dir, &sdk),
                other => Err(format!("unknown language {other:?}: rust, js or python")),
            }
        }
        PluginCmd::Build { dir } => {
            let built = if dir.join("plugin.json").exists() { build_interpreted(&dir) } else { build(&dir) };
            built.map(|path| println!("{}", path.display()))
        }
        PluginCmd::Precompile { cache_dir, files } => precompile(cache_dir, &files),
        PluginCmd::Install { guild, file, name, url, token } => install(&guild, &file, name, &url, &token).await,
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

fn scaffold(name: &str, kind: PluginKind, dir: &Path, sdk: &Path) -> Result<(), String> {
    let root = dir.join(name);
    if root.exists() {
        return Err(format!("{} already exists", root.display()));
    }
    let (import, body) = match kind {
        PluginKind::Bot => (
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
        PluginKind::Moderator => (
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
        PluginKind::Indexer => (
            "use guildhall_sdk::indexing::{Document, GuildEvent, Indexer};",
            r#"pub struct Plugin;

impl Indexer for Plugin {
    fn init(_config: &Config) -> Result<Self, String> {
        Ok(Plugin)
    }

    /// A document per message created or edited: its content, and tags for search filters.
    fn index(&mut self, events: Vec<GuildEvent>) -> Vec<Document> {
        events
            .into_iter()
            .filter_map(|event| match event {
                GuildEvent::MessageCreate(m) | GuildEvent::MessageUpdate(m) => Some(Document {
                    id: m.id.to_string(),
                    channel_id: m.channel_id,
                    author_id: m.author.id,
                    timestamp: m.timestamp.clone(),
                    tags: vec![if m.author.bot { "author_type:bot" } else { "author_type:user" }.into()],
                    text: m.content,
                }),
                _ => None,
            })
            .collect()
    }
}

guildhall_sdk::export_indexer!(Plugin);
"#,
        ),
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

/// What `plugin new --lang js|python` writes next to the module, and `plugin build` reads.
#[derive(serde::Serialize, serde::Deserialize)]
struct InterpretedPlugin {
    name: String,
    /// The world it is built for (`bot`, `moderator` or `indexer`).
    kind: PluginKind,
    /// `js` or `python`.
    lang: String,
    /// The module, relative to the plugin's directory.
    main: String,
    /// The SDK directory (Guildhall's `sdk/`).
    sdk: PathBuf,
}

fn scaffold_interpreted(name: &str, kind: PluginKind, lang: &str, dir: &Path, sdk: &Path) -> Result<(), String> {
    let root = dir.join(name);
    if root.exists() {
        return Err(format!("{} already exists", root.display()));
    }
    let module = name.replace('-', "_");
    let (main, source) = match (lang, kind) {
        ("js", PluginKind::Bot) => (
            format!("{name}.js"),
            format!(
                r#"// {name}: a Guildhall bot (build: guildhall plugin build).
import {{ send }} from 'guildhall:plugin/messages@0.1.0';
import {{ parseConfig }} from './guildhall.js';

/** @satisfies {{typeof import('guildhall:plugin/events@0.1.0')}} (types: sdk/js/types/bot) */
export const events = {{
  init(config) {{
    parseConfig(config); // throws (refusing it) if it is not a JSON object
  }},

  onEvent(event) {{
    if (event.tag === 'message-create' && !event.val.author.bot && event.val.content === '!hello') {{
      send(event.val.channelId, 'hello!');
    }}
  }},
}};
"#
            ),
        ),
        ("js", PluginKind::Indexer) => (
            format!("{name}.js"),
            format!(
                r#"// {name}: a Guildhall indexer (build: guildhall plugin build).
import {{ parseConfig }} from './guildhall.js';

/** @satisfies {{typeof import('guildhall:plugin/indexing@0.1.0')}} (types: sdk/js/types/indexer) */
export const indexing = {{
  init(config) {{
    parseConfig(config);
  }},

  // A document per message created or edited: its content, and tags for search filters.
  index(events) {{
    const documents = [];
    for (const event of events) {{
      if (event.tag !== 'message-create' && event.tag !== 'message-update') continue;
      const m = event.val;
      const tags = [m.author.bot ? 'author_type:bot' : 'author_type:user'];
      documents.push({{ id: String(m.id), channelId: m.channelId, authorId: m.author.id, timestamp: m.timestamp, text: m.content, tags }});
    }}
    return documents;
  }},
}};
"#
            ),
        ),
        ("js", _) => (
            format!("{name}.js"),
            format!(
                r#"// {name}: a Guildhall moderator (build: guildhall plugin build).
import {{ parseConfig }} from './guildhall.js';

/** @satisfies {{typeof import('guildhall:plugin/moderation@0.1.0')}} (types: sdk/js/types/moderator) */
export const moderation = {{
  init(config) {{
    parseConfig(config);
  }},

  moderate(candidate) {{
    if (candidate.content.includes('forbidden')) {{
      return {{ tag: 'block', val: 'that word is not allowed here' }};
    }}
    return {{ tag: 'allow' }};
  }},
}};
"#
            ),
        ),
        (_, PluginKind::Bot) => (
            format!("{module}.py"),
            format!(
                r#""""{name}: a Guildhall bot (build: guildhall plugin build)."""

from wit_world import exports
from wit_world.imports import messages, types

import guildhall


class Events(exports.Events):
    def init(self, config: str) -> None:
        guildhall.parse_config(config)  # raises (refusing it) if it is not a JSON object

    def on_event(self, event: types.GuildEvent) -> None:
        if isinstance(event, types.GuildEvent_MessageCreate):
            m = event.value
            if not m.author.bot and m.content == "!hello":
                messages.send(m.channel_id, "hello!")
"#
            ),
        ),
        (_, PluginKind::Indexer) => (
            format!("{module}.py"),
            format!(
                r#""""{name}: a Guildhall indexer (build: guildhall plugin build)."""

from wit_world import exports
from wit_world.imports import types

import guildhall


class Indexing(exports.Indexing):
    def init(self, config: str) -> None:
        guildhall.parse_config(config)

    def index(self, events: list[types.GuildEvent]) -> list[types.Document]:
        """A document per message created or edited: its content, and tags for search filters."""
        documents = []
        for event in events:
            if isinstance(event, (types.GuildEvent_MessageCreate, types.GuildEvent_MessageUpdate)):
                m = event.value
                tags = ["author_type:bot" if m.author.bot else "author_type:user"]
                documents.append(
                    types.Document(
                        id=str(m.id),
                        channel_id=m.channel_id,
                        author_id=m.author.id,
                        timestamp=m.timestamp,
                        text=m.content,
                        tags=tags,
                    )
                )
        return documents
"#
            ),
        ),
        _ => (
            format!("{module}.py"),
            format!(
                r#""""{name}: a Guildhall moderator (build: guildhall plugin build)."""

from wit_world import exports
from wit_world.imports import types

import guildhall


class Moderation(exports.Moderation):
    def init(self, config: str) -> None:
        guildhall.parse_config(config)

    def moderate(self, candidate: types.Candidate) -> types.Verdict:
        if "forbidden" in candidate.content:
            return types.Verdict_Block("that word is not allowed here")
        return types.Verdict_Allow()
"#
            ),
        ),
    };
    std::fs::create_dir_all(&root).map_err(|e| e.to_string())?;
    std::fs::write(root.join(&main), source).map_err(|e| e.to_string())?;
    if lang == "js" {
        // The helpers beside the module: componentize-js reads only the module's own tree.
        for helper in ["guildhall.js", "guildhall.d.ts"] {
            std::fs::copy(sdk.join("js").join(helper), root.join(helper)).map_err(|e| format!("{helper}: {e}"))?;
        }
    }
    let manifest = InterpretedPlugin { name: name.to_owned(), kind, lang: lang.to_owned(), main, sdk: sdk.to_owned() };
    let json = serde_json::to_string_pretty(&manifest).expect("serializes");
    std::fs::write(root.join("plugin.json"), json + "\n").map_err(|e| e.to_string())?;
    println!(
        "created {} ({lang} {kind}); build it with: guildhall plugin build --dir {}",
        root.display(),
        root.display()
    );
    Ok(())
}

/// Builds a JavaScript or Python plugin with its SDK's build command: `node
/// sdk/js/build.mjs` (after `npm ci` in sdk/js) or `sdk/python/build.py` with a Python that
/// has componentize-py ($GUILDHALL_PLUGIN_PYTHON, else `python3`).
fn build_interpreted(dir: &Path) -> Result<PathBuf, String> {
    let path = dir.join("plugin.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let plugin: InterpretedPlugin = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let dir = &dir.canonicalize().map_err(|e| format!("{}: {e}", dir.display()))?;
    let out = dir.join(format!("{}.wasm", plugin.name.replace('-', "_")));
    let (program, script) = match plugin.lang.as_str() {
        "js" => ("node".to_owned(), plugin.sdk.join("js/build.mjs")),
        "python" => {
            let python = std::env::var("GUILDHALL_PLUGIN_PYTHON").unwrap_or_else(|_| "python3".into());
            (python, plugin.sdk.join("python/build.py"))
        }
        other => return Err(format!("{}: unknown lang {other:?}", path.display())),
    };
    // From the plugin's directory: what its module imports is read from there.
    let status = Command::new(&program)
        .current_dir(dir)
        .arg(&script)
        .arg(dir.join(&plugin.main))
        .args(["--world", plugin.kind.as_str(), "-o"])
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .status()
        .map_err(|e| format!("running {program}: {e}"))?;
    if !status.success() {
        return Err(format!("{} failed (its toolchain: deploy/dev/plugin-sdks installs it)", script.display()));
    }
    Ok(out)
}

/// Compiles each file into `cache_dir` as a host of this build would, and says what it is.
fn precompile(cache_dir: PathBuf, files: &[PathBuf]) -> Result<(), String> {
    let config = guildhall_plugins::EngineConfig { cache_dir, pool_instances: 4, ..Default::default() };
    let engine = guildhall_plugins::PluginEngine::new(config).map_err(|e| e.to_string())?;
    for file in files {
        let bytes = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let started = std::time::Instant::now();
        let loaded = engine.load(&bytes).map_err(|e| format!("{}: {e}", file.display()))?;
        println!(
            "{}: {} {} {}, {:.1} s",
            file.display(),
            loaded.language.as_str(),
            loaded.kind.as_str(),
            loaded.hash,
            started.elapsed().as_secs_f64()
        );
    }
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
