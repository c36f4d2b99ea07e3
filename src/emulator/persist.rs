//! The `--state-file`: keys and aliases of every account and region as JSON, loaded at start
//! and rewritten atomically (temporary file beside it, then rename) after each change.
//!
//! AccessKeys, issued STS credentials, the call log and faults are not persisted.

use super::state::KmsState;
use serde::{Deserialize, Serialize};
use std::io;
use std::path::Path;

/// Version of the file format.
const FORMAT_VERSION: u32 = 1;

#[derive(Deserialize, Serialize)]
struct StateFile {
    version: u32,
    #[serde(flatten)]
    kms: KmsState,
}

/// The state in `path`; `None` when the file does not exist.
pub fn load(path: &Path) -> io::Result<Option<KmsState>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let file: StateFile = serde_json::from_str(&text).map_err(io::Error::other)?;
    if file.version != FORMAT_VERSION {
        let message = format!("state file version {} is not {FORMAT_VERSION}", file.version);
        return Err(io::Error::new(io::ErrorKind::InvalidData, message));
    }
    Ok(Some(file.kms))
}

/// Writes `kms` to a temporary file beside `path`, then renames it into place, so a reader
/// (or a crash) never sees a partial file.
pub fn save(path: &Path, kms: &KmsState) -> io::Result<()> {
    let file = StateFile { version: FORMAT_VERSION, kms: kms.clone() };
    let text = serde_json::to_vec_pretty(&file).map_err(io::Error::other)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&temp, text)?;
    std::fs::rename(&temp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::state::Scope;
    use crate::kms::KeyState;

    #[test]
    fn save_then_load_round_trips_and_missing_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        assert!(load(&path).unwrap().is_none(), "no file yet");

        let scope = Scope { account: "1", region: "cn-shanghai" };
        let mut kms = KmsState::default();
        kms.insert_key(scope, Some("key-a"), KeyState::Disabled, chrono::Utc::now()).unwrap();
        save(&path, &kms).unwrap();
        let entries: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(entries.len(), 1, "no temporary file left behind");

        let back = load(&path).unwrap().expect("file exists");
        let key = &back.region(scope).unwrap().keys()["key-a"];
        assert_eq!(key.key_state, KeyState::Disabled);
    }

    #[test]
    fn unreadable_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [("garbage", "not json"), ("future", r#"{"version": 9, "accounts": {}}"#)];
        for (name, text) in cases {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            assert!(load(&path).is_err(), "{name}");
        }
    }
}
