//! The plugin host against real components built from source (`plugins/automod` and the
//! hostile fixture in `tests/fixtures/hostile`), compiled for wasm32-wasip2 by the test
//! command before the tests run.

mod common;

use common::component;

use std::sync::Arc;
use std::time::{Duration, Instant};

use guildhall_plugins::{
    Candidate, Channel, EngineConfig, GuildView, LoadedPlugin, Member, MemberLookup, ModeratorInstance, PluginEngine,
    PluginError, PluginKind, User, Verdict,
};

const DEADLINE: Duration = Duration::from_millis(5);

fn engine() -> PluginEngine {
    let cache_dir = std::env::temp_dir().join(format!("guildhall-plugin-test-cache-{}", std::process::id()));
    PluginEngine::new(EngineConfig { cache_dir, pool_instances: 64, ..EngineConfig::default() }).unwrap()
}

fn view(guild_id: u64) -> GuildView {
    let members: MemberLookup = Arc::new(move |user| {
        Box::pin(async move {
            (user == 7).then(|| Member {
                user: User { id: 7, username: "seven".into(), bot: false },
                nick: None,
                joined_at: "2026-01-01T00:00:00.000000+00:00".into(),
            })
        })
    });
    let clock = Arc::new(guildhall_core::clock::ManualClock::new(1_700_000_000_000));
    GuildView { guild_id, channels: Arc::new(vec![Channel { id: 100, name: "general".into() }]), members, clock }
}

fn candidate(content: &str) -> Candidate {
    Candidate {
        channel_id: 100,
        author: User { id: 7, username: "seven".into(), bot: false },
        content: content.into(),
        is_edit: false,
        mentions: vec![],
    }
}

