fn main() -> std::process::ExitCode {
    tokenbrokerd::run::main()
}
