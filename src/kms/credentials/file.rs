//! Credentials from disk: the shared credentials file, or a mounted Kubernetes Secret.
//!
//! The path may name an INI file (`~/.alibabacloud/credentials` layout) or a directory holding
//! one file per key, `ALIBABA_CLOUD_ACCESS_KEY_ID`, `ALIBABA_CLOUD_ACCESS_KEY_SECRET` and
//! optionally `ALIBABA_CLOUD_SECURITY_TOKEN`, which is what a Secret volume looks like. Either
//! is read again at most once per second, so a rotated key is used without a restart.
//!
//! NOTE: the kubelet updates a Secret volume by pointing its `..data` symlink at a new
//! directory. Files are read through the resolved `..data` target so that one read never mixes
//! an old id with a new secret.

use super::{
    Credentials, CredentialsError, CredentialsProvider, ENV_ACCESS_KEY_ID, ENV_ACCESS_KEY_SECRET,
    ENV_SECURITY_TOKEN, Vars,
};
use futures::future::BoxFuture;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Path of the credentials file or Secret directory; default `~/.alibabacloud/credentials`.
pub const ENV_CREDENTIALS_FILE: &str = "ALIBABA_CLOUD_CREDENTIALS_FILE";
/// Profile (INI section) to read; default [`DEFAULT_PROFILE`].
pub const ENV_PROFILE: &str = "ALIBABA_CLOUD_PROFILE";
/// The profile read when none is named.
pub const DEFAULT_PROFILE: &str = "default";

const RECHECK_INTERVAL: Duration = Duration::from_secs(1);

/// AccessKey credentials from a credentials file or a Secret directory, re-read when due.
#[derive(Debug)]
pub struct FileProvider {
    path: PathBuf,
    profile: String,
    recheck: Duration,
    last: Mutex<Option<(Instant, Credentials)>>,
}

impl FileProvider {
    /// Reads `path`, a file or a directory (decided at every read), profile `default`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            profile: DEFAULT_PROFILE.to_owned(),
            recheck: RECHECK_INTERVAL,
            last: Mutex::new(None),
        }
    }

    /// Path from `ALIBABA_CLOUD_CREDENTIALS_FILE`, else `$HOME/.alibabacloud/credentials`;
    /// profile from `ALIBABA_CLOUD_PROFILE`, else `default`.
    pub fn from_env() -> Result<Self, CredentialsError> {
        Self::from_vars(&Vars::process())
    }

    pub(crate) fn from_vars(vars: &Vars) -> Result<Self, CredentialsError> {
        let path = match vars.get(ENV_CREDENTIALS_FILE) {
            Some(path) => PathBuf::from(path),
            None => Path::new(&vars.require("HOME")?).join(".alibabacloud").join("credentials"),
        };
        let provider = Self::new(path);
        Ok(match vars.get(ENV_PROFILE) {
            Some(profile) => provider.with_profile(profile.trim()),
            None => provider,
        })
    }

    /// Reads this profile of an INI file (ignored for a directory).
    #[must_use]
    pub fn with_profile(mut self, profile: impl Into<String>) -> Self {
        self.profile = profile.into();
        self
    }

    /// How long a read stays current (default 1 s; zero reads at every call).
    #[must_use]
    pub fn with_recheck_interval(mut self, interval: Duration) -> Self {
        self.recheck = interval;
        self
    }

    /// The file or directory read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn current(&self) -> Option<Credentials> {
        let last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        last.as_ref().filter(|(at, _)| at.elapsed() < self.recheck).map(|(_, c)| c.clone())
    }

    async fn load(&self) -> Result<Credentials, CredentialsError> {
        if let Some(credentials) = self.current() {
            return Ok(credentials);
        }
        let credentials = read(&self.path, &self.profile).await?;
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.as_ref().is_some_and(|(_, old)| *old != credentials) {
            tracing::info!(path = %self.path.display(), "credentials changed on disk; using them");
        }
        *last = Some((Instant::now(), credentials.clone()));
        Ok(credentials)
    }
}

impl CredentialsProvider for FileProvider {
    fn name(&self) -> &str {
        "credentials file"
    }

    fn credentials(&self) -> BoxFuture<'_, Result<Credentials, CredentialsError>> {
        Box::pin(self.load())
    }
}

fn read_error(path: &Path, source: std::io::Error) -> CredentialsError {
    if source.kind() == ErrorKind::NotFound {
        CredentialsError::NotFound(path.to_owned())
    } else {
        CredentialsError::ReadFile { path: path.to_owned(), source }
    }
}

