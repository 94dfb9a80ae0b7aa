//! The KubeVirt CA and the handler endpoint's certificates, which box mode creates at first start the way upstream's
//! virt-operator does in the install namespace: Secret `kubevirt-ca` (the CA, CN `kubevirt.io`), ConfigMap
//! `kubevirt-ca` (its bundle), Secret `kubevirt-virt-handler-server-certs` (the handlers' serving certificate) and
//! Secret `kubevirt-virt-handler-certs` (the client certificate virt-api presents to handlers) and Secret
//! `kubevirt-virt-api-certs` (virt-api's serving certificate, for `virt-api.kubevirt.svc`). Objects that exist
//! are kept; missing ones are made from the stored CA. This CA is not the API server's: users' client certificates
//! cannot reach handlers. Certificates last ten years and are not rotated yet.

use std::collections::BTreeMap;

use handler::certs as hc;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, PostParams};

/// Why the certificates could not be set up.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CertsError {
    /// The API refused.
    #[error("{what}: {source}")]
    Api {
        /// The object.
        what: String,
        /// Why.
        #[source]
        source: kube::Error,
    },
    /// Generating or signing failed.
    #[error("certificates: {0}")]
    Sign(String),
}

const CA_CN: &str = "kubevirt.io";
/// virt-api's serving certificate (upstream's Secret name).
pub(crate) const VIRT_API_SECRET: &str = "kubevirt-virt-api-certs";
/// The upload proxy's serving certificate (for `cdi-uploadproxy.<ns>.svc`, `localhost` and 127.0.0.1).
pub(crate) const UPLOAD_PROXY_SECRET: &str = "cdi-uploadproxy-server-cert";
/// The key upload tokens are signed with (upstream's Secret name; a P-256 PKCS#8 key under `key.pem`).
pub(crate) const SIGNING_KEY_SECRET: &str = "cdi-api-signing-key";
const TEN_YEARS: std::time::Duration = std::time::Duration::from_secs(10 * 365 * 86_400);

fn sign_err(e: rcgen::Error) -> CertsError {
    CertsError::Sign(e.to_string())
}

fn validity(p: &mut rcgen::CertificateParams) {
    let now = std::time::SystemTime::now();
    p.not_before = (now - std::time::Duration::from_secs(300)).into();
    p.not_after = (now + TEN_YEARS).into();
}

/// The CA's parameters: fixed, so the stored key signs as the same issuer at every start.
fn ca_params() -> Result<rcgen::CertificateParams, CertsError> {
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(sign_err)?;
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.distinguished_name.push(rcgen::DnType::CommonName, CA_CN);
    p.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    Ok(p)
}

fn tls_secret(ns: &str, name: &str, cert: &str, key: &str) -> Secret {
    Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(BTreeMap::from([
            ("tls.crt".to_string(), ByteString(cert.as_bytes().to_vec())),
            ("tls.key".to_string(), ByteString(key.as_bytes().to_vec())),
        ])),
        ..Default::default()
    }
}

fn text(s: &Secret, key: &str) -> Option<String> {
    let b = s.data.as_ref()?.get(key)?;
    String::from_utf8(b.0.clone()).ok()
}

/// Creates `obj` unless it exists (409 is someone else having made it first).
async fn create<K>(api: &Api<K>, obj: &K, what: &str) -> Result<(), CertsError>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    match api.create(&PostParams::default(), obj).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(source) => Err(CertsError::Api {
            what: what.into(),
            source,
        }),
    }
}

