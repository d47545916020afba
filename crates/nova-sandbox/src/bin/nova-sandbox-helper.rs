//! The jail helper on its own, for this crate's tests and benchmarks; `nova __jail` is the same thing.

fn main() {
    nova_sandbox::jail::helper_main()
}
