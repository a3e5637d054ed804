//! `prism-provision PREFIX`: creates a complete, uniquely named set of the AWS backend's
//! resources on the endpoint the standard `AWS_*` variables name (an emulator such as moto, or a
//! sandbox account) and prints the environment `prism` needs to use them, one `NAME=value` per
//! line. For local development and the SDK test suite; deployments use `infra/template.yaml`.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let Some(prefix) = std::env::args().nth(1).filter(|p| !p.is_empty()) else {
        eprintln!("usage: prism-provision PREFIX   (resources are named PREFIX-…)");
        return ExitCode::from(2);
    };
    match prism_aws::provision(&prefix, 30).await {
        Ok(settings) => {
            println!("PRISM_BACKEND=aws");
            for (name, value) in settings.to_env() {
                println!("{name}={value}");
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("prism-provision: {error}");
            ExitCode::FAILURE
        }
    }
}
