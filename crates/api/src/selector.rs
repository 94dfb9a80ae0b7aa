//! Label selectors (`matchLabels` + `matchExpressions`) evaluated against a label map.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// A selector could not be interpreted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SelectorError(pub String);

/// Whether `labels` satisfy `selector`. An empty selector matches everything.
///
/// # Errors
/// [`SelectorError`] for an unknown operator or a value list that does not fit it.
pub fn matches(
    selector: &LabelSelector,
    labels: Option<&BTreeMap<String, String>>,
) -> Result<bool, SelectorError> {
    let empty = BTreeMap::new();
    let labels = labels.unwrap_or(&empty);
    for (k, v) in selector.match_labels.iter().flatten() {
        if labels.get(k) != Some(v) {
            return Ok(false);
        }
    }
    for e in selector.match_expressions.iter().flatten() {
        let values = e.values.as_deref().unwrap_or_default();
        let have = labels.get(&e.key);
        let ok = match e.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => {
                return Err(SelectorError(format!(
                    "for '{}', '{}' operator, values set can't be empty",
                    e.key, e.operator
                )));
            }
            "In" => have.is_some_and(|h| values.contains(h)),
            "NotIn" => have.is_none_or(|h| !values.contains(h)),
            "Exists" | "DoesNotExist" if !values.is_empty() => {
                return Err(SelectorError(format!(
                    "values: Invalid value: {values:?}: values set must be empty for exists and does not exist"
                )));
            }
            "Exists" => have.is_some(),
            "DoesNotExist" => have.is_none(),
            other => {
                return Err(SelectorError(format!(
                    "{other:?} is not a valid label selector operator"
                )));
            }
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Whether the selector has no requirement at all.
#[must_use]
pub fn is_empty(selector: &LabelSelector) -> bool {
    selector.match_labels.as_ref().is_none_or(BTreeMap::is_empty)
        && selector.match_expressions.as_ref().is_none_or(Vec::is_empty)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelector {
        LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: key.into(),
                operator: op.into(),
                values: Some(values.iter().map(|v| (*v).to_string()).collect()),
            }]),
            match_labels: None,
        }
    }

    #[test]
    fn match_labels_and_expressions() {
        let l = labels(&[("app", "web"), ("tier", "front")]);
        let sel = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            match_expressions: None,
        };
        assert_eq!(matches(&sel, Some(&l)), Ok(true));
        assert_eq!(matches(&sel, None), Ok(false));
        assert_eq!(matches(&LabelSelector::default(), None), Ok(true));
        assert_eq!(
            matches(&expr("tier", "In", &["front", "back"]), Some(&l)),
            Ok(true)
        );
        assert_eq!(matches(&expr("tier", "NotIn", &["front"]), Some(&l)), Ok(false));
        assert_eq!(matches(&expr("app", "Exists", &[]), Some(&l)), Ok(true));
        assert_eq!(matches(&expr("zone", "DoesNotExist", &[]), Some(&l)), Ok(true));
        assert!(matches(&expr("app", "Like", &["w"]), Some(&l)).is_err());
        assert!(matches(&expr("app", "In", &[]), Some(&l)).is_err());
    }
}
