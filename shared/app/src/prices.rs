//! `[[prices]]` in `prism.toml`: each model's prices in USD per million tokens, read into core's
//! [`PriceTable`] exactly (a decimal with at most six places, never a float product).

use prism_core::pricing::{ModelPrice, PerMillion, PriceTable, Rates};
use serde::Deserialize;

use crate::config::ConfigError;

/// One `[[prices]]` entry: `model` is a pattern like the providers' (`gpt-4o-mini*`); the
/// standard prices sit at its top level, the batch and flex ones in optional tables.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceSection {
    pub model: String,
    #[serde(flatten)]
    pub standard: RatesSection,
    pub batch: Option<RatesSection>,
    pub flex: Option<RatesSection>,
}

/// Dollars per million tokens; `cached_input` defaults to `input`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RatesSection {
    pub input: Dollars,
    pub cached_input: Option<Dollars>,
    pub output: Dollars,
}

/// A price as TOML gives it: `0.15` or `"0.15"`. A number is read through its shortest decimal
/// form, which is exact for any price with at most six places.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Dollars {
    Number(f64),
    Text(String),
}

impl Dollars {
    fn per_million(&self, model: &str) -> Result<PerMillion, ConfigError> {
        let text = match self {
            Dollars::Number(n) => n.to_string(),
            Dollars::Text(t) => t.clone(),
        };
        PerMillion::parse_dollars(&text).ok_or_else(|| {
            ConfigError::Invalid(format!(
                "price {text} of [[prices]] model {model:?} is not a dollar amount with at most six decimals"
            ))
        })
    }
}

impl RatesSection {
    fn rates(&self, model: &str) -> Result<Rates, ConfigError> {
        let input = self.input.per_million(model)?;
        Ok(Rates {
            input,
            cached_input: match &self.cached_input {
                Some(cached) => cached.per_million(model)?,
                None => input,
            },
            output: self.output.per_million(model)?,
        })
    }
}

/// The price table, in the order written: the first matching pattern prices a model.
pub fn price_table(sections: &[PriceSection]) -> Result<PriceTable, ConfigError> {
    let models = sections
        .iter()
        .map(|p| {
            Ok(ModelPrice {
                model: p.model.clone(),
                standard: p.standard.rates(&p.model)?,
                batch: p.batch.as_ref().map(|r| r.rates(&p.model)).transpose()?,
                flex: p.flex.as_ref().map(|r| r.rates(&p.model)).transpose()?,
            })
        })
        .collect::<Result<Vec<_>, ConfigError>>()?;
    Ok(PriceTable { models })
}

#[cfg(test)]
mod tests {
    use prism_core::batches::Usage;
    use prism_core::pricing::Tier;

    use crate::config::Config;

    #[test]
    fn prices_are_read_from_numbers_or_strings_per_tier() {
        let config = Config::parse(
            r#"
            [[prices]]
            model = "gpt-4o-mini*"
            input = 0.15
            cached_input = "0.075"
            output = 0.6
            batch = { input = 0.075, output = 0.3 }
            "#,
            "test",
        )
        .unwrap();
        let table = config.price_table().unwrap();
        let usage = Usage {
            input_tokens: 1_000_000,
            cached_tokens: 0,
            output_tokens: 1_000_000,
            reasoning_tokens: 0,
            total_tokens: 2_000_000,
        };
        let cost = |tier| table.cost("gpt-4o-mini", tier, &usage).unwrap().to_string();
        assert_eq!(cost(Tier::Standard), "0.75");
        assert_eq!(cost(Tier::Batch), "0.375");
        assert_eq!(cost(Tier::Flex), "0.75");
        assert!(table.cost("gpt-4o", Tier::Standard, &usage).is_none());
    }

    #[test]
    fn a_price_with_more_than_six_decimals_is_refused() {
        let refused = Config::parse(
            r#"
            [[prices]]
            model = "m"
            input = "0.0000001"
            output = 1
            "#,
            "test",
        );
        assert!(refused.is_err());
    }
}
