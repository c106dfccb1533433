//! The host's budget of plugin linear memory, and each guild's share of it and of the
//! instance pool.
//!
//! Per-instance limits bound one instance; the pool bounds how many live at once. Neither
//! bounds their sum: 2,000 live Python instances at 12 MiB each are 24 GiB, and at their
//! 96 MiB limit far more than a host has; nor does either keep one guild from taking the
//! whole pool. Every store's limiter ([`BudgetedLimits`]) takes one of its guild's
//! instances when it is made and reserves the bytes of each memory it creates or grows
//! here first, and gives both back when the instance is dropped. A reservation the budget
//! cannot cover fails the instantiation or the growth with [`OverBudget`], which the host
//! reports as backpressure (`PluginError::Capacity`), never as the plugin's fault: it may
//! be another guild that spent the budget.

use guildhall_core::sync::LockUnpoisoned;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use wasmtime::{ResourceLimiter, StoreLimits};

/// Which budget a reservation did not fit in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OverBudget {
    #[error("the host's plugin memory budget ({limit_mib} MiB) is spent")]
    Host { limit_mib: usize },
    #[error("this guild's share of plugin memory ({limit_mib} MiB) is spent")]
    Guild { limit_mib: usize },
    #[error("this guild's share of the plugin instance pool ({limit} live instances) is taken")]
    GuildInstances { limit: usize },
}

/// Bytes of linear memory reserved, in total and by guild, and each guild's live instances.
pub struct PluginBudget {
    total: usize,
    per_guild: usize,
    instances_per_guild: usize,
    usage: Mutex<Usage>,
}

#[derive(Default)]
struct Usage {
    total: usize,
    by_guild: HashMap<u64, GuildUsage>,
}

#[derive(Default)]
struct GuildUsage {
    bytes: usize,
    instances: usize,
}

impl PluginBudget {
    pub fn new(total: usize, per_guild: usize, instances_per_guild: usize) -> PluginBudget {
        PluginBudget { total, per_guild, instances_per_guild, usage: Mutex::default() }
    }

    fn usage(&self) -> std::sync::MutexGuard<'_, Usage> {
        self.usage.lock_unpoisoned()
    }

    /// Takes one of `guild`'s live instances, if its share has one left.
    pub fn take_instance(&self, guild: u64) -> Result<(), OverBudget> {
        let mut usage = self.usage();
        let of_guild = usage.by_guild.entry(guild).or_default();
        if of_guild.instances >= self.instances_per_guild {
            return Err(OverBudget::GuildInstances { limit: self.instances_per_guild });
        }
        of_guild.instances += 1;
        Ok(())
    }

    /// Reserves `bytes` for `guild` (which holds an instance), or says which budget they
    /// do not fit in.
    pub fn reserve(&self, guild: u64, bytes: usize) -> Result<(), OverBudget> {
        let mut usage = self.usage();
        if usage.total + bytes > self.total {
            return Err(OverBudget::Host { limit_mib: self.total >> 20 });
        }
        let of_guild = usage.by_guild.get_mut(&guild).expect("memory is reserved by a live instance");
        if of_guild.bytes + bytes > self.per_guild {
            return Err(OverBudget::Guild { limit_mib: self.per_guild >> 20 });
        }
        of_guild.bytes += bytes;
        usage.total += bytes;
        Ok(())
    }

    /// Gives back `bytes` that `guild` reserved.
    fn release(&self, guild: u64, bytes: usize) {
        let mut usage = self.usage();
        assert!(usage.total >= bytes, "released more than was reserved");
        usage.total -= bytes;
        let of_guild = usage.by_guild.get_mut(&guild).expect("a guild releases only what it reserved");
        assert!(of_guild.bytes >= bytes, "a guild released more than it reserved");
        of_guild.bytes -= bytes;
    }

    /// Gives back one of `guild`'s instances and the `bytes` it reserved.
    pub fn release_instance(&self, guild: u64, bytes: usize) {
        self.release(guild, bytes);
        let mut usage = self.usage();
        let of_guild = usage.by_guild.get_mut(&guild).expect("a guild releases only what it took");
        assert!(of_guild.instances > 0, "a guild released an instance it did not take");
        of_guild.instances -= 1;
        if of_guild.instances == 0 {
            assert_eq!(of_guild.bytes, 0, "memory outlived the guild's instances");
            usage.by_guild.remove(&guild);
        }
    }

    /// Bytes reserved by every guild's live instances.
    pub fn used(&self) -> usize {
        self.usage().total
    }

    /// Bytes reserved by `guild`'s live instances.
    pub fn used_by(&self, guild: u64) -> usize {
        self.usage().by_guild.get(&guild).map_or(0, |g| g.bytes)
    }
}

/// A store's limiter: its own limits first, then the host's and its guild's budget. It
/// holds one of its guild's instances; that and what it reserved go back when the store
/// (and so this) is dropped.
pub(crate) struct BudgetedLimits {
    limits: StoreLimits,
    budget: Arc<PluginBudget>,
    guild: u64,
    reserved: usize,
}

impl BudgetedLimits {
    pub(crate) fn new(limits: StoreLimits, budget: Arc<PluginBudget>, guild: u64) -> Result<Self, OverBudget> {
        budget.take_instance(guild)?;
        Ok(BudgetedLimits { limits, budget, guild, reserved: 0 })
    }
}

impl Drop for BudgetedLimits {
    fn drop(&mut self) {
        self.budget.release_instance(self.guild, self.reserved);
    }
}

impl ResourceLimiter for BudgetedLimits {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        // Called for a memory's creation too (current 0): instantiation reserves as well.
        if !self.limits.memory_growing(current, desired, maximum)? {
            return Ok(false);
        }
        let growth = desired.saturating_sub(current);
        self.budget.reserve(self.guild, growth)?;
        self.reserved += growth;
        Ok(true)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        // What was reserved stays reserved until the instance is dropped: wasmtime also
        // reports failures it never asked about (growth past the memory type's own
        // maximum), so which reservation failed is not known here, and giving back the
        // wrong one would let memory go uncounted. A failed growth traps
        // (`trap_on_grow_failure`), and the caller drops the instance at once.
        self.limits.memory_grow_failed(error)
    }

    fn table_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guild_gets_at_most_its_share_and_the_host_at_most_its_budget() {
        let budget = PluginBudget::new(10 << 20, 6 << 20, 2);
        for guild in [1, 2, 3] {
            budget.take_instance(guild).unwrap();
        }
        budget.reserve(1, 4 << 20).unwrap();
        assert_eq!(budget.reserve(1, 3 << 20), Err(OverBudget::Guild { limit_mib: 6 }));
        budget.reserve(2, 6 << 20).unwrap();
        assert_eq!(budget.reserve(3, 1 << 20), Err(OverBudget::Host { limit_mib: 10 }));
        assert_eq!((budget.used(), budget.used_by(1), budget.used_by(2)), (10 << 20, 4 << 20, 6 << 20));
        budget.release_instance(2, 6 << 20);
        budget.reserve(3, 1 << 20).unwrap();
        assert_eq!((budget.used(), budget.used_by(2), budget.used_by(3)), (5 << 20, 0, 1 << 20));
        // Two live instances per guild.
        budget.take_instance(1).unwrap();
        assert_eq!(budget.take_instance(1), Err(OverBudget::GuildInstances { limit: 2 }));
        budget.take_instance(2).unwrap();
        budget.release_instance(1, 0);
        budget.take_instance(1).unwrap();
    }
}
