//! Fault injection: armed at start (`--fault`, config `faults`) or at run time
//! (`/_emulator/faults`), matched by action after a call passed the gateway checks.
//!
//! A fault can answer with an error code (every time, or for a seeded random `rate` of the
//! matching calls), delay the call before it runs (`latencyMs`), or run the call and then hold
//! its answer (`hangAfterCommit`, for `hangMs` or until the server stops) so that a client
//! timeout leaves the outcome unknown. The protocol layer carries the delays out.

use super::error::{self, ApiError};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde::{Deserialize, Serialize};

/// An injected behaviour for calls of `action` (or `*` for all).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Fault {
    /// An action name (KMS or STS), or `*` for every action.
    pub action: String,
    /// The error code to answer with, for example `Throttling`; empty for no error.
    #[serde(default)]
    pub code: String,
    /// HTTP status; defaults by code (429 `Rejected.Throttling`, 500 `InternalFailure`,
    /// 503 `*Unavailable*`, else 400).
    #[serde(default)]
    pub status: Option<u16>,
    /// Message; defaults to the documented one for known codes.
    #[serde(default)]
    pub message: Option<String>,
    /// How many calls the fault hits; `None` until the faults are cleared.
    #[serde(default)]
    pub times: Option<u32>,
    /// Share of matching calls hit, in `(0, 1]`; `None` is every call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    /// Delay before the call runs (and before the error, if any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// Run the call, commit its effect, then hold the answer.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hang_after_commit: bool,
    /// How long to hold the answer; `None` holds it until the server stops.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hang_ms: Option<u64>,
}

impl Fault {
    /// An error fault for `action` with the default status and message, unlimited.
    pub fn error(action: &str, code: &str) -> Self {
        Self { action: action.to_owned(), code: code.to_owned(), ..Self::default() }
    }

    /// Checks that the fault makes sense.
    pub fn validate(&self) -> Result<(), String> {
        if self.action.is_empty() {
            return Err("action must not be empty (use \"*\" for every action)".to_owned());
        }
        if self.code.is_empty() && self.latency_ms.is_none() && !self.hang_after_commit {
            return Err("a fault needs a code, latencyMs or hangAfterCommit".to_owned());
        }
        if self.hang_after_commit && !self.code.is_empty() {
            return Err("hangAfterCommit answers the real result; drop code".to_owned());
        }
        if self.status.is_some_and(|s| !(400..=599).contains(&s)) {
            return Err("status must be between 400 and 599".to_owned());
        }
        if self.times == Some(0) {
            return Err("times must be at least 1 (or null for unlimited)".to_owned());
        }
        if self.rate.is_some_and(|r| !(r > 0.0 && r <= 1.0)) {
            return Err("rate must be greater than 0 and at most 1".to_owned());
        }
        Ok(())
    }

    fn matches(&self, action: &str) -> bool {
        self.action == "*" || self.action == action
    }

    fn hit(&self) -> FaultHit {
        let error = (!self.code.is_empty()).then(|| {
            let status = self.status.unwrap_or_else(|| error::default_fault_status(&self.code));
            let message = self.message.clone();
            let message =
                message.unwrap_or_else(|| error::default_fault_message(&self.code).to_owned());
            ApiError::new(self.code.clone(), status, message)
        });
        FaultHit {
            error,
            latency_ms: self.latency_ms.unwrap_or(0),
            hang_after_commit: self.hang_after_commit,
            hang_ms: self.hang_ms,
        }
    }
}

/// What a fault does to one call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultHit {
    /// Answer with this instead of running the call.
    pub error: Option<ApiError>,
    /// Wait this long before running (or failing) the call.
    pub latency_ms: u64,
    /// Run the call, then hold the answer.
    pub hang_after_commit: bool,
    /// How long to hold it; `None` until the server stops.
    pub hang_ms: Option<u64>,
}

impl FaultHit {
    /// The label the call log shows: `error`, `hangAfterCommit` or `latency`.
    pub fn kind(&self) -> &'static str {
        if self.error.is_some() {
            "error"
        } else if self.hang_after_commit {
            "hangAfterCommit"
        } else {
            "latency"
        }
    }
}

/// The armed faults, first hit wins, and the random numbers behind their rates.
#[derive(Debug)]
pub struct FaultSet {
    faults: Vec<Fault>,
    rng: StdRng,
}

impl Default for FaultSet {
    fn default() -> Self {
        Self::new(None)
    }
}

impl FaultSet {
    /// No faults; rates draw from `seed`, or from the OS when `None`.
    pub fn new(seed: Option<u64>) -> Self {
        let rng = match seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        Self { faults: Vec::new(), rng }
    }

