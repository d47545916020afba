//! A jail that cannot be built says which step failed, and nothing runs.

use nova_sandbox::jail::{JailConfig, JailSandbox};
use nova_sandbox::{ExecRequest, Sandbox, Status};

fn config() -> JailConfig {
    JailConfig::detect(env!("CARGO_BIN_EXE_nova-sandbox-helper"), &[]).expect("python3 on PATH")
}

#[test]
fn a_missing_runtime_path_names_the_step() {
    if JailSandbox::new(config()).check().is_err() {
        return; // No jail on this host at all: covered by the precheck's own message.
    }
    let mut config = config();
    config.python.binds.push("/nonexistent/nova-runtime".into());
    let outcome = JailSandbox::new(config).exec(&ExecRequest { code: "print('ran')".into(), ..Default::default() });
    assert_eq!(outcome.status, Status::SandboxError);
    assert!(outcome.stdout.is_empty());
    let error = outcome.error.unwrap();
    assert!(error.contains("opening the runtime's paths"), "{error}");
}

#[test]
fn a_missing_helper_is_a_sandbox_error() {
    let mut config = config();
    config.helper = "/nonexistent/nova".into();
    let sandbox = JailSandbox::new(config);
    let error = sandbox.check().unwrap_err();
    assert!(error.contains("starting the jail helper"), "{error}");
}

#[test]
fn network_without_its_tool_is_a_sandbox_error_naming_the_package() {
    if JailSandbox::new(config()).check().is_err() {
        return; // No jail on this host at all: covered by the precheck's own message.
    }
    let mut config = config();
    config.network_tool = Some("/nonexistent/slirp4netns".into());
    let sandbox = JailSandbox::new(config);
    let request = ExecRequest { code: "print('ran')".into(), network: true, ..Default::default() };
    let outcome = sandbox.exec(&request);
    assert_eq!(outcome.status, Status::SandboxError);
    assert!(outcome.stdout.is_empty(), "the program ran without its network policy");
    let error = outcome.error.unwrap();
    assert!(error.contains("Debian package `slirp4netns`"), "{error}");
    // The same jail still runs programs without network.
    let outcome = sandbox.exec(&ExecRequest { code: "print('ran')".into(), ..Default::default() });
    assert_eq!(outcome.stdout, b"ran\n");
}
