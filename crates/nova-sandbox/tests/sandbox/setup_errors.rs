//! A jail that cannot be built says which step failed, and nothing runs: the step arrives as its
//! [`SetupError`] variant (rebuilt from its code and errno on this side of the helper's pipes), and the
//! outcome of [`Sandbox::exec`] names it in words.

use std::io;

use nova_sandbox::jail::{JailConfig, JailError, JailSandbox, SetupError};
use nova_sandbox::{Cancel, ExecRequest, InputFile, Sandbox, Status};

fn config() -> JailConfig {
    JailConfig::detect(env!("CARGO_BIN_EXE_nova-sandbox-helper"), &[]).expect("python3 on PATH")
}

fn program() -> ExecRequest {
    ExecRequest { code: "print('ran')".into(), ..Default::default() }
}

#[test]
fn a_missing_runtime_path_names_the_step() {
    if JailSandbox::new(config()).check().is_err() {
        return; // No jail on this host at all: covered by the precheck's own message.
    }
    let mut config = config();
    config.python.binds.push("/nonexistent/nova-runtime".into());
    let sandbox = JailSandbox::new(config);
    // The jail's init failed, told the helper, which told us: the same step, with the same errno.
    let error = sandbox.try_exec(&program(), &Cancel::new()).unwrap_err();
    assert!(
        matches!(&error, JailError::Setup(SetupError::OpenRuntimePaths(e)) if e.kind() == io::ErrorKind::NotFound),
        "{error:?}"
    );
    assert_eq!(error.step().map(SetupError::code), Some("open_runtime_paths"));
    // The trait's outcome says it in words.
    let outcome = sandbox.exec(&program());
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
    let error = sandbox.try_exec(&program(), &Cancel::new()).unwrap_err();
    assert!(
        matches!(&error, JailError::StartHelper { source, .. } if source.kind() == io::ErrorKind::NotFound),
        "{error:?}"
    );
    assert!(error.step().is_none());
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
    let request = ExecRequest { network: true, ..program() };
    let error = sandbox.try_exec(&request, &Cancel::new()).unwrap_err();
    assert!(matches!(error, JailError::Run(SetupError::NetworkToolMissing)), "{error:?}");
    let outcome = sandbox.exec(&request);
    assert_eq!(outcome.status, Status::SandboxError);
    assert!(outcome.stdout.is_empty(), "the program ran without its network policy");
    let error = outcome.error.unwrap();
    assert!(error.contains("Debian package `slirp4netns`"), "{error}");
    // The same jail still runs programs without network.
    let outcome = sandbox.exec(&program());
    assert_eq!(outcome.stdout, b"ran\n");
}

#[test]
fn a_step_of_the_runs_init_crosses_both_pipes_with_its_words() {
    if JailSandbox::new(config()).check().is_err() {
        return; // No jail on this host at all: covered by the precheck's own message.
    }
    let sandbox = JailSandbox::new(config());
    let planted = InputFile { path: "../outside.txt".into(), contents: b"x".to_vec() };
    let request = ExecRequest { files: vec![planted], ..program() };
    // The run's init refused the file (a reason of NOVA's own, no errno), told the helper, which told us.
    let error = sandbox.try_exec(&request, &Cancel::new()).unwrap_err();
    let JailError::Run(SetupError::WriteInputFiles(cause)) = &error else { panic!("{error:?}") };
    assert!(cause.to_string().contains("is not a plain relative path"), "{cause}");
    assert_eq!(error.step().map(SetupError::code), Some("write_input_files"));
    let outcome = sandbox.exec(&request);
    assert_eq!(outcome.status, Status::SandboxError);
    assert!(outcome.stdout.is_empty());
    let error = outcome.error.unwrap();
    assert!(error.starts_with("writing the input files: "), "{error}");
}

#[test]
fn an_execution_that_ran_is_not_an_error() {
    if JailSandbox::new(config()).check().is_err() {
        return; // No jail on this host at all: covered by the precheck's own message.
    }
    let sandbox = JailSandbox::new(config());
    let failing = ExecRequest { code: "raise SystemExit(3)".into(), ..Default::default() };
    let outcome = sandbox.try_exec(&failing, &Cancel::new()).expect("the program ran");
    assert_eq!((outcome.status, outcome.exit_code), (Status::NonzeroExit, Some(3)));
    let cancel = Cancel::new();
    cancel.cancel();
    assert_eq!(sandbox.try_exec(&program(), &cancel).expect("not run").status, Status::Canceled);
}
