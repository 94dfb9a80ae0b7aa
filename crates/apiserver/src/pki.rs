//! The server's credentials in its data dir: the CA (certificate and key), the serving certificate, the bearer tokens,
//! kubeconfig files, and client certificates issued by the CA (`kvbox kubeconfig`), all written 0600.

use std::path::Path;

use base64::Engine as _;

use crate::server_error::ServerError;

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ServerError + '_ {
    move |source| ServerError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub(crate) fn write_private(path: &Path, data: &[u8]) -> Result<(), ServerError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io(&tmp))?;
    f.write_all(data).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// The CA certificate, serving certificate and key, as PEM.
pub(crate) struct Pki {
    pub(crate) ca: String,
    pub(crate) cert: String,
    pub(crate) key: String,
}

const CA_NAME: &str = "kvbox-ca";

fn err(e: rcgen::Error) -> ServerError {
    ServerError::Certificates(e.to_string())
}

/// The CA's parameters: the same at every start, so a stored CA key can sign again.
fn ca_params() -> Result<rcgen::CertificateParams, ServerError> {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, CA_NAME);
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    Ok(ca_params)
}

pub(crate) fn load_or_make_pki(dir: &Path) -> Result<Pki, ServerError> {
    let (ca_p, cert_p, key_p) = (
        dir.join("ca.crt"),
        dir.join("serving.crt"),
        dir.join("serving.key"),
    );
    if ca_p.exists() && cert_p.exists() && key_p.exists() {
        let read = |p: &Path| std::fs::read_to_string(p).map_err(io(p));
        return Ok(Pki {
            ca: read(&ca_p)?,
            cert: read(&cert_p)?,
            key: read(&key_p)?,
        });
    }
    let ca_key = rcgen::KeyPair::generate().map_err(err)?;
    let ca_params = ca_params()?;
    let ca_cert = ca_params.self_signed(&ca_key).map_err(err)?;
    let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
    let key = rcgen::KeyPair::generate().map_err(err)?;
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "kvbox".to_string()]).map_err(err)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "kvbox-apiserver");
    for ip in ["127.0.0.1", "::1"] {
        if let Ok(ip) = ip.parse() {
            params.subject_alt_names.push(rcgen::SanType::IpAddress(ip));
        }
    }
    if let Ok(host_ips) = std::env::var("KVBOX_EXTRA_SANS") {
        for s in host_ips.split(',').filter(|s| !s.is_empty()) {
            match s.parse() {
                Ok(ip) => params.subject_alt_names.push(rcgen::SanType::IpAddress(ip)),
                Err(_) => params
                    .subject_alt_names
                    .push(rcgen::SanType::DnsName(s.try_into().map_err(err)?)),
            }
        }
    }
    let cert = params.signed_by(&key, &issuer).map_err(err)?;
    let pki = Pki {
        ca: ca_cert.pem(),
        cert: cert.pem(),
        key: key.serialize_pem(),
    };
    write_private(&dir.join("ca.key"), ca_key.serialize_pem().as_bytes())?;
    write_private(&ca_p, pki.ca.as_bytes())?;
    write_private(&cert_p, pki.cert.as_bytes())?;
    write_private(&key_p, pki.key.as_bytes())?;
    Ok(pki)
}

/// The front proxy's CA and the client certificate this server presents to aggregated API servers (CN
/// `front-proxy-client`, as kubeadm names it), as PEM.
#[derive(Clone)]
pub(crate) struct FrontProxyPki {
    pub(crate) ca: String,
    pub(crate) cert: String,
    pub(crate) key: String,
}

/// The CN aggregated API servers accept the front proxy's certificate from.
pub(crate) const FRONT_PROXY_CLIENT: &str = "front-proxy-client";

