//! Request budgets: one token bucket for reads and one for writes per account and region,
//! shared by every object that uses them.
//!
//! Buckets start at the documented quotas (`kms-api.md` 1.3) and adapt: a throttled answer
//! halves the rate and pauses the bucket briefly; each success wins a little rate back. So an
//! account whose real quota is lower than documented (or shared with other tools) settles
//! just under it instead of being hammered.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::time::Instant;

/// Which quota a call counts against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallClass {
    Read,
    Write,
}

impl CallClass {
    /// The class of a KMS action; anything not a known read counts as a write.
    pub fn of(action: &str) -> Self {
        match action {
            "DescribeKey" | "ListKeys" | "ListAliases" | "ListAliasesByKeyId" => Self::Read,
            _ => Self::Write,
        }
    }
}

/// Configured ceilings in requests per second.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Quotas {
    pub read_qps: f64,
    pub write_qps: f64,
}

impl Default for Quotas {
    /// The documented shared-gateway quotas: 50 reads and 30 writes per second.
    fn default() -> Self {
        Self { read_qps: 50.0, write_qps: 30.0 }
    }
}

/// The slowest an adapted bucket goes, in requests per second.
const MIN_RATE: f64 = 0.2;
/// Pause after a throttled answer, before the halved rate applies.
const THROTTLE_PAUSE: Duration = Duration::from_millis(1000);

#[derive(Debug)]
struct Bucket {
    ceiling: f64,
    rate: f64,
    tokens: f64,
    updated: Instant,
    paused_until: Instant,
}

impl Bucket {
    fn new(ceiling: f64, now: Instant) -> Self {
        let ceiling = ceiling.max(MIN_RATE);
        Self { ceiling, rate: ceiling, tokens: 1.0, updated: now, paused_until: now }
    }

    fn burst(&self) -> f64 {
        self.rate.clamp(1.0, 10.0)
    }

    fn refill(&mut self, now: Instant) {
        let from = self.updated.max(self.paused_until);
        if now > from {
            let gained = (now - from).as_secs_f64() * self.rate;
            self.tokens = (self.tokens + gained).min(self.burst());
        }
        self.updated = now;
    }

    /// Reserves the next token and returns how long to wait for it, unless that wait would
    /// exceed `max_wait`: then nothing is reserved and the wait is returned as an error.
    fn reserve(&mut self, now: Instant, max_wait: Duration) -> Result<Duration, Duration> {
        // Tokens may go negative: each one below zero is a caller already waiting its turn.
        let wait = self.wait(now);
        if wait > max_wait {
            return Err(wait);
        }
        self.tokens -= 1.0;
        Ok(wait)
    }

    /// How long a call reserved now would wait; reserves nothing.
    fn wait(&mut self, now: Instant) -> Duration {
        self.refill(now);
        let pause = self.paused_until.saturating_duration_since(now);
        pause + Duration::from_secs_f64((1.0 - self.tokens).max(0.0) / self.rate)
    }

    fn throttled(&mut self, now: Instant) {
        // Answers to calls sent before the last cut arrive in a burst: one cut per pause.
        if now < self.paused_until {
            return;
        }
        self.rate = (self.rate / 2.0).max(MIN_RATE);
        self.tokens = self.tokens.min(0.0);
        self.paused_until = self.paused_until.max(now + THROTTLE_PAUSE);
    }

    fn succeeded(&mut self) {
        // Additive increase: 2 % of the ceiling per success, so a cut rate recovers within
        // a few dozen calls once the pressure is gone.
        self.rate = (self.rate + self.ceiling / 50.0).min(self.ceiling);
    }
}

/// Units of work (reconciles) that may run against one account and region at once, so a
/// slow or throttled account cannot hold every worker of the operator.
pub const WORK_SLOTS: usize = 4;

/// The read and write buckets of one account and region, and its work slots.
#[derive(Debug)]
pub struct Budget {
    read: Mutex<Bucket>,
    write: Mutex<Bucket>,
    slots: Arc<tokio::sync::Semaphore>,
}

impl Budget {
    /// A budget with these ceilings.
    pub fn new(quotas: Quotas) -> Self {
        let now = Instant::now();
        Self {
            read: Mutex::new(Bucket::new(quotas.read_qps, now)),
            write: Mutex::new(Bucket::new(quotas.write_qps, now)),
            slots: Arc::new(tokio::sync::Semaphore::new(WORK_SLOTS)),
        }
    }

    fn bucket(&self, class: CallClass) -> MutexGuard<'_, Bucket> {
        let bucket = match class {
            CallClass::Read => &self.read,
            CallClass::Write => &self.write,
        };
        bucket.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until a call of this class may go out, if that is within `max_wait`; otherwise
    /// returns at once with the wait it would take, so a caller never holds a worker for
    /// long on a busy account.
    pub async fn acquire_within(
        &self,
        class: CallClass,
        max_wait: Duration,
    ) -> Result<(), Duration> {
        let wait = self.bucket(class).reserve(Instant::now(), max_wait)?;
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        Ok(())
    }

    /// A work slot if one is free; held for the length of one reconcile.
    pub fn work_slot(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.slots.clone().try_acquire_owned().ok()
    }

    /// Waits as long as it takes until a call of this class may go out.
    pub async fn acquire(&self, class: CallClass) {
        let _ = self.acquire_within(class, Duration::MAX).await;
    }

    /// How long the next call would wait for its turn, the longer of reads and writes: how
    /// busy the account is.
    pub fn busy_for(&self) -> Duration {
        let now = Instant::now();
        let read = self.bucket(CallClass::Read).wait(now);
        read.max(self.bucket(CallClass::Write).wait(now))
    }

