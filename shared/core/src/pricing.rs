//! What finished work cost: the tier a request was billed at, the per-model price table, and the
//! one pricing rule (tokens × price per tier, cached input at its own price) in exact integer
//! picodollars, so totals never drift the way floats do.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::batches::{Batch, BatchStatus, Usage};
use crate::jobs::{Job, JobStatus};
use crate::routing::glob_matches;

/// The price tier a request ran at. Each execution mode maps to one: gateway lines and
/// async/scheduled jobs are `Standard`, lines sent through a provider's Batch API are `Batch`,
/// lines sent with `service_tier: "flex"` are `Flex`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Standard,
    Batch,
    Flex,
}

impl Tier {
    pub const ALL: [Tier; 3] = [Tier::Standard, Tier::Batch, Tier::Flex];

    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Standard => "standard",
            Tier::Batch => "batch",
            Tier::Flex => "flex",
        }
    }

    pub fn parse(name: &str) -> Option<Tier> {
        Tier::ALL.into_iter().find(|t| t.as_str() == name)
    }

    /// The tier a completion was billed at, as its response says (`service_tier`): OpenAI
    /// answers `flex` for a request it ran at the flex tier, whatever was asked, so a flex
    /// request that fell back to the standard tier is billed as standard. Anything else bills at
    /// `otherwise` (`Batch` for lines copied from a provider batch's output).
    pub fn of_response(service_tier: Option<&str>, otherwise: Tier) -> Tier {
        match service_tier {
            Some("flex") => Tier::Flex,
            _ => otherwise,
        }
    }
}

/// How a batch line was run: what decides the tier its usage bills at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineRun {
    /// Prism called the provider itself; `flex` when the call asked for the flex tier.
    Gateway { flex: bool },
    /// The line went through the provider's own Batch API.
    ProviderBatch,
}

impl Tier {
    /// The one rule for the tier a batch line bills at. A provider batch bills at its batch
    /// price whatever its responses say. A line Prism sent bills at what the response says it ran
    /// at: `flex` is flex, any other named tier is standard (a flex request the provider ran at
    /// the standard tier costs the standard price); a response that names no tier ran as asked.
    pub fn of_batch_line(run: LineRun, service_tier: Option<&str>) -> Tier {
        match (run, service_tier) {
            (LineRun::ProviderBatch, _) => Tier::Batch,
            (LineRun::Gateway { .. }, Some(FLEX)) => Tier::Flex,
            (LineRun::Gateway { .. }, Some(_)) => Tier::Standard,
            (LineRun::Gateway { flex: true }, None) => Tier::Flex,
            (LineRun::Gateway { flex: false }, None) => Tier::Standard,
        }
    }

    /// The letter a batch part line records its tier with (see `batches::encode_part_line`).
    pub fn letter(self) -> u8 {
        match self {
            Tier::Standard => b's',
            Tier::Batch => b'b',
            Tier::Flex => b'f',
        }
    }

    pub fn of_letter(letter: u8) -> Option<Tier> {
        Tier::ALL.into_iter().find(|t| t.letter() == letter)
    }
}

const FLEX: &str = "flex";

/// What a completion body says that its bill needs (its model, the `service_tier` it ran at, its
/// usage), read in one pass: a line's or a job's body is parsed once for all three.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompletionHead {
    pub model: Option<String>,
    pub service_tier: Option<String>,
    pub usage: Usage,
}

impl CompletionHead {
    /// `None` for a body that is not a completion's JSON object.
    pub fn parse(body: &str) -> Option<CompletionHead> {
        #[derive(Deserialize)]
        struct Head {
            #[serde(default)]
            model: Option<String>,
            #[serde(default)]
            service_tier: Option<String>,
            #[serde(default)]
            usage: Option<crate::batches::RawUsage>,
        }
        let head: Head = serde_json::from_str(body).ok()?;
        Some(CompletionHead {
            model: head.model,
            service_tier: head.service_tier,
            usage: head.usage.map(Usage::from).unwrap_or_default(),
        })
    }
}

