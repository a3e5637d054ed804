//! The file's reading: defaults, overrides, durations, refusals, and the providers' keys and modes.

use prism_core::batches::modes::{BatchMode, FlexFallback};

use super::*;

#[test]
fn config_file_overrides_defaults_and_reads_durations() {
    let config: Config = toml::from_str(
        r#"
        [[providers]]
        name = "mock"
        base_url = "http://127.0.0.1:9/v1"
        models = ["mock-*"]
        [workers]
        concurrency = 8
        upstream_timeout = "2s"
        [jobs]
        retention = "7d"
        "#,
    )
    .unwrap();
    assert_eq!(config.workers.concurrency, 8);
    assert_eq!(config.workers.upstream_timeout, Duration::from_secs(2));
    assert_eq!(config.jobs.retention, Duration::from_secs(7 * 86400));
    assert_eq!(config.workers.max_attempts, 5);
    assert_eq!(config.providers[0].api_key_env, None);
}

#[test]
fn providers_choose_a_batch_mode_and_a_flex_fallback() {
    let config = Config::parse(
        r#"
        [[providers]]
        name = "native"
        base_url = "http://127.0.0.1:9/v1"
        models = ["gpt-*"]
        batch = "native"
        [[providers]]
        name = "flex"
        base_url = "http://127.0.0.1:9/v1"
        batch = "flex"
        flex_fallback = "standard"
        "#,
        "test",
    )
    .unwrap();
    let providers = config.providers(|_| None, &HashMap::new());
    assert_eq!(providers[0].batch, BatchMode::Native);
    assert_eq!(providers[0].flex_fallback, FlexFallback::Retry);
    assert_eq!(providers[1].batch, BatchMode::Flex);
    assert_eq!(providers[1].flex_fallback, FlexFallback::Standard);
    assert_eq!(Config::default().providers[0].batch, BatchMode::Gateway);
}

#[test]
fn an_unknown_batch_mode_is_refused_with_the_modes_there_are() {
    let error = Config::parse(
        "[[providers]]\nname = \"p\"\nbase_url = \"http://x/v1\"\nbatch = \"cheap\"\n",
        "test",
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("gateway, native, flex"), "{error}");
}

#[test]
fn storage_section_bounds_the_group_commit_and_keeps_the_other_default() {
    let config = Config::parse("[storage]\ngroup_max_writes = 64\n", "test").unwrap();
    assert_eq!(config.storage.group_max_writes, 64);
    assert_eq!(config.storage.group_max_bytes, 16 * 1024 * 1024);
    assert_eq!(config.storage.group_max_time_us, 2_000);
    assert!(Config::parse("[storage]\ngroup_size = 1\n", "test").is_err());
}

#[test]
fn storage_section_sets_the_writer_priority_and_the_wal_restart_length() {
    let defaults = Config::parse("", "test").unwrap();
    assert_eq!(defaults.storage.writer_nice, 0);
    assert_eq!(defaults.storage.wal_restart_frames, 2048);
    let config = Config::parse(
        "[storage]\nwriter_nice = -10\nwal_restart_frames = 8192\n",
        "test",
    )
    .unwrap();
    assert_eq!(config.storage.writer_nice, -10);
    assert_eq!(config.storage.wal_restart_frames, 8192);
}

#[test]
fn no_config_routes_everything_to_openai_with_its_env_key() {
    let providers = Config::default().providers(
        |name| (name == "OPENAI_API_KEY").then(|| "sk-test".to_owned()),
        &HashMap::new(),
    );
    assert_eq!(providers[0].base_url, "https://api.openai.com/v1");
    assert_eq!(providers[0].models, vec!["*"]);
    assert!(providers[0].api_key.is_some());
}

#[test]
fn provider_key_from_a_secret_wins_over_the_environment() {
    let config = Config::parse(
        r#"
        [[providers]]
        name = "openai"
        base_url = "https://api.openai.com/v1"
        api_key_env = "OPENAI_API_KEY"
        api_key_secret = "prism/openai"
        "#,
        "test",
    )
    .unwrap();
    assert_eq!(config.provider_secrets(), vec!["prism/openai"]);
    let secrets = HashMap::from([("prism/openai".to_owned(), "sk-secret".to_owned())]);
    let providers = config.providers(|_| Some("sk-env".to_owned()), &secrets);
    assert_eq!(providers[0].api_key.as_ref().unwrap().expose(), "sk-secret");
    let providers = config.providers(|_| Some("sk-env".to_owned()), &HashMap::new());
    assert_eq!(providers[0].api_key.as_ref().unwrap().expose(), "sk-env");
}

#[test]
fn unknown_keys_are_rejected() {
    assert!(toml::from_str::<Config>("[workers]\nconcurency = 3").is_err());
}

#[test]
fn the_model_list_cache_ttl_comes_from_the_models_section() {
    assert_eq!(
        Config::default().upstream_options().models_ttl,
        Duration::from_secs(300)
    );
    let config = Config::parse("[models]\ncache_ttl = \"30s\"\n", "test").unwrap();
    assert_eq!(
        config.upstream_options().models_ttl,
        Duration::from_secs(30)
    );
    assert!(Config::parse("[models]\nttl = \"30s\"\n", "test").is_err());
}

#[test]
fn max_receives_of_zero_is_refused_and_one_is_the_smallest_accepted() {
    let with = |max_receives: u32| {
        Config::parse(
            &format!(
                r#"
                [[providers]]
                name = "mock"
                base_url = "http://127.0.0.1:9/v1"
                models = ["mock-*"]
                [workers]
                max_receives = {max_receives}
                "#
            ),
            "test.toml",
        )
    };
    let error = with(0).unwrap_err();
    assert!(
        matches!(&error, ConfigError::Invalid(reason) if reason.contains("workers.max_receives must be at least 1")),
        "{error}"
    );
    assert_eq!(with(1).unwrap().work_policy().max_receives, 1);
}
