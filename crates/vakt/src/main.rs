//! The `vakt` binary: parses arguments, runs the command, turns the outcome into an exit code.

fn main() -> std::process::ExitCode {
    vakt::cli::main()
}