/// Makes sure the CA, its bundle and the handler's server and client certificates exist in `ns`.
pub(crate) async fn ensure(client: &kube::Client, ns: &str) -> Result<(), CertsError> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let get = |name: &'static str| {
        let secrets = secrets.clone();
        async move {
            secrets.get_opt(name).await.map_err(|source| CertsError::Api {
                what: format!("secret {ns}/{name}"),
                source,
            })
        }
    };
    let ca = match get(hc::CA_SECRET).await? {
        Some(s) => s,
        None => {
            let key = rcgen::KeyPair::generate().map_err(sign_err)?;
            let mut p = ca_params()?;
            validity(&mut p);
            let cert = p.self_signed(&key).map_err(sign_err)?;
            let s = tls_secret(ns, hc::CA_SECRET, &cert.pem(), &key.serialize_pem());
            create(&secrets, &s, "the KubeVirt CA").await?;
            get(hc::CA_SECRET)
                .await?
                .ok_or_else(|| CertsError::Sign("the KubeVirt CA vanished".into()))?
        }
    };
    let (Some(ca_pem), Some(ca_key)) = (text(&ca, "tls.crt"), text(&ca, "tls.key")) else {
        return Err(CertsError::Sign(format!(
            "secret {ns}/{} lacks tls.crt or tls.key",
            hc::CA_SECRET
        )));
    };
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let bundle = ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some(hc::CA_CONFIGMAP.into()),
            namespace: Some(ns.into()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(hc::CA_BUNDLE_KEY.to_string(), ca_pem)])),
        ..Default::default()
    };
    create(&cms, &bundle, "the KubeVirt CA bundle").await?;
    let ca_key = rcgen::KeyPair::from_pem(&ca_key).map_err(sign_err)?;
    let ca_params = ca_params()?;
    let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
    let names = |service: &str| {
        [
            service.to_string(),
            format!("{service}.{ns}"),
            format!("{service}.{ns}.svc"),
            format!("{service}.{ns}.svc.cluster.local"),
        ]
        .to_vec()
    };
    // (secret, CN, DNS names; none = a client certificate)
    let wanted = [
        (
            hc::SERVER_SECRET,
            hc::SERVER_CN.to_string(),
            names("virt-handler"),
        ),
        (hc::CLIENT_SECRET, hc::CLIENT_CN.to_string(), Vec::new()),
        (
            VIRT_API_SECRET,
            format!("virt-api.{ns}.pod.cluster.local"),
            names("virt-api"),
        ),
        (
            UPLOAD_PROXY_SECRET,
            "cdi-uploadproxy".to_string(),
            [
                names("cdi-uploadproxy"),
                vec!["localhost".into(), "127.0.0.1".into()],
            ]
            .concat(),
        ),
    ];
    for (name, cn, sans) in wanted {
        if get(name).await?.is_some() {
            continue;
        }
        let key = rcgen::KeyPair::generate().map_err(sign_err)?;
        let server = !sans.is_empty();
        let mut p = rcgen::CertificateParams::new(sans).map_err(sign_err)?;
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        p.extended_key_usages = vec![if server {
            rcgen::ExtendedKeyUsagePurpose::ServerAuth
        } else {
            rcgen::ExtendedKeyUsagePurpose::ClientAuth
        }];
        p.key_usages = vec![
            rcgen::KeyUsagePurpose::DigitalSignature,
            rcgen::KeyUsagePurpose::KeyEncipherment,
        ];
        validity(&mut p);
        let cert = p.signed_by(&key, &issuer).map_err(sign_err)?;
        create(
            &secrets,
            &tls_secret(ns, name, &cert.pem(), &key.serialize_pem()),
            name,
        )
        .await?;
    }
    if get(SIGNING_KEY_SECRET).await?.is_none() {
        let key = rcgen::KeyPair::generate().map_err(sign_err)?;
        let s = Secret {
            metadata: kube::api::ObjectMeta {
                name: Some(SIGNING_KEY_SECRET.into()),
                namespace: Some(ns.into()),
                ..Default::default()
            },
            data: Some(BTreeMap::from([(
                "key.pem".to_string(),
                ByteString(key.serialize_pem().into_bytes()),
            )])),
            ..Default::default()
        };
        create(&secrets, &s, SIGNING_KEY_SECRET).await?;
    }
    Ok(())
}

/// The upload token signing key (PKCS#8 DER) from `ns`.
pub(crate) async fn signing_key(client: &kube::Client, ns: &str) -> Result<Vec<u8>, CertsError> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let s = secrets
        .get(SIGNING_KEY_SECRET)
        .await
        .map_err(|source| CertsError::Api {
            what: format!("secret {ns}/{SIGNING_KEY_SECRET}"),
            source,
        })?;
    let pem =
        text(&s, "key.pem").ok_or_else(|| CertsError::Sign(format!("{SIGNING_KEY_SECRET} lacks key.pem")))?;
    let key = rcgen::KeyPair::from_pem(&pem).map_err(sign_err)?;
    Ok(key.serialize_der())
}