async fn read(path: &Path, profile: &str) -> Result<Credentials, CredentialsError> {
    let meta = tokio::fs::metadata(path).await.map_err(|e| read_error(path, e))?;
    if !meta.is_dir() {
        let text = tokio::fs::read_to_string(path).await.map_err(|e| read_error(path, e))?;
        let invalid = |reason| CredentialsError::InvalidFile { path: path.to_owned(), reason };
        return parse_ini(&text, profile).map_err(invalid);
    }
    // The old `..data` target is deleted right after a swap; one retry lands on the new one.
    match read_dir_snapshot(path).await {
        Err(CredentialsError::NotFound(_)) => read_dir_snapshot(path).await,
        other => other,
    }
}

async fn read_dir_snapshot(dir: &Path) -> Result<Credentials, CredentialsError> {
    let data = dir.join("..data");
    let base = match tokio::fs::canonicalize(&data).await {
        Ok(resolved) => resolved,
        Err(_) => dir.to_owned(),
    };
    let file = |name: &str| {
        let path = base.join(name);
        async move {
            match tokio::fs::read_to_string(&path).await {
                Ok(text) => Ok(Some(text.trim().to_owned()).filter(|t| !t.is_empty())),
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
                Err(e) => Err(read_error(&path, e)),
            }
        }
    };
    let id = file(ENV_ACCESS_KEY_ID).await?;
    let secret = file(ENV_ACCESS_KEY_SECRET).await?;
    let token = file(ENV_SECURITY_TOKEN).await?;
    let (id, secret) = match (id, secret) {
        (Some(id), Some(secret)) => (id, secret),
        (id, _) => {
            if !tokio::fs::try_exists(&base).await.unwrap_or(false) {
                // Swapped away while reading; the caller tries once more.
                return Err(CredentialsError::NotFound(base));
            }
            let name = if id.is_none() { ENV_ACCESS_KEY_ID } else { ENV_ACCESS_KEY_SECRET };
            let reason = format!("no non-empty file {name}");
            return Err(CredentialsError::InvalidFile { path: dir.to_owned(), reason });
        }
    };
    let credentials = Credentials::new(id, secret);
    Ok(match token {
        Some(token) => credentials.with_token(token),
        None => credentials,
    })
}

/// Reads one profile of a credentials file. Reasons name lines and keys, never values.
fn parse_ini(text: &str, profile: &str) -> Result<Credentials, String> {
    let mut section: Option<&str> = None;
    let mut found = false;
    let (mut kind, mut id, mut secret, mut token) = (None, None, None, None);
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = Some(name.trim());
            found |= section == Some(profile);
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("line {} is neither `key = value` nor a [section]", number + 1));
        };
        if section != Some(profile) {
            continue;
        }
        let value = unquote(value.trim()).to_owned();
        match key.trim() {
            "type" => kind = Some(value),
            "access_key_id" => id = Some(value),
            "access_key_secret" => secret = Some(value),
            "security_token" => token = Some(value),
            _ => {}
        }
    }
    if !found {
        return Err(format!("no profile [{profile}]"));
    }
    match kind.as_deref() {
        None | Some("access_key" | "sts") => {}
        Some(other) => {
            let shown = if other.len() <= 32
                && other.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                other
            } else {
                "?"
            };
            return Err(format!(
                "profile [{profile}] has type {shown}; only access_key is supported"
            ));
        }
    }
    let non_empty = |v: Option<String>| v.filter(|v| !v.is_empty());
    let key = |name| format!("profile [{profile}] has no {name}");
    let id = non_empty(id).ok_or_else(|| key("access_key_id"))?;
    let secret = non_empty(secret).ok_or_else(|| key("access_key_secret"))?;
    let credentials = Credentials::new(id, secret);
    Ok(match non_empty(token) {
        Some(token) => credentials.with_token(token),
        None => credentials,
    })
}

