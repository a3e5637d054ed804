//! `prism batches` as a client of a running Prism, over real HTTP: create, get, list and cancel
//! with their table and `--json` output; `batches create --wait` with plain progress lines
//! (stdout a pipe) and, under a pseudo-terminal, with the live bar on a 2,000-line batch and with
//! Ctrl-C cancelling a batch or leaving it running.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod support;

use std::io::{Read, Write};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::cli::{cli, lines, run_json, run_ok, write_input};
use support::{Setup, chat_batch_input};
use tokio::process::Command;

/// Ten lines, three of them refused by the upstream (`mock-400`): both result files.
fn mixed_input(prefix: &str) -> String {
    chat_batch_input(&format!("{prefix}-ok"), "gpt-cli", 7)
        + &chat_batch_input(&format!("{prefix}-bad"), "mock-400-cli", 3)
}

/// The suites' 3 s upstream timeout would end `mock-hang` lines on their own; these tests want
/// them in flight until the batch is cancelled.
fn hanging_calls_wait() -> Setup<'static> {
    Setup {
        workers: "upstream_timeout = \"300s\"",
        ..Setup::default()
    }
}

#[tokio::test]
async fn batches_create_get_list_and_cancel_a_batch() {
    let env = support::start(hanging_calls_wait()).await;
    let input = write_input(
        &env,
        "hang.jsonl",
        &chat_batch_input("h", "mock-hang-cli", 3),
    );
    let created = run_json(
        &env,
        &[
            "batches",
            "create",
            input.to_str().unwrap(),
            "--metadata",
            "team=search",
        ],
    )
    .await;
    let id = created["id"].as_str().unwrap();
    assert_eq!(created["status"], "validating");
    assert_eq!(created["metadata"]["team"], "search");

    let got = run_json(&env, &["batches", "get", id]).await;
    assert_eq!(got["id"], id);
    assert_eq!(got["request_counts"]["completed"], 0);

    let table = run_ok(&env, &["batches", "list", "--limit", "5"]).await;
    let header = table.lines().next().unwrap();
    for column in ["ID", "STATUS", "COMPLETED", "FAILED", "TOTAL", "CREATED"] {
        assert!(header.contains(column), "{table}");
    }
    assert!(table.lines().any(|l| l.contains(id)), "{table}");
    let listed = run_json(&env, &["batches", "list"]).await;
    assert_eq!(listed["object"], "list");
    assert!(
        listed["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["id"] == id)
    );

    let cancelled = run_json(&env, &["batches", "cancel", id]).await;
    assert!(
        ["cancelling", "cancelled"].contains(&cancelled["status"].as_str().unwrap()),
        "{cancelled}"
    );
    let batch = env
        .wait_for_batch(id, &["cancelled"], Duration::from_secs(90))
        .await;
    assert_eq!(batch["status"], "cancelled");
}

#[tokio::test]
async fn batches_create_wait_prints_progress_lines_and_writes_both_files_next_to_the_input() {
    let env = support::start(Setup::default()).await;
    let input = write_input(&env, "mixed.jsonl", &mixed_input("w"));
    let out = run_ok(
        &env,
        &[
            "batches",
            "create",
            input.to_str().unwrap(),
            "--wait",
            "--poll-interval",
            "100ms",
        ],
    )
    .await;
    // stdout is a pipe: plain progress lines, then the batch as a table.
    let id = out
        .split_whitespace()
        .find(|w| w.starts_with("batch_"))
        .unwrap();
    assert!(
        out.lines()
            .any(|l| l.starts_with(&format!("{id} completed: 10 of 10 (7 completed, 3 failed)"))),
        "{out}"
    );
    assert!(
        !out.contains('\u{1b}'),
        "no terminal escapes in plain output: {out:?}"
    );

    let output = input.with_file_name("mixed.output.jsonl");
    let errors = input.with_file_name("mixed.errors.jsonl");
    assert!(
        out.contains(&format!("wrote {}", output.display())),
        "{out}"
    );
    let answered: Vec<_> = lines(&output)
        .iter()
        .map(|l| l["custom_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        answered,
        (0..7).map(|i| format!("w-ok-{i}")).collect::<Vec<_>>()
    );
    let refused = lines(&errors);
    assert_eq!(refused.len(), 3);
    assert!(
        refused.iter().all(|l| l["response"]["status_code"] == 400),
        "{refused:?}"
    );

    // `batches output` writes the same files' content.
    let printed = run_ok(&env, &["batches", "output", id]).await;
    assert_eq!(printed, std::fs::read_to_string(&output).unwrap());
    let copy = env.dir.path().join("copy.jsonl");
    run_ok(
        &env,
        &[
            "batches",
            "output",
            id,
            "--errors",
            "-o",
            copy.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(
        std::fs::read(&copy).unwrap(),
        std::fs::read(&errors).unwrap()
    );
}

#[tokio::test]
async fn batches_create_wait_json_prints_only_the_finished_batch_on_stdout() {
    let env = support::start(Setup::default()).await;
    let input = write_input(
        &env,
        "json.jsonl",
        &chat_batch_input("j", "gpt-cli-json", 4),
    );
    let output = cli(&env, &env.alpha)
        .args([
            "batches",
            "create",
            input.to_str().unwrap(),
            "--wait",
            "--json",
        ])
        .args(["--poll-interval", "100ms"])
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let batch: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(batch["status"], "completed");
    assert_eq!(batch["request_counts"]["completed"], 4);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("completed: 4 of 4"), "{stderr}");
    assert_eq!(lines(&input.with_file_name("json.output.jsonl")).len(), 4);
    assert!(!input.with_file_name("json.errors.jsonl").exists());
}

/// A child process on a pseudo-terminal (its stdin, stdout and stderr), with everything it
/// writes collected by a reader thread.
struct Terminal {
    master: std::fs::File,
    screen: Arc<Mutex<Vec<u8>>>,
}

impl Terminal {
    fn open() -> (Self, std::fs::File) {
        use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
        let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).unwrap();
        grantpt(&master).unwrap();
        unlockpt(&master).unwrap();
        let winsize = rustix::termios::Winsize {
            ws_row: 40,
            ws_col: 160,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        rustix::termios::tcsetwinsize(&master, winsize).unwrap();
        let name = ptsname(&master, Vec::new()).unwrap();
        let slave = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(name.to_str().unwrap())
            .unwrap();
        let master = std::fs::File::from(master);
        let screen = Arc::new(Mutex::new(Vec::new()));
        let mut reader = master.try_clone().unwrap();
        let collected = screen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // Ends with EIO once the child closed its side.
            while let Ok(n @ 1..) = reader.read(&mut buf) {
                collected.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        (Self { master, screen }, slave)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.screen.lock().unwrap()).into_owned()
    }

    async fn wait_for_text(&self, needle: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.text().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "no {needle:?} on the terminal:\n{}",
                self.text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn type_line(&mut self, line: &str) {
        self.master
            .write_all(format!("{line}\n").as_bytes())
            .unwrap();
    }
}

fn on_terminal(command: &mut Command, slave: &std::fs::File) {
    command
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave.try_clone().unwrap()));
}

#[tokio::test]
async fn batches_create_wait_on_a_terminal_shows_a_live_bar_for_2000_lines_and_writes_both_files() {
    let env = support::start(Setup::default()).await;
    let text =
        chat_batch_input("ok", "gpt-cli-pty", 1990) + &chat_batch_input("bad", "mock-400-pty", 10);
    let input = write_input(&env, "big.jsonl", &text);
    let (terminal, slave) = Terminal::open();
    let mut command = cli(&env, &env.alpha);
    command.args(["batches", "create", input.to_str().unwrap(), "--wait"]);
    command.args(["--poll-interval", "200ms"]);
    on_terminal(&mut command, &slave);
    let mut child = command.spawn().unwrap();
    drop(slave);
    let status = tokio::time::timeout(Duration::from_secs(300), child.wait())
        .await
        .unwrap_or_else(|_| panic!("still running; terminal:\n{}", terminal.text()))
        .unwrap();
    // Let the reader drain what the child wrote last.
    terminal
        .wait_for_text("big.errors.jsonl", Duration::from_secs(10))
        .await;
    let screen = terminal.text();
    assert!(status.success(), "{status}; terminal:\n{screen}");
    // The bar, full, with the counts of the finished batch; drawn with terminal control codes.
    assert!(
        screen.contains(&format!("[{}]", "=".repeat(30))),
        "{screen}"
    );
    assert!(
        screen.contains("completed: 2000 of 2000 (1990 completed, 10 failed)"),
        "{screen}"
    );
    assert!(
        screen.contains('\r') || screen.contains('\u{1b}'),
        "{screen:?}"
    );
    // The table of the finished batch starts on a line of its own, below the bar.
    assert!(
        screen.lines().any(|l| l.trim_start().starts_with("ID ")),
        "{screen:?}"
    );

    assert_eq!(lines(&input.with_file_name("big.output.jsonl")).len(), 1990);
    let errors = lines(&input.with_file_name("big.errors.jsonl"));
    assert_eq!(errors.len(), 10);
    assert!(
        errors
            .iter()
            .all(|l| l["custom_id"].as_str().unwrap().starts_with("bad-"))
    );
}

#[tokio::test]
async fn ctrl_c_while_waiting_asks_and_yes_cancels_the_batch() {
    let env = support::start(hanging_calls_wait()).await;
    let input = write_input(
        &env,
        "stuck.jsonl",
        &chat_batch_input("s", "mock-hang-ctrlc", 3),
    );
    let (mut terminal, slave) = Terminal::open();
    let mut command = cli(&env, &env.alpha);
    command.args(["batches", "create", input.to_str().unwrap(), "--wait"]);
    command.args(["--poll-interval", "200ms"]);
    on_terminal(&mut command, &slave);
    let mut child = command.spawn().unwrap();
    drop(slave);
    terminal
        .wait_for_text("of 3", Duration::from_secs(60))
        .await;

    let pid = rustix::process::Pid::from_raw(i32::try_from(child.id().unwrap()).unwrap()).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    terminal
        .wait_for_text("? [y/N]", Duration::from_secs(10))
        .await;
    terminal.type_line("y");

    let status = tokio::time::timeout(Duration::from_secs(120), child.wait())
        .await
        .unwrap_or_else(|_| panic!("still running; terminal:\n{}", terminal.text()))
        .unwrap();
    terminal
        .wait_for_text("stuck.errors.jsonl", Duration::from_secs(10))
        .await;
    // Ended, but not completed: exit 1.
    assert_eq!(status.code(), Some(1), "terminal:\n{}", terminal.text());
    let errors = lines(&input.with_file_name("stuck.errors.jsonl"));
    assert_eq!(errors.len(), 3);
    assert!(
        errors
            .iter()
            .all(|l| l["error"]["code"] == "batch_cancelled"),
        "{errors:?}"
    );
}

#[tokio::test]
async fn ctrl_c_while_waiting_and_no_leaves_the_batch_running() {
    let env = support::start(hanging_calls_wait()).await;
    let input = write_input(
        &env,
        "left.jsonl",
        &chat_batch_input("l", "mock-hang-left", 2),
    );
    let (mut terminal, slave) = Terminal::open();
    let mut command = cli(&env, &env.alpha);
    command.args(["batches", "create", input.to_str().unwrap(), "--wait"]);
    on_terminal(&mut command, &slave);
    let mut child = command.spawn().unwrap();
    drop(slave);
    terminal.wait_for_text("of ", Duration::from_secs(60)).await;
    let pid = rustix::process::Pid::from_raw(i32::try_from(child.id().unwrap()).unwrap()).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    terminal
        .wait_for_text("? [y/N]", Duration::from_secs(10))
        .await;
    terminal.type_line("n");
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(130), "terminal:\n{}", terminal.text());
    terminal
        .wait_for_text("keeps running", Duration::from_secs(10))
        .await;
    let id = terminal
        .text()
        .split_whitespace()
        .find(|w| w.starts_with("batch_"))
        .unwrap()
        .to_owned();
    let batch: Value = env
        .get(&env.alpha, &format!("/v1/batches/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert!(
        !["cancelling", "cancelled"].contains(&batch["status"].as_str().unwrap()),
        "{batch}"
    );
    assert!(!input.with_file_name("left.output.jsonl").exists());
}