async fn moderator(engine: &PluginEngine, name: &str, config: &str) -> ModeratorInstance {
    let plugin = engine.load(&component(name)).unwrap();
    ModeratorInstance::new(engine, &plugin, name, view(10), config, Duration::from_millis(50)).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automod_blocks_rewrites_and_allows() {
    let engine = engine();
    let plugin = engine.load(&component("automod")).unwrap();
    assert_eq!(plugin.kind, PluginKind::Moderator);
    assert_eq!(plugin.hash.len(), 64);

    let config = r#"{"banned_words": ["heck"], "max_mentions": 1, "banned_patterns": ["(?i)free\\s+nitro"]}"#;
    let mut m = moderator(&engine, "automod", config).await;
    // The pattern is compiled and matched by the host (the `text` interface).
    assert!(
        matches!(m.moderate(&candidate("get FREE   Nitro now"), DEADLINE).await.unwrap(), Verdict::Block(r) if r.contains("pattern"))
    );
    assert!(
        matches!(m.moderate(&candidate("what the heck"), DEADLINE).await.unwrap(), Verdict::Block(r) if r.contains("banned"))
    );
    assert!(matches!(m.moderate(&candidate("hello there"), DEADLINE).await.unwrap(), Verdict::Allow));
    assert!(matches!(m.moderate(&candidate("see discord.gg/x1"), DEADLINE).await.unwrap(), Verdict::Block(_)));

    let mut r = moderator(&engine, "automod", r#"{"banned_words": ["heck"], "rewrite_banned_words": true}"#).await;
    match r.moderate(&candidate("heck yes"), DEADLINE).await.unwrap() {
        Verdict::Rewrite(s) => assert_eq!(s, "**** yes"),
        other => panic!("{other:?}"),
    }

    // A configuration the plugin refuses is reported as such.
    let refused =
        ModeratorInstance::new(&engine, &plugin, "automod", view(10), r#"{"banned_patterns": ["("]}"#, DEADLINE * 10)
            .await;
    assert!(matches!(refused, Err(PluginError::Config(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validation_refuses_what_is_not_a_known_component() {
    let engine = engine();
    assert!(matches!(engine.load(b"definitely not wasm"), Err(PluginError::NotWasm)));
    assert!(matches!(engine.load(b"\0asm\x01\0\0\0"), Err(PluginError::CoreModule)), "an (empty) core module");
    assert!(matches!(engine.load(b"\0asm\x0d\0\x01\0"), Err(PluginError::UnknownWorld)), "an empty component");
    let mut truncated = component("automod");
    truncated.truncate(truncated.len() / 2);
    assert!(matches!(engine.load(&truncated), Err(PluginError::Compile(_))));
    let small = PluginEngine::new(EngineConfig {
        cache_dir: std::env::temp_dir().join("guildhall-plugin-test-small"),
        max_component_bytes: 1000,
        pool_instances: 4,
        ..EngineConfig::default()
    })
    .unwrap();
    assert!(matches!(small.load(&component("automod")), Err(PluginError::TooLarge { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_infinite_loop_is_stopped_at_the_deadline() {
    let engine = engine();
    let mut m = moderator(&engine, "hostile_fixture", r#"{"mode": "loop"}"#).await;
    let started = Instant::now();
    let result = m.moderate(&candidate("hi"), DEADLINE).await;
    let took = started.elapsed();
    assert!(matches!(result, Err(PluginError::Trap(_))), "{result:?}");
    // 5 ms is the deadline; the margin absorbs a loaded CI machine, not a missing stop.
    assert!(took < Duration::from_millis(250), "stopped after {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbounded_memory_growth_traps_at_the_limit() {
    let engine = engine();
    let mut m = moderator(&engine, "hostile_fixture", r#"{"mode": "grow"}"#).await;
    let result = m.moderate(&candidate("hi"), Duration::from_secs(2)).await;
    assert!(matches!(&result, Err(PluginError::Trap(_))), "{result:?}");
}

/// A reason is cut to 512 characters: it lands in audit logs and in the answer to the
/// author (before, a moderator could hand over megabytes of it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_reason_is_cut() {
    let engine = engine();
    let mut m = moderator(&engine, "hostile_fixture", r#"{"mode": "shout"}"#).await;
    match m.moderate(&candidate("hi"), DEADLINE).await {
        Ok(Verdict::Block(reason)) => assert_eq!(reason, "A".repeat(ModeratorInstance::MAX_REASON_CHARS)),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_traps_and_a_fresh_instance_works() {
    let engine = engine();
    let mut m = moderator(&engine, "hostile_fixture", r#"{"mode": "panic"}"#).await;
    assert!(matches!(m.moderate(&candidate("hi"), DEADLINE).await, Err(PluginError::Trap(_))));
    drop(m);
    let mut fine = moderator(&engine, "hostile_fixture", r#"{"mode": "allow"}"#).await;
    assert!(matches!(fine.moderate(&candidate("hi"), DEADLINE).await.unwrap(), Verdict::Allow));
}

/// The engine keeps a dropped instance's dirty pages resident and resets them in place so
/// that the next instance in the slot starts faster: whatever happens to the pages, the
/// next instance (possibly another guild's) must start from the component's initial memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_memory_slot_starts_from_the_initial_image() {
    let engine = engine();
    for round in 0..20 {
        let mut m = moderator(&engine, "hostile_fixture", r#"{"mode": "remember"}"#).await;
        for call in 1..=3 {
            match m.moderate(&candidate("hi"), DEADLINE).await.unwrap() {
                Verdict::Flag(seen) => {
                    assert_eq!(seen, format!("bss={call} data={} heap={call}", 1_000 + call), "round {round}")
                }
                other => panic!("round {round}: {other:?}"),
            }
        }
    }
}

/// The deadline bounds a plugin's own computation: time it spends waiting in host calls (a
/// member lookup that goes to storage) is given back. Two 8 ms lookups under a 5 ms
/// deadline pass; an infinite loop is still stopped (see above).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_in_host_calls_is_not_computing() {
    let engine = engine();
    let plugin = engine.load(&component("hostile_fixture")).unwrap();
    let mut slow = view(10);
    let lookup = slow.members.clone();
    slow.members = Arc::new(move |user| {
        let lookup = lookup.clone();
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(8)).await;
            lookup(user).await
        })
    });
    let config = r#"{"mode": "lookup"}"#;
    let mut m =
        ModeratorInstance::new(&engine, &plugin, "lookup", slow, config, Duration::from_millis(50)).await.unwrap();
    for _ in 0..3 {
        let started = Instant::now();
        let verdict = m.moderate(&candidate("hi"), DEADLINE).await;
        assert!(started.elapsed() >= Duration::from_millis(16), "it did wait");
        assert!(matches!(&verdict, Ok(Verdict::Flag(f)) if f == "member seven"), "{verdict:?}");
    }
}

/// JavaScript and Python moderators (examples/js, examples/python, built by the test
/// command) get their language's limits, and a pool fills by instance slots, not by the
/// dozens of core modules an interpreter's component links: every slot can hold one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interpreted_plugins_get_their_languages_limits_and_fill_the_pool_by_slots() {
    const SLOTS: u32 = 8;
    // The cache the test command fills (`guildhall plugin precompile`): compiling these
    // takes seconds each.
    let exe = std::env::current_exe().unwrap();
    let cache_dir = exe.ancestors().nth(3).unwrap().join("guildhall-plugin-cache");
    let engine =
        PluginEngine::new(EngineConfig { cache_dir, pool_instances: SLOTS, ..EngineConfig::default() }).unwrap();
    for (name, language) in
        [("automod_js", guildhall_plugins::Language::JavaScript), ("automod_py", guildhall_plugins::Language::Python)]
    {
        let plugin = engine.load(&component(name)).unwrap();
        assert_eq!((plugin.language, plugin.kind), (language, PluginKind::Moderator), "{name}");
        let mut live = Vec::new();
        for _ in 0..SLOTS {
            let config = r#"{"banned_words": ["heck"]}"#;
            let made = ModeratorInstance::new(&engine, &plugin, name, view(10), config, Duration::from_secs(1)).await;
            live.push(made.unwrap_or_else(|e| panic!("{name}: instance {} of {SLOTS}: {e}", live.len() + 1)));
        }
        for m in &mut live {
            let verdict = m.moderate(&candidate("oh heck"), Duration::from_secs(1)).await.unwrap();
            assert!(matches!(verdict, Verdict::Block(_)), "{name}: {verdict:?}");
        }
    }
    // An operator who does not accept a language has its components refused.
    let cache_dir = std::env::temp_dir().join(format!("guildhall-plugin-test-nojs-{}", std::process::id()));
    let no_js =
        PluginEngine::new(EngineConfig { cache_dir, pool_instances: 4, javascript: None, ..EngineConfig::default() })
            .unwrap();
    let refused = no_js.load(&component("automod_js"));
    assert!(matches!(refused, Err(PluginError::LanguageRefused("javascript"))), "{:?}", refused.err());
    // A compiled-language component is not given an interpreter's limits.
    let rust = engine.load(&component("automod")).unwrap();
    assert_eq!(rust.language, guildhall_plugins::Language::Compiled);
    assert!(rust.limits.max_memory_bytes < engine.load(&component("automod_js")).unwrap().limits.max_memory_bytes);
}

/// The host's memory budget and each guild's share of it and of the instance pool: an
/// instance that does not fit is not created, and a growth that does not fit fails the
/// call, both as backpressure (`Capacity`), never as a trap the plugin would be blamed
/// for; a guild that spent its share leaves the rest to others; a dropped instance gives
/// its memory and its place back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_budget_is_backpressure_and_one_guild_cannot_spend_it_all() {
    let measure = engine();
    let automod = measure.load(&component("automod")).unwrap();
    async fn make(engine: &PluginEngine, automod: &LoadedPlugin, guild: u64) -> Result<ModeratorInstance, PluginError> {
        let config = r#"{"banned_words": ["heck"]}"#;
        ModeratorInstance::new(engine, automod, "automod", view(guild), config, Duration::from_millis(500)).await
    }
    let one = make(&measure, &automod, 1).await.unwrap();
    let per_instance = measure.memory_in_use(Some(1));
    assert!(per_instance > 0 && measure.memory_in_use(None) == per_instance, "{per_instance}");
    drop(one);
    assert_eq!(measure.memory_in_use(None), 0, "a dropped instance gives its memory back");

    let cache_dir = std::env::temp_dir().join(format!("guildhall-plugin-test-budget-{}", std::process::id()));
    let budgeted = PluginEngine::new(EngineConfig {
        cache_dir,
        pool_instances: 64,
        max_total_memory_bytes: 5 * per_instance,
        max_guild_memory_bytes: 3 * per_instance,
        ..EngineConfig::default()
    })
    .unwrap();
    let automod = budgeted.load(&component("automod")).unwrap();
    let mut guild_1 = Vec::new();
    for _ in 0..3 {
        guild_1.push(make(&budgeted, &automod, 1).await.unwrap());
    }
    let refused = make(&budgeted, &automod, 1).await.err();
    assert!(matches!(&refused, Some(PluginError::Capacity(why)) if why.contains("guild's share")), "{refused:?}");
    let mut guild_2 = vec![make(&budgeted, &automod, 2).await.unwrap(), make(&budgeted, &automod, 2).await.unwrap()];
    let refused = make(&budgeted, &automod, 2).await.err();
    assert!(matches!(&refused, Some(PluginError::Capacity(why)) if why.contains("host's")), "{refused:?}");
    for m in guild_1.iter_mut().chain(guild_2.iter_mut()) {
        assert!(matches!(m.moderate(&candidate("oh heck"), DEADLINE).await, Ok(Verdict::Block(_))));
    }
    guild_1.pop();
    guild_2.push(make(&budgeted, &automod, 2).await.expect("guild 1 gave one instance's memory back"));
    drop((guild_1, guild_2));
    assert_eq!(budgeted.memory_in_use(None), 0);

    // A guild's share of the instance pool: two live ones here, while the pool has 64.
    let shared = PluginEngine::new(EngineConfig {
        cache_dir: std::env::temp_dir().join(format!("guildhall-plugin-test-share-{}", std::process::id())),
        pool_instances: 64,
        max_guild_instances: 2,
        ..EngineConfig::default()
    })
    .unwrap();
    let automod_here = shared.load(&component("automod")).unwrap();
    let hog = [make(&shared, &automod_here, 1).await.unwrap(), make(&shared, &automod_here, 1).await.unwrap()];
    let refused = make(&shared, &automod_here, 1).await.err();
    assert!(matches!(&refused, Some(PluginError::Capacity(why)) if why.contains("instance pool")), "{refused:?}");
    let others: Vec<_> = [2, 3, 4].into_iter().map(|guild| make(&shared, &automod_here, guild)).collect();
    for other in others {
        other.await.expect("other guilds still get instances");
    }
    drop(hog);
    make(&shared, &automod_here, 1).await.expect("a dropped instance gives its place back");

    // A memory bomb whose guild share runs out before its own 16 MiB limit: backpressure,
    // and its memory goes back with it.
    let hostile = budgeted.load(&component("hostile_fixture")).unwrap();
    let mut bomb = ModeratorInstance::new(&budgeted, &hostile, "bomb", view(3), r#"{"mode": "grow"}"#, DEADLINE * 10)
        .await
        .unwrap();
    let result = bomb.moderate(&candidate("hi"), Duration::from_secs(2)).await;
    assert!(matches!(&result, Err(PluginError::Capacity(why)) if why.contains("guild's share")), "{result:?}");
    drop(bomb);
    assert_eq!(budgeted.memory_in_use(None), 0);
}

/// Compilations take turns (`max_concurrent_compiles`): an upload that cannot get one
/// within its wait is refused as backpressure, a component already compiled loads without
/// one, and nothing reaches the cache directory before it passed validation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compilations_take_turns_and_only_valid_components_are_cached() {
    let cache_dir = std::env::temp_dir().join(format!("guildhall-plugin-test-turns-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&cache_dir);
    let engine = Arc::new(
        PluginEngine::new(EngineConfig {
            cache_dir: cache_dir.clone(),
            pool_instances: 4,
            max_concurrent_compiles: 1,
            ..EngineConfig::default()
        })
        .unwrap(),
    );
    let cached_files = || std::fs::read_dir(&cache_dir).unwrap().count();

    // An empty component compiles, but implements no world: refused, and not cached.
    let empty: Arc<[u8]> = b"\0asm\x0d\0\x01\0".as_slice().into();
    assert!(matches!(engine.load_async(empty, None).await, Err(PluginError::UnknownWorld)));
    assert_eq!(cached_files(), 0, "an invalid component's compiled form was cached");

    let first = tokio::spawn({
        let engine = engine.clone();
        async move { engine.load_async(component("hostile_fixture").into(), None).await }
    });
    let started = Instant::now();
    while engine.compiling() == 0 {
        assert!(!first.is_finished() && started.elapsed() < Duration::from_secs(10), "never saw it compile");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let waited = Instant::now();
    let refused = engine.load_async(component("automod").into(), Some(Duration::from_millis(20))).await;
    assert!(matches!(&refused, Err(PluginError::Capacity(why)) if why.contains("busy")), "{:?}", refused.err());
    assert!(waited.elapsed() < Duration::from_secs(2), "waited {:?} for a 20 ms turn", waited.elapsed());
    assert_eq!(first.await.unwrap().unwrap().kind, PluginKind::Moderator);
    assert_eq!(cached_files(), 1, "the valid component is cached");

    // While another compiles, a compiled one loads without a turn.
    let second = tokio::spawn({
        let engine = engine.clone();
        async move { engine.load_async(component("automod").into(), None).await }
    });
    while engine.compiling() == 0 && !second.is_finished() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let again = engine.load_async(component("hostile_fixture").into(), Some(Duration::from_millis(1))).await;
    assert!(again.is_ok(), "{:?}", again.err());
    second.await.unwrap().unwrap();
    let _ = std::fs::remove_dir_all(&cache_dir);
}
