//! Moderator instances: one store per (guild, plugin), reused across calls.

use std::time::Duration;

use wasmtime::component::HasSelf;
use wasmtime::Store;

use crate::engine::Sandbox;
use crate::state::{
    call_error, instantiate_error, linker_with_wasi, new_store, ticks, wall_bound, GuildView, PluginState,
};
use crate::world::{LinkedWorld, LoadedPlugin, PluginError, PluginKind, WorldEntry, WorldInfo};

mod bindings {
    crate::interfaces::world_bindings!("moderator");
}

pub use crate::interfaces::guildhall::plugin::types::{Candidate, Channel, Member, User, Verdict};

type Pre = bindings::ModeratorPre<PluginState>;

pub(crate) fn entry(sandbox: &Sandbox) -> wasmtime::Result<Box<dyn WorldEntry>> {
    let mut linker = linker_with_wasi(sandbox)?;
    bindings::Moderator::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
    let info = WorldInfo {
        kind: PluginKind::Moderator,
        export: "guildhall:plugin/moderation@0.1.0",
        imports: &["types", "log", "clock", "guild", "text"],
    };
    Ok(Box::new(LinkedWorld { info, linker, pre: Pre::new }))
}

/// A live moderator for one guild. After any error the caller must drop it.
pub struct ModeratorInstance {
    store: Store<PluginState>,
    bindings: bindings::Moderator,
    ticks_per_ms: f64,
}

impl ModeratorInstance {
    /// Instantiates (from the pool) and calls `init(config)` within `deadline`.
    pub async fn new(
        engine: &Sandbox,
        plugin: &LoadedPlugin,
        name: &str,
        view: GuildView,
        config: &str,
        deadline: Duration,
    ) -> Result<ModeratorInstance, PluginError> {
        let pre = plugin.prepared::<Pre>()?;
        let (mut store, ticks_per_ms) = new_store(engine, plugin.limits, view, name, None, deadline)?;
        let bindings = pre.instantiate_async(&mut store).await.map_err(instantiate_error)?;
        let mut instance = ModeratorInstance { store, bindings, ticks_per_ms };
        instance.store.set_epoch_deadline(ticks(deadline, ticks_per_ms));
        let init = instance.bindings.guildhall_plugin_moderation().call_init(&mut instance.store, config);
        match tokio::time::timeout(wall_bound(deadline), init).await {
            Ok(Ok(Ok(()))) => Ok(instance),
            Ok(Ok(Err(refused))) => Err(PluginError::Config(refused)),
            Ok(Err(trap)) => Err(call_error(trap)),
            Err(_) => Err(PluginError::Trap("init exceeded its deadline in a host call".into())),
        }
    }

    /// Asks for a verdict; a trap or a missed deadline is an error (drop the instance).
    /// The most characters of a block or flag reason kept (Discord's audit log reason
    /// limit): reasons land in audit logs and in answers to the author.
    pub const MAX_REASON_CHARS: usize = 512;

    pub async fn moderate(&mut self, candidate: &Candidate, deadline: Duration) -> Result<Verdict, PluginError> {
        self.store.data_mut().start_the_clock();
        self.store.set_epoch_deadline(ticks(deadline, self.ticks_per_ms));
        let call = self.bindings.guildhall_plugin_moderation().call_moderate(&mut self.store, candidate);
        // Time waiting in host calls (a member lookup) is given back to the deadline (see
        // `new_store`): bound the whole call in wall time too.
        match tokio::time::timeout(wall_bound(deadline), call).await {
            Ok(Ok(verdict)) => Ok(bounded(verdict)),
            Ok(Err(trap)) => Err(call_error(trap)),
            Err(_) => Err(PluginError::Trap("deadline exceeded in a host call".into())),
        }
    }
}

/// A verdict with its reason cut to [`ModeratorInstance::MAX_REASON_CHARS`] (a rewrite is
/// checked as any message content is, later).
fn bounded(verdict: Verdict) -> Verdict {
    let cut = |reason: String| guildhall_core::text::truncate_chars(reason, ModeratorInstance::MAX_REASON_CHARS);
    match verdict {
        Verdict::Block(reason) => Verdict::Block(cut(reason)),
        Verdict::Flag(reason) => Verdict::Flag(cut(reason)),
        other => other,
    }
}
