//! May the caller do this? Asked of the Kubernetes API server with a SubjectAccessReview for
//! `subresources.kubevirt.io` `<resource>/<subresource>` (PUT → `update`, GET → `get`), as upstream's virt-api does
//! — so whatever authorizes the cluster (RBAC, or box mode's masters/viewers) decides.

use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use kube::api::{Api, PostParams};

use crate::Error;
use crate::authn::Caller;

/// The API group of the subresources.
pub const GROUP: &str = "subresources.kubevirt.io";

/// One request's question.
#[derive(Debug, Clone)]
pub struct Ask<'a> {
    /// The API group ([`GROUP`] for subresources).
    pub group: &'a str,
    /// `get` or `update`.
    pub verb: &'a str,
    /// `virtualmachines` or `virtualmachineinstances`.
    pub resource: &'a str,
    /// `start`, `console`, …
    pub subresource: &'a str,
    /// The object's namespace.
    pub namespace: &'a str,
    /// The object's name.
    pub name: &'a str,
}

/// `Ok(())` when allowed, else the authorizer's reason.
///
/// # Errors
/// [`Error::Forbidden`] when denied; [`Error::Kube`] when the review itself failed.
pub async fn check(client: &kube::Client, who: &Caller, ask: &Ask<'_>) -> Result<(), Error> {
    let reviews: Api<SubjectAccessReview> = Api::all(client.clone());
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(who.user.clone()),
            groups: Some(who.groups.clone()),
            resource_attributes: Some(ResourceAttributes {
                group: Some(ask.group.into()),
                version: Some(
                    if ask.group == GROUP {
                        "v1"
                    } else {
                        crate::upload::VERSION
                    }
                    .into(),
                ),
                resource: Some(ask.resource.into()),
                subresource: Some(ask.subresource.into()),
                namespace: Some(ask.namespace.into()),
                name: Some(ask.name.into()),
                verb: Some(ask.verb.into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let answer = reviews.create(&PostParams::default(), &review).await?;
    let status = answer.status.unwrap_or_default();
    if status.allowed {
        return Ok(());
    }
    Err(Error::Forbidden(format!(
        "User \"{}\" cannot {} resource \"{}{}\" in API group \"{}\" in the namespace \"{}\"{}",
        who.user,
        ask.verb,
        ask.resource,
        Some(ask.subresource)
            .filter(|s| !s.is_empty())
            .map(|s| format!("/{s}"))
            .unwrap_or_default(),
        ask.group,
        ask.namespace,
        status.reason.map(|r| format!(": {r}")).unwrap_or_default(),
    )))
}