    /// Reports a throttled answer: slow down.
    pub fn throttled(&self, class: CallClass) {
        self.bucket(class).throttled(Instant::now());
    }

    /// Reports a call that was not throttled.
    pub fn succeeded(&self, class: CallClass) {
        self.bucket(class).succeeded();
    }

    /// The current rate of a class, in requests per second.
    pub fn rate(&self, class: CallClass) -> f64 {
        self.bucket(class).rate
    }
}

/// Budgets by account and region, so clients for the same account share one.
#[derive(Debug, Default)]
pub struct Budgets {
    by_scope: Mutex<HashMap<String, Arc<Budget>>>,
}

impl Budgets {
    /// The budget of `scope` (an account and region key), created with `quotas` on first use.
    pub fn get(&self, scope: &str, quotas: Quotas) -> Arc<Budget> {
        let mut map = self.by_scope.lock().unwrap_or_else(PoisonError::into_inner);
        map.entry(scope.to_owned()).or_insert_with(|| Arc::new(Budget::new(quotas))).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn rate_is_enforced() {
        let budget = Budget::new(Quotas { read_qps: 5.0, write_qps: 1.0 });
        let start = Instant::now();
        for _ in 0..11 {
            budget.acquire(CallClass::Read).await;
        }
        // One token in hand, then five per second.
        let took = start.elapsed().as_secs_f64();
        assert!((1.9..=2.1).contains(&took), "11 reads at 5/s took {took}");
    }

    #[tokio::test(start_paused = true)]
    async fn reads_and_writes_are_separate() {
        let budget = Budget::new(Quotas { read_qps: 1.0, write_qps: 1.0 });
        let start = Instant::now();
        budget.acquire(CallClass::Read).await;
        budget.acquire(CallClass::Write).await;
        assert!(start.elapsed() < Duration::from_millis(10), "a write does not wait on reads");
    }

    #[tokio::test(start_paused = true)]
    async fn throttling_halves_and_pauses_then_recovers() {
        let budget = Budget::new(Quotas { read_qps: 8.0, write_qps: 8.0 });
        budget.throttled(CallClass::Write);
        budget.throttled(CallClass::Write);
        assert_eq!(budget.rate(CallClass::Write), 4.0, "a burst of throttled answers cuts once");
        let start = Instant::now();
        budget.acquire(CallClass::Write).await;
        assert!(start.elapsed() >= THROTTLE_PAUSE, "paused after throttling");
        for _ in 0..100 {
            budget.succeeded(CallClass::Write);
        }
        assert_eq!(budget.rate(CallClass::Write), 8.0, "recovers up to the ceiling, not past");
        for _ in 0..20 {
            budget.throttled(CallClass::Write);
            tokio::time::advance(THROTTLE_PAUSE).await;
        }
        assert_eq!(budget.rate(CallClass::Write), MIN_RATE, "never stops entirely");
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_wait_is_refused_instead_of_taken() {
        let budget = Budget::new(Quotas { read_qps: 1.0, write_qps: 1.0 });
        budget.acquire(CallClass::Write).await;
        budget.acquire(CallClass::Write).await;
        // Two reserved at 1/s: the next would wait about a second more.
        let refused = budget.acquire_within(CallClass::Write, Duration::from_millis(500)).await;
        let wait = refused.expect_err("a wait over the limit is refused");
        assert!(wait > Duration::from_millis(500), "{wait:?}");
        let start = Instant::now();
        budget.acquire_within(CallClass::Write, Duration::from_secs(5)).await.expect("within");
        assert!(start.elapsed() >= Duration::from_millis(900), "waited its turn");
    }

    #[tokio::test(start_paused = true)]
    async fn busy_for_tells_how_long_the_next_call_would_wait() {
        let budget = Budget::new(Quotas { read_qps: 2.0, write_qps: 2.0 });
        assert_eq!(budget.busy_for(), Duration::ZERO, "a token in hand");
        budget.acquire(CallClass::Read).await;
        let next = budget.busy_for();
        assert!(
            next > Duration::from_millis(400) && next <= Duration::from_millis(500),
            "{next:?}"
        );
        budget.throttled(CallClass::Write);
        // Paused for a second, then one token at the halved rate of 1/s.
        let busy = budget.busy_for();
        assert!(busy >= Duration::from_secs(1), "{busy:?}");
    }

    #[test]
    fn work_slots_are_limited_and_returned() {
        let budget = Budget::new(Quotas::default());
        let held: Vec<_> = (0..WORK_SLOTS).map(|_| budget.work_slot().expect("free")).collect();
        assert!(budget.work_slot().is_none(), "all slots taken");
        drop(held);
        assert!(budget.work_slot().is_some(), "slots come back");
    }

    #[test]
    fn classes() {
        assert_eq!(CallClass::of("DescribeKey"), CallClass::Read);
        assert_eq!(CallClass::of("ListAliases"), CallClass::Read);
        assert_eq!(CallClass::of("CreateAlias"), CallClass::Write);
        assert_eq!(CallClass::of("DeleteAlias"), CallClass::Write);
    }

    #[test]
    fn same_scope_shares_one_budget() {
        let budgets = Budgets::default();
        let a = budgets.get("acct/cn-hangzhou", Quotas::default());
        let b = budgets.get("acct/cn-hangzhou", Quotas::default());
        let c = budgets.get("acct/cn-shanghai", Quotas::default());
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
    }
}
