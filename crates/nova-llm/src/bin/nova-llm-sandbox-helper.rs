//! The jail helper for this crate's tests (the `nova` binary plays this part in production).
fn main() {
    nova_sandbox::jail::helper_main();
}
