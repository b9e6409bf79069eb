//! The keyplane binary: `serve` runs the server, `ecs` makes a signed Alibaba-dialect call,
//! `admin` administers accounts, registration tokens and instances and reads the audit log,
//! `agent` runs on a real host, `completions` and the hidden `man` describe the CLI itself.
//! Thin by design: it parses arguments and calls into the crates.

mod access;
mod admin;
mod agent;
mod client;
mod config_file;
mod ecs;
mod ecs_params;
mod emulator;
mod logging;
mod serve;

use std::path::PathBuf;

use clap::{CommandFactory, Parser, Subcommand};

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
    /// Print a completion script: `keyplane completions bash > /etc/bash_completion.d/keyplane`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the man pages, keyplane.1 and one per subcommand, into DIR (the package build).
    #[command(hide = true)]
    Man { dir: PathBuf },
}

/// `keyplane completions SHELL`. Written whole at the end: clap_complete panics on a failed write,
/// and a reader that stops early (`| head`) is not an error.
fn completions(shell: clap_complete::Shell) -> anyhow::Result<std::process::ExitCode> {
    use std::io::Write;
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "keyplane", &mut script);
    match std::io::stdout().write_all(&script) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(std::process::ExitCode::SUCCESS),
    }
}

/// `keyplane man DIR`: the pages clap_mangen makes of the CLI's own definition.
fn man_pages(dir: &std::path::Path) -> anyhow::Result<std::process::ExitCode> {
    std::fs::create_dir_all(dir)?;
    clap_mangen::generate_to(Cli::command(), dir)?;
    Ok(std::process::ExitCode::SUCCESS)
}

fn main() -> std::process::ExitCode {
    let mut cli = Cli::parse();
    if let Command::Serve(serve::ServeArgs {
        config: Some(path), ..
    }) = &cli.command
    {
        let cmd = Cli::command();
        let serve = cmd.find_subcommand("serve").expect("serve is a subcommand");
        if let Err(e) = config_file::apply(path, serve) {
            eprintln!("keyplane: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
        // Again, now with the file's values behind the flags and the environment.
        cli = Cli::parse();
    }
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
            Command::Completions { shell } => completions(shell),
            Command::Man { dir } => man_pages(&dir),
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
