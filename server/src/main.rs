fn main() -> std::process::ExitCode {
    gridcase_server::cli::main()
}
