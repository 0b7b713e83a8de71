//! The `vakt` binary: parses arguments, runs the command, turns the outcome into an exit code.

// mimalloc: the pipeline allocates many small strings per event; the system allocator
// cost a third of the pipeline's time in `cargo bench -p vakt-core` (see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    vakt::cli::main()
}
