//! Token usage as a batch sums it, read from a completion's or a response's `usage`.

use serde::{Deserialize, Serialize};

/// Token usage summed over the batch's successful lines, in the Batch object's shape.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub cached_tokens: u64,
    pub output_tokens: u64,
    pub reasoning_tokens: u64,
    pub total_tokens: u64,
}

impl Usage {
    pub fn add(&mut self, other: &Usage) {
        self.input_tokens += other.input_tokens;
        self.cached_tokens += other.cached_tokens;
        self.output_tokens += other.output_tokens;
        self.reasoning_tokens += other.reasoning_tokens;
        self.total_tokens += other.total_tokens;
    }

    /// Reads a chat completion's `usage`; missing fields count as zero. (A body whose bill is
    /// wanted too is read once, by `pricing::CompletionHead`.)
    pub fn of_completion(body: &str) -> Usage {
        #[derive(Deserialize)]
        struct Completion {
            #[serde(default)]
            usage: Option<RawUsage>,
        }
        serde_json::from_str::<Completion>(body)
            .ok()
            .and_then(|c| c.usage)
            .map(Usage::from)
            .unwrap_or_default()
    }
}

/// A completion's `usage` as the body has it. Chat completions and embeddings name tokens
/// `prompt`/`completion`; the Responses API names the same counts `input`/`output`.
#[derive(Debug, Deserialize, Default)]
pub(crate) struct RawUsage {
    #[serde(default, alias = "input_tokens")]
    prompt_tokens: u64,
    #[serde(default, alias = "output_tokens")]
    completion_tokens: u64,
    #[serde(default)]
    total_tokens: u64,
    #[serde(default, alias = "input_tokens_details")]
    prompt_tokens_details: Option<UsageDetails>,
    #[serde(default, alias = "output_tokens_details")]
    completion_tokens_details: Option<UsageDetails>,
}

#[derive(Debug, Deserialize, Default)]
struct UsageDetails {
    #[serde(default)]
    cached_tokens: u64,
    #[serde(default)]
    reasoning_tokens: u64,
}

impl From<RawUsage> for Usage {
    fn from(raw: RawUsage) -> Usage {
        Usage {
            input_tokens: raw.prompt_tokens,
            cached_tokens: raw.prompt_tokens_details.map_or(0, |d| d.cached_tokens),
            output_tokens: raw.completion_tokens,
            reasoning_tokens: raw
                .completion_tokens_details
                .map_or(0, |d| d.reasoning_tokens),
            total_tokens: raw.total_tokens,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_is_read_from_a_completion_and_summed() {
        let body = r#"{"usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12,
            "prompt_tokens_details":{"cached_tokens":2},"completion_tokens_details":{"reasoning_tokens":1}}}"#;
        let mut sum = Usage::of_completion(body);
        sum.add(&Usage::of_completion(body));
        assert_eq!(
            sum,
            Usage {
                input_tokens: 10,
                cached_tokens: 4,
                output_tokens: 14,
                reasoning_tokens: 2,
                total_tokens: 24
            }
        );
        assert_eq!(Usage::of_completion("not json"), Usage::default());
    }

    #[test]
    fn usage_is_read_from_a_response_under_the_responses_apis_names() {
        let body = r#"{"usage":{"input_tokens":5,"output_tokens":7,"total_tokens":12,
            "input_tokens_details":{"cached_tokens":2},"output_tokens_details":{"reasoning_tokens":1}}}"#;
        assert_eq!(
            Usage::of_completion(body),
            Usage {
                input_tokens: 5,
                cached_tokens: 2,
                output_tokens: 7,
                reasoning_tokens: 1,
                total_tokens: 12
            }
        );
    }
}