pub(crate) fn load_or_make_front_proxy(dir: &Path) -> Result<FrontProxyPki, ServerError> {
    let (ca_p, cert_p, key_p) = (
        dir.join("front-proxy-ca.crt"),
        dir.join("front-proxy-client.crt"),
        dir.join("front-proxy-client.key"),
    );
    if ca_p.exists() && cert_p.exists() && key_p.exists() {
        let read = |p: &Path| std::fs::read_to_string(p).map_err(io(p));
        return Ok(FrontProxyPki {
            ca: read(&ca_p)?,
            cert: read(&cert_p)?,
            key: read(&key_p)?,
        });
    }
    let ca_key = rcgen::KeyPair::generate().map_err(err)?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "kvbox-front-proxy-ca");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).map_err(err)?;
    let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
    let key = rcgen::KeyPair::generate().map_err(err)?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, FRONT_PROXY_CLIENT);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    let cert = params.signed_by(&key, &issuer).map_err(err)?;
    let pki = FrontProxyPki {
        ca: ca_cert.pem(),
        cert: cert.pem(),
        key: key.serialize_pem(),
    };
    write_private(&ca_p, pki.ca.as_bytes())?;
    write_private(&cert_p, pki.cert.as_bytes())?;
    write_private(&key_p, pki.key.as_bytes())?;
    Ok(pki)
}

pub(crate) fn load_or_make_token(path: &Path) -> Result<String, ServerError> {
    if let Ok(t) = std::fs::read_to_string(path)
        && !t.trim().is_empty()
    {
        return Ok(t.trim().to_string());
    }
    let token = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    write_private(path, token.as_bytes())?;
    Ok(token)
}

/// A kubeconfig for `server` trusting `ca_pem`, authenticating `user` by `credentials` (the `user:` mapping's lines).
fn kubeconfig_with(server: &str, ca_pem: &str, user: &str, credentials: &str) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: kvbox\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: {user}\n  user:\n{credentials}contexts:\n- name: kvbox\n  context:\n    cluster: kvbox\n    user: {user}\n    namespace: default\ncurrent-context: kvbox\n"
    )
}

/// A kubeconfig authenticating with a bearer token.
pub(crate) fn kubeconfig_text(server: &str, ca_pem: &str, user: &str, token: &str) -> String {
    kubeconfig_with(server, ca_pem, user, &format!("    token: {token}\n"))
}

/// Issues a client certificate for `user` in `groups` (subject CN and O; `system:masters` may write) signed by the CA
/// in `dir`, and returns a kubeconfig using it for the server `dir`'s `kubeconfig.yaml` points at.
///
/// # Errors
/// The CA or the admin kubeconfig is missing (the server never started with this data dir), or signing failed.
pub fn client_kubeconfig(
    dir: &Path,
    user: &str,
    groups: &[String],
    days: u32,
) -> Result<String, ServerError> {
    if user.is_empty() {
        return Err(ServerError::Certificates(
            "the user name must not be empty".into(),
        ));
    }
    let read = |name: &str| {
        let p = dir.join(name);
        std::fs::read_to_string(&p).map_err(io(&p))
    };
    let ca_pem = read("ca.crt")?;
    let ca_key = rcgen::KeyPair::from_pem(&read("ca.key")?).map_err(err)?;
    let admin = read("kubeconfig.yaml")?;
    let server = admin
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: "))
        .ok_or_else(|| ServerError::Certificates("kubeconfig.yaml names no server".into()))?
        .to_string();
    let ca_params = ca_params()?;
    let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
    let key = rcgen::KeyPair::generate().map_err(err)?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    params.distinguished_name.push(rcgen::DnType::CommonName, user);
    // rcgen keeps one value per attribute type, so a second group goes in under O's OID spelled as a custom type
    // (encoded identically); more than two cannot be expressed.
    if groups.len() > 2 {
        return Err(ServerError::Certificates(format!(
            "a client certificate here carries at most two groups (subject O), not {}",
            groups.len()
        )));
    }
    let organization = [
        rcgen::DnType::OrganizationName,
        rcgen::DnType::CustomDnType(vec![2, 5, 4, 10]),
    ];
    for (ty, g) in organization.into_iter().zip(groups) {
        params.distinguished_name.push(ty, g.as_str());
    }
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::DigitalSignature,
        rcgen::KeyUsagePurpose::KeyEncipherment,
    ];
    let now = std::time::SystemTime::now();
    params.not_before = (now - std::time::Duration::from_secs(300)).into();
    params.not_after = (now + std::time::Duration::from_secs(u64::from(days) * 86_400)).into();
    let cert = params.signed_by(&key, &issuer).map_err(err)?;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    Ok(kubeconfig_with(
        &server,
        &ca_pem,
        user,
        &format!(
            "    client-certificate-data: {}\n    client-key-data: {}\n",
            b64(&cert.pem()),
            b64(&key.serialize_pem())
        ),
    ))
}