/// An amount of US dollars in picodollars (10⁻¹² USD): a token priced in dollars per million
/// tokens with up to six decimals costs a whole number of them, so every sum is exact.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cost(pub u128);

impl Cost {
    /// Saturating: no sum of token costs comes near `u128::MAX` picodollars.
    pub fn plus(self, other: Cost) -> Cost {
        Cost(self.0.saturating_add(other.0))
    }
}

/// USD as a decimal string with no trailing zeros: `0.0000018`, `12.5`, `0`.
impl fmt::Display for Cost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const PER_DOLLAR: u128 = 1_000_000_000_000;
        let (whole, frac) = (self.0 / PER_DOLLAR, self.0 % PER_DOLLAR);
        if frac == 0 {
            return write!(f, "{whole}");
        }
        let digits = format!("{frac:012}");
        write!(f, "{whole}.{}", digits.trim_end_matches('0'))
    }
}

/// A price in microdollars per million tokens ($0.15 / 1M tokens is `150_000`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PerMillion(pub u64);

impl PerMillion {
    /// Reads a decimal amount of dollars (`"0.15"`, `"2"`); more than six decimals, a sign or
    /// anything else is refused rather than rounded.
    pub fn parse_dollars(text: &str) -> Option<PerMillion> {
        let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || !digits(whole) || !digits(frac) || frac.len() > 6 {
            return None;
        }
        let whole: u64 = whole.parse().ok()?;
        let frac: u64 = if frac.is_empty() {
            0
        } else {
            format!("{frac:0<6}").parse().ok()?
        };
        whole
            .checked_mul(1_000_000)?
            .checked_add(frac)
            .map(PerMillion)
    }

    /// Picodollars for `tokens`: microdollars per million tokens are picodollars per token.
    fn times(self, tokens: u64) -> Cost {
        Cost(u128::from(self.0) * u128::from(tokens))
    }
}

/// One tier's prices. Cached input tokens are part of the input tokens and cost
/// `cached_input` instead of `input`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rates {
    pub input: PerMillion,
    pub cached_input: PerMillion,
    pub output: PerMillion,
}

impl Rates {
    /// The pricing rule. Reasoning tokens are part of the output tokens and cost as output.
    pub fn cost(&self, usage: &Usage) -> Cost {
        let cached = usage.cached_tokens.min(usage.input_tokens);
        self.input
            .times(usage.input_tokens - cached)
            .plus(self.cached_input.times(cached))
            .plus(self.output.times(usage.output_tokens))
    }
}

/// A model's prices (config `[[prices]]`): `model` is a pattern like the providers' (`*`, `?`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelPrice {
    pub model: String,
    pub standard: Rates,
    /// The provider's Batch API price; a model without one bills batch lines at `standard`.
    pub batch: Option<Rates>,
    /// The flex tier's price; a model without one bills flex lines at `standard`.
    pub flex: Option<Rates>,
}

/// Every configured price; the first entry whose pattern matches a model prices it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PriceTable {
    pub models: Vec<ModelPrice>,
}

impl PriceTable {
    pub fn rates(&self, model: &str, tier: Tier) -> Option<Rates> {
        let price = self.models.iter().find(|p| glob_matches(&p.model, model))?;
        Some(match tier {
            Tier::Standard => price.standard,
            Tier::Batch => price.batch.unwrap_or(price.standard),
            Tier::Flex => price.flex.unwrap_or(price.standard),
        })
    }

    /// What `usage` of `model` cost at `tier`; `None` when the model has no price.
    pub fn cost(&self, model: &str, tier: Tier, usage: &Usage) -> Option<Cost> {
        self.rates(model, tier).map(|rates| rates.cost(usage))
    }

    /// The cost of every entry, `None` when any model among them has no price: a partial sum
    /// would read as the whole.
    pub fn cost_of_all(&self, usage: &UsageByModel) -> Option<Cost> {
        usage
            .entries()
            .try_fold(Cost::default(), |sum, (key, entry)| {
                Some(sum.plus(self.cost(&key.model, key.tier, &entry.usage)?))
            })
    }
}

