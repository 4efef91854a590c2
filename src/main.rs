fn main() -> std::process::ExitCode {
    teeform::cli::main()
}