fn unquote(value: &str) -> &str {
    for quote in ['"', '\''] {
        if let Some(inner) = value.strip_prefix(quote).and_then(|v| v.strip_suffix(quote)) {
            return inner;
        }
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "\
# comment
[default]
type = access_key
access_key_id = id-1
access_key_secret = \"s3cret-1\"

[sts]
type = sts
access_key_id = STS.id
access_key_secret = s3cret-2
security_token = t0ken-2
[other]
type = ram_role_arn
access_key_id = x
access_key_secret = y
[half]
access_key_id = x
";

    #[test]
    fn ini_profiles() {
        let ok = [
            ("default", Credentials::new("id-1", "s3cret-1"), "quoted secret"),
            ("sts", Credentials::new("STS.id", "s3cret-2").with_token("t0ken-2"), "sts type"),
        ];
        for (profile, want, reason) in ok {
            assert_eq!(parse_ini(FILE, profile), Ok(want), "{reason}");
        }
        let bad = [
            ("missing", "no profile [missing]", "unknown profile"),
            ("other", "has type ram_role_arn", "unsupported type"),
            ("half", "has no access_key_secret", "incomplete"),
        ];
        for (profile, want, reason) in bad {
            let err = parse_ini(FILE, profile).expect_err(reason);
            assert!(err.contains(want), "{reason}: {err}");
            assert!(!err.contains("s3cret"), "{reason}: {err}");
        }
        let err = parse_ini("[default]\ns3cret-line\n", "default").expect_err("garbage");
        assert_eq!(err, "line 2 is neither `key = value` nor a [section]");
    }

    #[tokio::test]
    async fn ini_file_is_reread_when_it_changes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("credentials");
        std::fs::write(&path, "[default]\naccess_key_id = a\naccess_key_secret = 1\n").expect("w");
        let provider = FileProvider::new(&path);
        assert_eq!(provider.credentials().await.expect("first"), Credentials::new("a", "1"));
        std::fs::write(&path, "[default]\naccess_key_id = b\naccess_key_secret = 2\n").expect("w");
        let cached = provider.credentials().await.expect("within a second");
        assert_eq!(cached, Credentials::new("a", "1"), "not re-read within the interval");

        let provider = provider.with_recheck_interval(Duration::ZERO);
        assert_eq!(provider.credentials().await.expect("reread"), Credentials::new("b", "2"));
    }

    fn write_secret(dir: &Path, id: &str, secret: &str) {
        std::fs::create_dir_all(dir).expect("mkdir");
        std::fs::write(dir.join(ENV_ACCESS_KEY_ID), format!("{id}\n")).expect("w");
        std::fs::write(dir.join(ENV_ACCESS_KEY_SECRET), secret).expect("w");
    }

    #[tokio::test]
    async fn secret_volume_with_data_symlink_swap() {
        let mount = tempfile::tempdir().expect("tempdir");
        let root = mount.path();
        // The kubelet layout: ..data -> ..2024_1, and each key -> ..data/key.
        write_secret(&root.join("..2024_1"), "old-id", "old-secret");
        std::os::unix::fs::symlink("..2024_1", root.join("..data")).expect("link");
        for name in [ENV_ACCESS_KEY_ID, ENV_ACCESS_KEY_SECRET] {
            std::os::unix::fs::symlink(format!("..data/{name}"), root.join(name)).expect("link");
        }
        let provider = FileProvider::new(root).with_recheck_interval(Duration::ZERO);
        let got = provider.credentials().await.expect("first");
        assert_eq!(got, Credentials::new("old-id", "old-secret"));

        write_secret(&root.join("..2024_2"), "new-id", "new-secret");
        std::fs::write(root.join("..2024_2").join(ENV_SECURITY_TOKEN), "tok").expect("w");
        std::os::unix::fs::symlink("..2024_2", root.join("..data_tmp")).expect("link");
        std::fs::rename(root.join("..data_tmp"), root.join("..data")).expect("swap");
        std::fs::remove_dir_all(root.join("..2024_1")).expect("cleanup");
        let got = provider.credentials().await.expect("rotated");
        assert_eq!(got, Credentials::new("new-id", "new-secret").with_token("tok"));
    }

    #[tokio::test]
    async fn plain_directory_and_failures() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_secret(dir.path(), "id", "secret");
        let got = FileProvider::new(dir.path()).credentials().await.expect("plain dir");
        assert_eq!(got, Credentials::new("id", "secret"));

        std::fs::write(dir.path().join(ENV_ACCESS_KEY_SECRET), "\n").expect("w");
        let err = FileProvider::new(dir.path()).credentials().await.expect_err("empty secret");
        assert!(err.to_string().contains("no non-empty file ALIBABA_CLOUD_ACCESS_KEY_SECRET"));

        let missing = dir.path().join("nope");
        let err = FileProvider::new(&missing).credentials().await.expect_err("missing");
        assert_eq!(err.to_string(), format!("{} does not exist", missing.display()));
    }

    #[test]
    fn from_vars_paths_and_profile() {
        let vars = Vars::from_pairs(&[("HOME", "/home/op")]);
        let provider = FileProvider::from_vars(&vars).expect("home");
        assert_eq!(provider.path(), Path::new("/home/op/.alibabacloud/credentials"));
        assert_eq!(provider.profile, DEFAULT_PROFILE);
        let vars = Vars::from_pairs(&[(ENV_CREDENTIALS_FILE, "/etc/kms"), (ENV_PROFILE, "prod")]);
        let provider = FileProvider::from_vars(&vars).expect("explicit");
        assert_eq!((provider.path(), provider.profile.as_str()), (Path::new("/etc/kms"), "prod"));
        let err = FileProvider::from_vars(&Vars::from_pairs(&[])).expect_err("no home");
        assert_eq!(err.to_string(), "HOME not set");
    }
}