    /// Arms a fault after checking it makes sense.
    pub fn add(&mut self, fault: Fault) -> Result<(), String> {
        fault.validate()?;
        self.faults.push(fault);
        Ok(())
    }

    /// The armed faults.
    pub fn list(&self) -> &[Fault] {
        &self.faults
    }

    /// Disarms every fault.
    pub fn clear(&mut self) {
        self.faults.clear();
    }

    /// The first fault that matches `action` and wins its roll; uses up one of its shots.
    pub fn take(&mut self, action: &str) -> Option<FaultHit> {
        let mut index = None;
        for (i, fault) in self.faults.iter().enumerate() {
            if !fault.matches(action) {
                continue;
            }
            if fault.rate.is_none_or(|rate| self.rng.random::<f64>() < rate) {
                index = Some(i);
                break;
            }
        }
        let index = index?;
        let hit = self.faults[index].hit();
        match &mut self.faults[index].times {
            Some(1) => {
                self.faults.remove(index);
            }
            Some(n) => *n -= 1,
            None => {}
        }
        Some(hit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(action: &str, times: Option<u32>) -> Fault {
        Fault { times, ..Fault::error(action, "Throttling") }
    }

    #[test]
    fn faults_count_down_and_match_by_action() {
        let mut set = FaultSet::default();
        set.add(fault("CreateAlias", Some(2))).unwrap();
        assert!(set.take("DeleteAlias").is_none(), "other actions pass");
        let first = set.take("CreateAlias").and_then(|h| h.error).expect("armed");
        assert_eq!((first.code.as_str(), first.status), ("Throttling", 400));
        assert!(set.take("CreateAlias").is_some(), "second shot");
        assert!(set.take("CreateAlias").is_none(), "used up");

        set.add(fault("*", None)).unwrap();
        for action in ["ListAliases", "CreateKey", "AssumeRole"] {
            assert!(set.take(action).is_some(), "unlimited wildcard hits {action}");
        }
        set.clear();
        assert!(set.take("ListAliases").is_none());
    }

    #[test]
    fn fault_defaults() {
        let mut set = FaultSet::default();
        let cases = [
            ("Rejected.Throttling", 429, "QPS Limit Exceeded"),
            ("ServiceUnavailableTemporary", 503, "Service Unavailable Temporary."),
            ("InternalFailure", 500, "Internal Failure."),
        ];
        for (code, status, message) in cases {
            set.add(Fault { code: code.into(), ..fault("*", Some(1)) }).unwrap();
            let got = set.take("X").and_then(|h| h.error).expect("armed");
            assert_eq!((got.status, got.message.as_str()), (status, message), "{code}");
        }
    }

    #[test]
    fn validation_rejects_nonsense() {
        let hang = Fault { hang_after_commit: true, ..Fault::default() };
        let cases = [
            (fault("*", Some(0)), "zero times"),
            (Fault { status: Some(200), ..fault("*", None) }, "2xx status"),
            (Fault { code: String::new(), ..fault("*", None) }, "no effect at all"),
            (Fault { action: String::new(), ..fault("*", None) }, "no action"),
            (Fault { rate: Some(0.0), ..fault("*", None) }, "rate 0"),
            (Fault { rate: Some(1.5), ..fault("*", None) }, "rate above 1"),
            (Fault { action: "*".into(), ..fault("*", None).clone() }, "valid control"),
            (Fault { action: "X".into(), code: "Throttling".into(), ..hang }, "hang with code"),
        ];
        for (fault, reason) in cases {
            let valid = reason == "valid control";
            assert_eq!(fault.validate().is_ok(), valid, "{reason}");
        }
    }

    #[test]
    fn rates_are_reproducible_with_a_seed() {
        let run = |seed| {
            let mut set = FaultSet::new(Some(seed));
            set.add(Fault { rate: Some(0.3), ..fault("CreateAlias", None) }).unwrap();
            (0..1000).map(|_| set.take("CreateAlias").is_some()).collect::<Vec<_>>()
        };
        let first = run(7);
        assert_eq!(first, run(7), "same seed, same sequence");
        let hits = first.iter().filter(|h| **h).count();
        assert!((200..400).contains(&hits), "about 30 % of 1000, got {hits}");
    }

    #[test]
    fn hits_describe_their_kind() {
        let latency = Fault { action: "*".into(), latency_ms: Some(5), ..Fault::default() };
        let hang = Fault { action: "*".into(), hang_after_commit: true, ..Fault::default() };
        let cases = [(fault("*", None), "error"), (latency, "latency"), (hang, "hangAfterCommit")];
        for (fault, want) in cases {
            assert_eq!(fault.hit().kind(), want);
        }
    }
}
