/// Every freed allocation is wiped first: buffers of the HTTP, TLS and D-Bus stacks that held a
/// refresh token, a client secret or a password leave nothing behind (docs/SECURITY.md,
/// docs/PERFORMANCE.md for the cost).
#[global_allocator]
static ALLOC: zeroizing_alloc::ZeroAlloc<std::alloc::System> =
    zeroizing_alloc::ZeroAlloc(std::alloc::System);

fn main() -> std::process::ExitCode {
    tokenbrokerd::run::main()
}
