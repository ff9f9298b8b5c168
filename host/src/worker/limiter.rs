//! The store's resource limiter: wasmtime's `StoreLimits`, plus a record of the first limit
//! the guest ran into, so the host can say which one (`limit_hit` events) rather than
//! leave a user guessing why `memory.grow` failed or the guest trapped.
//!
//! A denied `memory.grow` is not a trap (the guest sees -1 and usually aborts, or copes),
//! so the only place that knows a limit was hit is here, at the moment of denial. Fuel and
//! stack exhaustion are traps: [`Limiter::note_trap`] recognises them.

use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder, Trap};

use crate::grants::limits::Limits;
use crate::protocol::{GuestLimit, LimitHit};

/// A store's limiter: enforces [`Limits`] and remembers the first one hit.
pub(crate) struct Limiter {
    enforced: StoreLimits,
    limits: Limits,
    hit: Option<LimitHit>,
}

impl Limiter {
    pub(crate) fn new(limits: &Limits) -> Limiter {
        let mut builder = StoreLimitsBuilder::new();
        if let Some(bytes) = limits.max_memory_size {
            builder = builder.memory_size(bytes);
        }
        if let Some(count) = limits.max_instances {
            builder = builder.instances(count);
        }
        if let Some(count) = limits.max_tables {
            builder = builder.tables(count);
        }
        let enforced = builder.table_elements(table_elements(limits)).build();
        Limiter {
            enforced,
            limits: *limits,
            hit: None,
        }
    }

    /// The first limit hit since the last call, if any.
    pub(crate) fn take_hit(&mut self) -> Option<LimitHit> {
        self.hit.take()
    }

    /// Records the limit behind `error` if it is the trap of one: fuel or the wasm stack.
    pub(crate) fn note_trap(&mut self, error: &wasmtime::Error) {
        let hit = match error.downcast_ref::<Trap>() {
            Some(Trap::OutOfFuel) => LimitHit {
                limit: GuestLimit::Fuel,
                detail: match self.limits.fuel {
                    Some(fuel) => format!("the guest used all of its {fuel} units of fuel"),
                    None => "the guest used all of its fuel".to_string(),
                },
            },
            Some(Trap::StackOverflow) => LimitHit {
                limit: GuestLimit::MaxWasmStack,
                detail: match self.limits.max_wasm_stack {
                    Some(bytes) => {
                        format!("the guest's calls went deeper than {bytes} bytes of stack")
                    }
                    None => "the guest's calls went deeper than wasmtime's default stack (512 KiB)"
                        .to_string(),
                },
            },
            _ => return,
        };
        self.record(hit);
    }

    fn record(&mut self, hit: LimitHit) {
        if self.hit.is_none() {
            self.hit = Some(hit);
        }
    }
}

/// Elements a table may grow to: the limit given, or wasmp's default.
fn table_elements(limits: &Limits) -> usize {
    limits
        .max_table_elements
        .unwrap_or(Limits::DEFAULT_MAX_TABLE_ELEMENTS)
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.enforced.memory_growing(current, desired, maximum)?;
        // Only wasmp's limit is reported: a memory's own declared maximum is the guest's
        // business.
        if let Some(limit) = self.limits.max_memory_size.filter(|&limit| desired > limit) {
            self.record(LimitHit {
                limit: GuestLimit::MaxMemorySize,
                detail: format!(
                    "a linear memory of {current} bytes asked to grow to {desired}; \
                     the limit is {limit}"
                ),
            });
        }
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.enforced.table_growing(current, desired, maximum)?;
        let limit = table_elements(&self.limits);
        if desired > limit {
            self.record(LimitHit {
                limit: GuestLimit::MaxTableElements,
                detail: format!(
                    "a table of {current} elements asked to grow to {desired}; the limit is {limit}"
                ),
            });
        }
        Ok(allowed)
    }

    fn instances(&self) -> usize {
        self.enforced.instances()
    }

    fn tables(&self) -> usize {
        self.enforced.tables()
    }

    fn memories(&self) -> usize {
        self.enforced.memories()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_denied_memory_grow_is_recorded_once() {
        let mut limiter = Limiter::new(&Limits {
            max_memory_size: Some(1 << 20),
            ..Default::default()
        });
        assert!(limiter.memory_growing(0, 1 << 19, None).unwrap());
        assert!(limiter.take_hit().is_none());
        assert!(!limiter.memory_growing(1 << 19, 2 << 20, None).unwrap());
        assert!(!limiter.memory_growing(1 << 19, 3 << 20, None).unwrap());
        let hit = limiter.take_hit().expect("recorded");
        assert_eq!(hit.limit, GuestLimit::MaxMemorySize);
        assert!(hit.detail.contains("2097152"), "{}", hit.detail);
        assert!(limiter.take_hit().is_none());
    }

    #[test]
    fn a_memorys_own_maximum_is_not_a_limit_hit() {
        let mut limiter = Limiter::new(&Limits::default());
        assert!(!limiter.memory_growing(0, 2 << 20, Some(1 << 20)).unwrap());
        assert!(limiter.take_hit().is_none());
    }

    #[test]
    fn table_elements_default_to_wasmps_limit() {
        let mut limiter = Limiter::new(&Limits::default());
        let over = Limits::DEFAULT_MAX_TABLE_ELEMENTS + 1;
        assert!(!limiter.table_growing(0, over, None).unwrap());
        assert_eq!(
            limiter.take_hit().map(|hit| hit.limit),
            Some(GuestLimit::MaxTableElements)
        );
    }

    #[test]
    fn fuel_and_stack_traps_are_limits_other_traps_are_not() {
        let mut limiter = Limiter::new(&Limits {
            fuel: Some(1000),
            ..Default::default()
        });
        limiter.note_trap(&wasmtime::Error::from(Trap::UnreachableCodeReached));
        assert!(limiter.take_hit().is_none());
        limiter.note_trap(&wasmtime::Error::from(Trap::OutOfFuel));
        let hit = limiter.take_hit().expect("fuel");
        assert_eq!(hit.limit, GuestLimit::Fuel);
        assert!(hit.detail.contains("1000"));
        limiter.note_trap(&wasmtime::Error::from(Trap::StackOverflow));
        assert_eq!(
            limiter.take_hit().map(|hit| hit.limit),
            Some(GuestLimit::MaxWasmStack)
        );
    }
}
