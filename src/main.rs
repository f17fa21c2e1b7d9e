use clap::Parser;

fn main() -> std::process::ExitCode {
    switchboard::cli::main(switchboard::cli::Cli::parse())
}
