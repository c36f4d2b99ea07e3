//! Certificates and keys from a throw-away CA, the admin kubeconfig and the probe client.

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

use super::Error;
use super::setup::write_file;

const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// PEM-encoded certificates and keys (ECDSA P-256), all issued by one throw-away CA.
pub(super) struct Pki {
    ca_cert: String,
    serving_cert: String,
    serving_key: String,
    admin_cert: String,
    admin_key: String,
    service_account_key: String,
    service_account_public: String,
}

impl Pki {
    /// A CA, a serving certificate for localhost and 127.0.0.1, an admin client certificate
    /// (`CN=admin`, `O=system:masters`) and a service-account signing key.
    pub(super) fn issue() -> Result<Self, rcgen::Error> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca_params.distinguished_name.push(DnType::CommonName, "kms-testenv-ca");
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;

        let server = ExtendedKeyUsagePurpose::ServerAuth;
        let serving = leaf(&ca, &["localhost", "127.0.0.1"], "kube-apiserver", None, server)?;
        let client = ExtendedKeyUsagePurpose::ClientAuth;
        let admin = leaf(&ca, &[], "admin", Some("system:masters"), client)?;
        let service_account = KeyPair::generate()?;
        Ok(Self {
            ca_cert: ca.pem(),
            serving_cert: serving.0,
            serving_key: serving.1,
            admin_cert: admin.0,
            admin_key: admin.1,
            service_account_key: service_account.serialize_pem(),
            service_account_public: service_account.public_key_pem(),
        })
    }

    /// Writes the files the server flags in [`super::setup`] refer to.
    pub(super) fn write(&self, dir: &Path) -> Result<(), Error> {
        let files = [
            ("ca.crt", &self.ca_cert),
            ("apiserver.crt", &self.serving_cert),
            ("apiserver.key", &self.serving_key),
            ("admin.crt", &self.admin_cert),
            ("admin.key", &self.admin_key),
            ("service-account.key", &self.service_account_key),
            ("service-account.pub", &self.service_account_public),
        ];
        files.into_iter().try_for_each(|(name, pem)| write_file(&dir.join(name), pem))
    }

    /// An HTTP client that trusts only our CA and presents the admin certificate.
    pub(super) fn probe_client(&self) -> Result<reqwest::Client, reqwest::Error> {
        let ca = reqwest::Certificate::from_pem(self.ca_cert.as_bytes())?;
        let identity = format!("{}{}", self.admin_cert, self.admin_key);
        reqwest::Client::builder()
            .tls_certs_only([ca])
            .identity(reqwest::Identity::from_pem(identity.as_bytes())?)
            .timeout(PROBE_TIMEOUT)
            .no_proxy()
            .build()
    }

    /// An admin kubeconfig for `server` with the CA, certificate and key embedded.
    pub(super) fn kubeconfig(&self, server: &str) -> String {
        let ca = BASE64.encode(&self.ca_cert);
        let cert = BASE64.encode(&self.admin_cert);
        let key = BASE64.encode(&self.admin_key);
        format!(
            "apiVersion: v1
kind: Config
clusters:
- name: kms-testenv
  cluster:
    server: {server}
    certificate-authority-data: {ca}
users:
- name: admin
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
contexts:
- name: kms-testenv
  context:
    cluster: kms-testenv
    user: admin
current-context: kms-testenv
"
        )
    }
}

/// Issues a leaf certificate with a fresh key; returns (certificate, key) as PEM.
fn leaf(
    ca: &CertifiedIssuer<'_, KeyPair>,
    names: &[&str],
    common_name: &str,
    organization: Option<&str>,
    usage: ExtendedKeyUsagePurpose,
) -> Result<(String, String), rcgen::Error> {
    let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
    let mut params = CertificateParams::new(names)?;
    params.distinguished_name.push(DnType::CommonName, common_name);
    if let Some(organization) = organization {
        params.distinguished_name.push(DnType::OrganizationName, organization);
    }
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, ca)?;
    Ok((cert.pem(), key.serialize_pem()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubeconfig_embeds_the_admin_identity() {
        let pki = Pki::issue().expect("certificates");
        let text = pki.kubeconfig("https://127.0.0.1:6443");
        let parsed = kube::config::Kubeconfig::from_yaml(&text).expect("valid kubeconfig");

        let cluster = parsed.clusters[0].cluster.as_ref().expect("cluster");
        assert_eq!(cluster.server.as_deref(), Some("https://127.0.0.1:6443"));
        let ca = cluster.certificate_authority_data.as_deref().expect("ca data");
        assert_eq!(BASE64.decode(ca).expect("base64"), pki.ca_cert.as_bytes());
        let user = parsed.auth_infos[0].auth_info.as_ref().expect("user");
        assert!(user.client_certificate_data.is_some() && user.client_key_data.is_some());
        assert_eq!(parsed.current_context.as_deref(), Some("kms-testenv"));
    }

    #[test]
    fn probe_client_accepts_the_generated_pem() {
        let pki = Pki::issue().expect("certificates");
        pki.probe_client().expect("reqwest takes our CA and PKCS#8 identity");
    }
}
