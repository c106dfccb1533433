//! The host's budget of plugin linear memory, and each guild's share of it.
//!
//! Per-instance limits bound one instance; the pool bounds how many live at once. Neither
//! bounds their sum: 2,000 live Python instances at 6 MiB each are 12 GiB, and at their
//! 96 MiB limit far more than a host has. Every store's limiter ([`BudgetedLimits`])
//! reserves the bytes of each memory it creates or grows here first, and gives them back
//! when the instance is dropped. A reservation the budget cannot cover fails the
//! instantiation or the growth with [`OverBudget`], which the host reports as
//! backpressure (`PluginError::Capacity`), never as the plugin's fault: it may be another
//! guild that spent the budget.

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
}

/// Bytes of linear memory reserved, in total and by guild.
pub struct MemoryBudget {
    total: usize,
    per_guild: usize,
    usage: Mutex<Usage>,
}

#[derive(Default)]
struct Usage {
    total: usize,
    by_guild: HashMap<u64, usize>,
}

impl MemoryBudget {
    pub fn new(total: usize, per_guild: usize) -> MemoryBudget {
        MemoryBudget { total, per_guild, usage: Mutex::default() }
    }

    /// Reserves `bytes` for `guild`, or says which budget they do not fit in.
    pub fn reserve(&self, guild: u64, bytes: usize) -> Result<(), OverBudget> {
        let mut usage = self.usage.lock().unwrap_or_else(|e| e.into_inner());
        let of_guild = usage.by_guild.get(&guild).copied().unwrap_or(0);
        if of_guild + bytes > self.per_guild {
            return Err(OverBudget::Guild { limit_mib: self.per_guild >> 20 });
        }
        if usage.total + bytes > self.total {
            return Err(OverBudget::Host { limit_mib: self.total >> 20 });
        }
        usage.total += bytes;
        *usage.by_guild.entry(guild).or_default() += bytes;
        Ok(())
    }

    /// Gives back `bytes` that `guild` reserved.
    pub fn release(&self, guild: u64, bytes: usize) {
        if bytes == 0 {
            return;
        }
        let mut usage = self.usage.lock().unwrap_or_else(|e| e.into_inner());
        assert!(usage.total >= bytes, "released more than was reserved");
        usage.total -= bytes;
        let of_guild = usage.by_guild.get_mut(&guild).expect("a guild releases only what it reserved");
        assert!(*of_guild >= bytes, "a guild released more than it reserved");
        *of_guild -= bytes;
        if *of_guild == 0 {
            usage.by_guild.remove(&guild);
        }
    }

    /// Bytes reserved by every guild's live instances.
    pub fn used(&self) -> usize {
        self.usage.lock().unwrap_or_else(|e| e.into_inner()).total
    }

    /// Bytes reserved by `guild`'s live instances.
    pub fn used_by(&self, guild: u64) -> usize {
        self.usage.lock().unwrap_or_else(|e| e.into_inner()).by_guild.get(&guild).copied().unwrap_or(0)
    }
}

/// A store's limiter: its own limits first, then the host's and its guild's budget. What
/// it reserved goes back when the store (and so this) is dropped.
pub(crate) struct BudgetedLimits {
    limits: StoreLimits,
    budget: Arc<MemoryBudget>,
    guild: u64,
    reserved: usize,
    /// The last growth reserved, given back if the growth then fails.
    last_growth: usize,
}

impl BudgetedLimits {
    pub(crate) fn new(limits: StoreLimits, budget: Arc<MemoryBudget>, guild: u64) -> BudgetedLimits {
        BudgetedLimits { limits, budget, guild, reserved: 0, last_growth: 0 }
    }
}

impl Drop for BudgetedLimits {
    fn drop(&mut self) {
        self.budget.release(self.guild, self.reserved);
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
        self.last_growth = growth;
        Ok(true)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        let growth = std::mem::take(&mut self.last_growth);
        self.budget.release(self.guild, growth);
        self.reserved -= growth;
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
        let budget = MemoryBudget::new(10 << 20, 6 << 20);
        budget.reserve(1, 4 << 20).unwrap();
        assert_eq!(budget.reserve(1, 3 << 20), Err(OverBudget::Guild { limit_mib: 6 }));
        budget.reserve(2, 6 << 20).unwrap();
        assert_eq!(budget.reserve(3, 1 << 20), Err(OverBudget::Host { limit_mib: 10 }));
        assert_eq!((budget.used(), budget.used_by(1), budget.used_by(2)), (10 << 20, 4 << 20, 6 << 20));
        budget.release(2, 6 << 20);
        budget.reserve(3, 1 << 20).unwrap();
        assert_eq!((budget.used(), budget.used_by(2), budget.used_by(3)), (5 << 20, 0, 1 << 20));
    }
}
