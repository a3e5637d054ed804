//! A batch's status and the outcome a finalized batch ends with: the state machine's names
//! and the sets (terminal, cancellable) the rules and the stores' conditional writes use.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BatchStatus {
    Validating,
    Failed,
    InProgress,
    Finalizing,
    Completed,
    Expired,
    Cancelling,
    Cancelled,
}

impl BatchStatus {
    pub const ALL: [BatchStatus; 8] = [
        BatchStatus::Validating,
        BatchStatus::Failed,
        BatchStatus::InProgress,
        BatchStatus::Finalizing,
        BatchStatus::Completed,
        BatchStatus::Expired,
        BatchStatus::Cancelling,
        BatchStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BatchStatus::Validating => "validating",
            BatchStatus::Failed => "failed",
            BatchStatus::InProgress => "in_progress",
            BatchStatus::Finalizing => "finalizing",
            BatchStatus::Completed => "completed",
            BatchStatus::Expired => "expired",
            BatchStatus::Cancelling => "cancelling",
            BatchStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// The statuses a batch never leaves: what counts as no longer active.
    pub const TERMINAL: [BatchStatus; 4] = [
        BatchStatus::Failed,
        BatchStatus::Completed,
        BatchStatus::Expired,
        BatchStatus::Cancelled,
    ];

    /// The statuses a cancel moves to `cancelling`.
    pub const CANCELLABLE: [BatchStatus; 2] = [BatchStatus::Validating, BatchStatus::InProgress];

    pub fn is_terminal(self) -> bool {
        Self::TERMINAL.contains(&self)
    }

    /// Whether a cancel moves this status to `cancelling`: the rule `cancel_decision` applies
    /// and the stores' conditional writes render.
    pub fn is_cancellable(self) -> bool {
        Self::CANCELLABLE.contains(&self)
    }
}

/// How a finalized batch ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BatchOutcome {
    Completed,
    Cancelled,
    Expired,
}

impl BatchOutcome {
    pub fn status(self) -> BatchStatus {
        match self {
            BatchOutcome::Completed => BatchStatus::Completed,
            BatchOutcome::Cancelled => BatchStatus::Cancelled,
            BatchOutcome::Expired => BatchStatus::Expired,
        }
    }

    pub fn as_str(self) -> &'static str {
        self.status().as_str()
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "completed" => Some(BatchOutcome::Completed),
            "cancelled" => Some(BatchOutcome::Cancelled),
            "expired" => Some(BatchOutcome::Expired),
            _ => None,
        }
    }

    /// The error code of lines that never ran, for outcomes that leave some.
    pub fn unrun_line_error(self) -> Option<(&'static str, &'static str)> {
        match self {
            BatchOutcome::Completed => None,
            BatchOutcome::Cancelled => Some((
                "batch_cancelled",
                "This request was not executed because the batch was cancelled.",
            )),
            BatchOutcome::Expired => Some((
                "batch_expired",
                "This request could not be executed before the completion window expired.",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_terminal_set_is_exactly_the_terminal_statuses() {
        let listed: Vec<_> = BatchStatus::ALL
            .into_iter()
            .filter(|s| BatchStatus::TERMINAL.contains(s))
            .collect();
        let terminal: Vec<_> = BatchStatus::ALL
            .into_iter()
            .filter(|s| s.is_terminal())
            .collect();
        assert_eq!(listed, terminal);
    }

    #[test]
    fn only_four_statuses_are_terminal() {
        let terminal: Vec<_> = BatchStatus::ALL
            .into_iter()
            .filter(|s| s.is_terminal())
            .map(BatchStatus::as_str)
            .collect();
        assert_eq!(terminal, ["failed", "completed", "expired", "cancelled"]);
        for s in BatchStatus::ALL {
            assert_eq!(BatchStatus::parse(s.as_str()), Some(s));
        }
    }
}
