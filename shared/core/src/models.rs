//! The models Prism lists (`GET /v1/models`): which names each provider contributes, decided by
//! the same routing rule the calls use (the first provider whose patterns match a model serves
//! it), and the services behind the two routes.

use crate::deps::Deps;
use crate::error::ServiceError;
use crate::routing::glob_matches;

/// One entry of OpenAI's model list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedModel {
    pub id: String,
    /// Unix seconds, as the provider reported it; 0 for a name only the config knows.
    pub created: i64,
    pub owned_by: String,
}

/// One provider as the listing sees it: its name, its patterns, and the model list it answered
/// with (only asked of a provider with a glob among its patterns).
#[derive(Debug, Clone, Copy)]
pub struct ProviderModels<'a> {
    pub name: &'a str,
    pub patterns: &'a [String],
    pub fetched: &'a [ListedModel],
}

/// Whether a pattern names a set of models rather than one: then the provider's own list says
/// which models exist.
pub fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?'])
}

/// The models to list, in provider order: each provider's literal names, then the fetched ones
/// its patterns match; a name is listed once, under the provider a call to it would reach.
pub fn listed_models(providers: &[ProviderModels<'_>]) -> Vec<ListedModel> {
    let serves = |provider: &ProviderModels<'_>, model: &str| {
        provider.patterns.iter().any(|p| glob_matches(p, model))
    };
    let routes_to = |model: &str| providers.iter().position(|p| serves(p, model));
    let mut listed: Vec<ListedModel> = Vec::new();
    for (index, provider) in providers.iter().enumerate() {
        let literal = provider
            .patterns
            .iter()
            .filter(|p| !is_glob(p))
            .map(|name| ListedModel {
                id: name.clone(),
                created: 0,
                owned_by: provider.name.to_owned(),
            });
        let fetched = provider
            .fetched
            .iter()
            .filter(|m| serves(provider, &m.id))
            .cloned();
        for model in literal.chain(fetched) {
            if routes_to(&model.id) == Some(index) && listed.iter().all(|m| m.id != model.id) {
                listed.push(model);
            }
        }
    }
    listed
}

/// `GET /v1/models`.
pub async fn list_models(deps: &Deps) -> Result<Vec<ListedModel>, ServiceError> {
    Ok(deps.upstream.models().await)
}

/// `GET /v1/models/{id}`: a model not listed is unknown, as at OpenAI.
pub async fn get_model(deps: &Deps, id: &str) -> Result<ListedModel, ServiceError> {
    deps.upstream
        .models()
        .await
        .into_iter()
        .find(|m| m.id == id)
        .ok_or_else(|| ServiceError::NotFound {
            what: "model",
            id: id.to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(id: &str) -> ListedModel {
        ListedModel {
            id: id.into(),
            created: 7,
            owned_by: "upstream".into(),
        }
    }

    fn ids(models: &[ListedModel]) -> Vec<&str> {
        models.iter().map(|m| m.id.as_str()).collect()
    }

    #[test]
    fn a_fetched_model_is_listed_under_the_provider_its_calls_reach() {
        let first = ["gpt-4o".to_owned(), "mock-*".to_owned()];
        let second = ["*".to_owned()];
        let fetched_first = [model("mock-echo"), model("gpt-4o"), model("other")];
        let fetched_second = [
            model("gpt-4o"),
            model("mock-echo"),
            model("text-embedding-3-small"),
        ];
        let listed = listed_models(&[
            ProviderModels {
                name: "a",
                patterns: &first,
                fetched: &fetched_first,
            },
            ProviderModels {
                name: "b",
                patterns: &second,
                fetched: &fetched_second,
            },
        ]);
        assert_eq!(
            ids(&listed),
            ["gpt-4o", "mock-echo", "text-embedding-3-small"]
        );
        assert_eq!(listed[0].owned_by, "a");
        assert_eq!(listed[0].created, 0);
        assert_eq!(listed[1].owned_by, "upstream");
    }

    #[test]
    fn a_provider_with_only_literal_names_lists_exactly_those() {
        let patterns = ["m1".to_owned(), "m2".to_owned()];
        let listed = listed_models(&[ProviderModels {
            name: "p",
            patterns: &patterns,
            fetched: &[],
        }]);
        assert_eq!(ids(&listed), ["m1", "m2"]);
        assert!(!patterns.iter().any(|p| is_glob(p)));
        assert!(is_glob("gpt-*") && is_glob("m?"));
    }
}
