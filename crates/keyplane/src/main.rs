//! The keyplane binary: `serve` runs the server, `ecs` makes a signed Alibaba-dialect call,
//! `admin` administers accounts, registration tokens and instances and reads the audit log,
//! `agent` runs on a real host.
//! Thin by design: it parses arguments and calls into the crates.

mod access;
mod admin;
mod agent;
mod client;
mod ecs;
mod ecs_params;
mod emulator;
mod logging;
mod serve;

use clap::{Parser, Subcommand};

/// mimalloc instead of glibc malloc: a DescribeInstances page allocates thousands of small strings
/// and JSON nodes, and glibc's malloc, free and consolidation were a third of the server's time
/// (docs/BENCHMARKS.md, run 9).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "keyplane",
    version,
    about = "A self-hosted SSH key pair control plane"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API server.
    Serve(serve::ServeArgs),
    /// Call an Alibaba ECS action: `keyplane ecs DescribeKeyPairs --KeyPairName 'web*'`.
    Ecs(ecs::EcsArgs),
    /// Administer the server: accounts, registration tokens, instances and the audit log.
    Admin(admin::AdminArgs),
    /// The guest agent of a real Linux host.
    Agent(agent::AgentArgs),
    /// Grants of key pairs to named OS users, and revocation of a key pair everywhere.
    Access(access::AccessArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("keyplane: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve::run(args).await,
            Command::Ecs(args) => ecs::run(args).await,
            Command::Admin(args) => admin::run(args).await,
            Command::Agent(args) => agent::run(args).await,
            Command::Access(args) => access::run(args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("keyplane: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