impl PriceTable {
    /// A finished async or scheduled job's cost, from its completion's `usage` at the standard
    /// tier (flex if the response says so); `None` before it completes or without a price.
    pub fn job_cost(&self, job: &Job) -> Option<Cost> {
        if job.status != JobStatus::Completed {
            return None;
        }
        let billed =
            Billed::of_completion(job.result.as_deref()?, Some(&job.model), Tier::Standard)?;
        self.cost(&billed.model, billed.tier, &billed.usage)
    }

    /// A finished batch's cost, from its usage per model and tier; a batch with no successful
    /// line costs nothing when its model has a price. `None` before it ends or when a model has
    /// no price.
    pub fn batch_cost(&self, batch: &Batch) -> Option<Cost> {
        if !batch.status.is_terminal() || batch.status == BatchStatus::Failed {
            return None;
        }
        if batch.usage_by_model.is_empty() {
            let model = batch.model.as_deref()?;
            return self.rates(model, Tier::Standard).map(|_| Cost::default());
        }
        self.cost_of_all(&batch.usage_by_model)
    }
}

/// Which model at which tier: how usage is summed for pricing.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ModelTier {
    pub model: String,
    pub tier: Tier,
}

/// Requests and tokens of one model at one tier.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    pub requests: u64,
    pub usage: Usage,
}

/// Usage summed per model and tier, in a stable order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Vec<UsageEntry>", into = "Vec<UsageEntry>")]
pub struct UsageByModel(BTreeMap<ModelTier, Tally>);

/// How [`UsageByModel`] is stored (a list: JSON maps need string keys).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageEntry {
    pub model: String,
    pub tier: Tier,
    pub requests: u64,
    pub usage: Usage,
}

impl From<Vec<UsageEntry>> for UsageByModel {
    fn from(entries: Vec<UsageEntry>) -> Self {
        let mut sum = UsageByModel::default();
        for e in entries {
            sum.add_tally(
                ModelTier {
                    model: e.model,
                    tier: e.tier,
                },
                Tally {
                    requests: e.requests,
                    usage: e.usage,
                },
            );
        }
        sum
    }
}

impl From<UsageByModel> for Vec<UsageEntry> {
    fn from(sum: UsageByModel) -> Self {
        sum.0
            .into_iter()
            .map(|(key, tally)| UsageEntry {
                model: key.model,
                tier: key.tier,
                requests: tally.requests,
                usage: tally.usage,
            })
            .collect()
    }
}

impl UsageByModel {
    /// Counts one request of `model` at `tier`.
    pub fn add(&mut self, model: &str, tier: Tier, usage: &Usage) {
        self.add_tally(
            ModelTier {
                model: model.to_owned(),
                tier,
            },
            Tally {
                requests: 1,
                usage: *usage,
            },
        );
    }

    pub fn add_tally(&mut self, key: ModelTier, tally: Tally) {
        let entry = self.0.entry(key).or_default();
        entry.requests += tally.requests;
        entry.usage.add(&tally.usage);
    }

    pub fn merge(&mut self, other: &UsageByModel) {
        for (key, tally) in other.entries() {
            self.add_tally(key.clone(), *tally);
        }
    }

    pub fn entries(&self) -> impl Iterator<Item = (&ModelTier, &Tally)> {
        self.0.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// All tokens, whatever the model.
    pub fn total(&self) -> Usage {
        let mut sum = Usage::default();
        for tally in self.0.values() {
            sum.add(&tally.usage);
        }
        sum
    }
}

/// What a completion's body says about its billing: the model that ran, the tier and the usage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Billed {
    pub model: String,
    pub tier: Tier,
    pub usage: Usage,
}

