//! What the client commands print on stdout: a table for people, or Prism's JSON for scripts.

use std::time::{Duration, UNIX_EPOCH};

use comfy_table::{Table, presets};
use serde::Serialize;

use crate::client::{Batch, FileObject, Job, Page};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
}

impl Format {
    pub fn from_json_flag(json: bool) -> Self {
        if json { Format::Json } else { Format::Table }
    }

    pub fn batch(self, batch: &Batch) {
        self.print(batch, || batch_table(std::slice::from_ref(batch), false));
    }

    pub fn batches(self, page: &Page<Batch>) {
        self.print(page, || batch_table(&page.data, page.has_more));
    }

    pub fn job(self, job: &Job) {
        self.print(job, || job_table(std::slice::from_ref(job), false));
    }

    pub fn jobs(self, page: &Page<Job>) {
        self.print(page, || job_table(&page.data, page.has_more));
    }

    pub fn file(self, file: &FileObject) {
        self.print(file, || file.id.clone());
    }

    fn print(self, value: &impl Serialize, table: impl FnOnce() -> String) {
        match self {
            // The objects came from JSON, so they always serialize back.
            Format::Json => println!(
                "{}",
                serde_json::to_string_pretty(value).unwrap_or_default()
            ),
            Format::Table => println!("{}", table()),
        }
    }
}

fn new_table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table.load_style(presets::NOTHING);
    table.set_header(header.iter().map(|h| h.to_string()));
    table
}

fn more(table: Table, has_more: bool) -> String {
    if has_more {
        format!(
            "{}\n(more: list again with --after and the last id)",
            table.trim_fmt()
        )
    } else {
        table.trim_fmt()
    }
}

fn batch_table(batches: &[Batch], has_more: bool) -> String {
    let mut table = new_table(&[
        "ID",
        "STATUS",
        "COMPLETED",
        "FAILED",
        "TOTAL",
        "CREATED",
        "OUTPUT",
        "ERRORS",
    ]);
    for b in batches {
        let counts = &b.request_counts;
        table.add_row(vec![
            b.id.clone(),
            b.status.clone(),
            counts.completed.to_string(),
            counts.failed.to_string(),
            counts.total.to_string(),
            timestamp(b.created_at),
            b.output_file_id.clone().unwrap_or_else(|| "-".into()),
            b.error_file_id.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    more(table, has_more)
}

fn job_table(jobs: &[Job], has_more: bool) -> String {
    let scheduled = jobs.iter().any(|j| j.scheduled_at.is_some());
    let mut header = vec!["ID", "STATUS", "MODEL", "CREATED"];
    if scheduled {
        header.push("SCHEDULED AT");
    }
    let mut table = new_table(&header);
    for j in jobs {
        let mut row = vec![
            j.id.clone(),
            j.status.clone(),
            j.model.clone().unwrap_or_else(|| "-".into()),
            timestamp(j.created_at),
        ];
        if scheduled {
            row.push(j.scheduled_at.clone().unwrap_or_else(|| "-".into()));
        }
        table.add_row(row);
    }
    more(table, has_more)
}

/// Unix seconds as RFC 3339 in UTC.
fn timestamp(unix_seconds: i64) -> String {
    u64::try_from(unix_seconds)
        .map(|s| humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(s)).to_string())
        .unwrap_or_else(|_| unix_seconds.to_string())
}
