//! What to do with an alias, decided from what KMS shows and what the object owns.
//!
//! Pure functions only: the controller observes, asks [`plan`], and carries the plan out.
//! The ownership rule lives here:
//! 1. an alias this object recorded as its own may be re-pointed, recreated and deleted;
//! 2. an alias not recorded as owned that already points at the desired key is taken over;
//! 3. an alias not recorded as owned that points at another key is a conflict: no writes.

/// The step that brings KMS in line with the spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// The alias does not exist: create it.
    Create,
    /// The alias points at the desired key. `adopt` is true when ownership is new.
    InSync { adopt: bool },
    /// The alias is ours and points at `from`: re-point it.
    Repoint { from: String },
    /// The alias is not ours and points at `foreign_key`: leave it alone.
    Conflict { foreign_key: String },
}

/// Decides the plan. `current` is the bare key id the alias points at, `None` if it is absent;
/// `desired` is the bare key id of the spec; `owned` whether the object recorded ownership.
pub fn plan(current: Option<&str>, desired: &str, owned: bool) -> Plan {
    match current {
        None => Plan::Create,
        Some(key) if key == desired => Plan::InSync { adopt: !owned },
        Some(key) if owned => Plan::Repoint { from: key.to_owned() },
        Some(key) => Plan::Conflict { foreign_key: key.to_owned() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans() {
        let cases = [
            (None, false, Plan::Create, "absent, never owned: create"),
            (None, true, Plan::Create, "owned but deleted out of band: recreate"),
            (Some("k1"), false, Plan::InSync { adopt: true }, "same key, not owned: adopt"),
            (Some("k1"), true, Plan::InSync { adopt: false }, "same key, owned: nothing"),
            (Some("k2"), true, Plan::Repoint { from: "k2".into() }, "owned elsewhere: re-point"),
            (
                Some("k2"),
                false,
                Plan::Conflict { foreign_key: "k2".into() },
                "foreign alias on another key: conflict",
            ),
        ];
        for (current, owned, want, reason) in cases {
            assert_eq!(plan(current, "k1", owned), want, "{reason}");
        }
    }
}