impl Billed {
    /// Reads a completion body; `None` when it is not JSON or names no model (`requested` is
    /// used instead when given). `otherwise` is the tier when the body does not say flex.
    pub fn of_completion(body: &str, requested: Option<&str>, otherwise: Tier) -> Option<Billed> {
        let head = CompletionHead::parse(body)?;
        let model = head.model.or_else(|| requested.map(str::to_owned))?;
        Some(Billed {
            model,
            tier: Tier::of_response(head.service_tier.as_deref(), otherwise),
            usage: head.usage,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dollars(text: &str) -> PerMillion {
        PerMillion::parse_dollars(text).unwrap()
    }

    /// gpt-4o-mini's list prices.
    fn mini() -> PriceTable {
        PriceTable {
            models: vec![ModelPrice {
                model: "gpt-4o-mini*".into(),
                standard: Rates {
                    input: dollars("0.15"),
                    cached_input: dollars("0.075"),
                    output: dollars("0.60"),
                },
                batch: Some(Rates {
                    input: dollars("0.075"),
                    cached_input: dollars("0.075"),
                    output: dollars("0.30"),
                }),
                flex: None,
            }],
        }
    }

    fn usage(input: u64, cached: u64, output: u64) -> Usage {
        Usage {
            input_tokens: input,
            cached_tokens: cached,
            output_tokens: output,
            reasoning_tokens: 0,
            total_tokens: input + output,
        }
    }

    #[test]
    fn dollars_parse_exactly_and_refuse_what_would_round() {
        assert_eq!(dollars("0.15"), PerMillion(150_000));
        assert_eq!(dollars("2"), PerMillion(2_000_000));
        assert_eq!(dollars("0.000001"), PerMillion(1));
        for bad in ["", ".5", "0.0000001", "-1", "1e3", "0,15", "1.2.3"] {
            assert_eq!(PerMillion::parse_dollars(bad), None, "{bad}");
        }
    }

    #[test]
    fn cached_input_costs_its_own_price_and_the_rest_costs_input() {
        // 1000 input of which 400 cached, 100 output, standard tier:
        // 600 × 0.15 + 400 × 0.075 + 100 × 0.60 = 90 + 30 + 60 = 180 microdollars per million
        // tokens each → 0.00018 USD.
        let cost = mini().cost("gpt-4o-mini", Tier::Standard, &usage(1000, 400, 100));
        assert_eq!(cost.map(|c| c.to_string()), Some("0.00018".into()));
    }

    #[test]
    fn each_tier_bills_at_its_price_and_a_missing_tier_at_standard() {
        let table = mini();
        let u = usage(1_000_000, 0, 1_000_000);
        let at = |tier| table.cost("gpt-4o-mini-2024-07-18", tier, &u).unwrap();
        assert_eq!(at(Tier::Standard).to_string(), "0.75");
        assert_eq!(at(Tier::Batch).to_string(), "0.375");
        assert_eq!(at(Tier::Flex).to_string(), "0.75");
    }

    #[test]
    fn a_model_without_a_price_has_no_cost() {
        assert_eq!(mini().cost("gpt-4o", Tier::Standard, &usage(1, 0, 1)), None);
        let mut sum = UsageByModel::default();
        sum.add("gpt-4o-mini", Tier::Standard, &usage(1, 0, 1));
        assert!(mini().cost_of_all(&sum).is_some());
        sum.add("gpt-4o", Tier::Standard, &usage(1, 0, 1));
        assert_eq!(mini().cost_of_all(&sum), None);
    }

    #[test]
    fn a_million_small_costs_sum_without_drift() {
        // 0.1 + 0.2 in floats is not 0.3; in picodollars every sum is exact.
        let table = mini();
        let mut sum = Cost::default();
        for _ in 0..1_000_000 {
            sum = sum.plus(
                table
                    .cost("gpt-4o-mini", Tier::Standard, &usage(1, 0, 0))
                    .unwrap(),
            );
        }
        assert_eq!(sum.to_string(), "0.15");
        assert_eq!(Cost(0).to_string(), "0");
        assert_eq!(Cost(1).to_string(), "0.000000000001");
    }

    #[test]
    fn the_response_says_flex_and_everything_else_bills_at_the_given_tier() {
        assert_eq!(Tier::of_response(Some("flex"), Tier::Standard), Tier::Flex);
        assert_eq!(
            Tier::of_response(Some("default"), Tier::Standard),
            Tier::Standard
        );
        assert_eq!(Tier::of_response(None, Tier::Batch), Tier::Batch);
    }

    #[test]
    fn a_provider_batch_line_bills_at_the_batch_tier_whatever_its_response_says() {
        for said in [None, Some("default"), Some("flex")] {
            assert_eq!(
                Tier::of_batch_line(LineRun::ProviderBatch, said),
                Tier::Batch
            );
        }
    }

    #[test]
    fn a_gateway_line_bills_at_the_tier_its_response_names_or_else_as_sent() {
        let standard = LineRun::Gateway { flex: false };
        let flex = LineRun::Gateway { flex: true };
        assert_eq!(Tier::of_batch_line(standard, None), Tier::Standard);
        assert_eq!(
            Tier::of_batch_line(standard, Some("default")),
            Tier::Standard
        );
        assert_eq!(Tier::of_batch_line(flex, None), Tier::Flex);
        assert_eq!(Tier::of_batch_line(flex, Some("flex")), Tier::Flex);
        // Asked for flex, ran at the standard tier: billed as standard.
        assert_eq!(Tier::of_batch_line(flex, Some("default")), Tier::Standard);
    }

    #[test]
    fn every_tier_has_its_own_letter() {
        for tier in Tier::ALL {
            assert_eq!(Tier::of_letter(tier.letter()), Some(tier));
            assert_eq!(Tier::parse(tier.as_str()), Some(tier));
        }
        assert_eq!(Tier::of_letter(b'x'), None);
    }

    #[test]
    fn a_completion_head_reads_model_tier_and_usage_in_one_pass() {
        let body = r#"{"model":"m","service_tier":"flex","choices":[],
            "usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7,
                     "prompt_tokens_details":{"cached_tokens":1}}}"#;
        let head = CompletionHead::parse(body).unwrap();
        assert_eq!(head.model.as_deref(), Some("m"));
        assert_eq!(head.service_tier.as_deref(), Some("flex"));
        assert_eq!(head.usage, Usage::of_completion(body));
        assert_eq!(head.usage.cached_tokens, 1);
        assert_eq!(CompletionHead::parse("{}"), Some(CompletionHead::default()));
        assert_eq!(CompletionHead::parse("not json"), None);
    }

    #[test]
    fn usage_by_model_round_trips_through_its_stored_form_and_sums() {
        let mut sum = UsageByModel::default();
        sum.add("b", Tier::Flex, &usage(3, 0, 4));
        sum.add("a", Tier::Standard, &usage(1, 0, 2));
        sum.add("a", Tier::Standard, &usage(1, 0, 2));
        let json = serde_json::to_string(&sum).unwrap();
        let back: UsageByModel = serde_json::from_str(&json).unwrap();
        assert_eq!(back, sum);
        assert_eq!(back.total(), usage(5, 0, 8));
        let first = back.entries().next().unwrap();
        assert_eq!((first.0.model.as_str(), first.1.requests), ("a", 2));
    }

    #[test]
    fn a_completion_names_its_model_tier_and_usage() {
        let body = r#"{"model":"gpt-4o-mini-2024-07-18","service_tier":"flex",
            "usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}}"#;
        let billed = Billed::of_completion(body, Some("gpt-4o-mini"), Tier::Standard).unwrap();
        assert_eq!(billed.model, "gpt-4o-mini-2024-07-18");
        assert_eq!(billed.tier, Tier::Flex);
        assert_eq!(billed.usage.total_tokens, 12);
        let bare = Billed::of_completion("{}", Some("m"), Tier::Batch).unwrap();
        assert_eq!((bare.model.as_str(), bare.tier), ("m", Tier::Batch));
        assert_eq!(Billed::of_completion("{}", None, Tier::Standard), None);
    }
}
