//! Sessions: a jail that lives across calls, with a Python state per code context, commands and files.

use std::collections::HashMap;
use std::time::Duration;

use crate::jail_sandbox;
use nova_sandbox::session::{Command, Event, Session, SessionSpec, CALL_TIMEOUT};

fn session() -> Option<Session> {
    let sandbox = jail_sandbox(0)?;
    Some(sandbox.open_session(&SessionSpec::default()).expect("a session opens"))
}

/// Every event of a call, in order.
fn events(call: nova_sandbox::session::Call) -> Vec<Event> {
    call.collect()
}

fn code(session: &Session, code: &str) -> Vec<Event> {
    events(session.run_code(code, None, &HashMap::new()).expect("sent"))
}

fn text(events: &[Event], stream: fn(&Event) -> Option<&Vec<u8>>) -> String {
    events.iter().filter_map(stream).map(|b| String::from_utf8_lossy(b).into_owned()).collect()
}

fn stdout(e: &Event) -> Option<&Vec<u8>> {
    if let Event::Stdout(b) = e {
        Some(b)
    } else {
        None
    }
}

fn stderr(e: &Event) -> Option<&Vec<u8>> {
    if let Event::Stderr(b) = e {
        Some(b)
    } else {
        None
    }
}

fn done(events: &[Event]) -> &serde_json::Map<String, serde_json::Value> {
    match events.last() {
        Some(Event::Done(fields)) => fields,
        other => panic!("the call did not end with done: {other:?} in {events:?}"),
    }
}

#[test]
fn variables_survive_from_one_code_run_to_the_next() {
    let Some(session) = session() else { return };
    let first = code(&session, "x = 41");
    assert_eq!(done(&first)["execution_count"], 1);
    let second = code(&session, "print('adding'); x + 1");
    assert_eq!(text(&second, stdout), "adding\n");
    assert!(second.contains(&Event::Result("42".into())), "{second:?}");
    assert_eq!(done(&second)["execution_count"], 2);
    // Output of processes the code starts reaches the run too, never the session's channel.
    let shell = code(
        &session,
        "import os, sys\nos.system('echo from-the-shell; echo to-stderr >&2')\nprint('e', file=sys.stderr)",
    );
    assert_eq!(text(&shell, stdout), "from-the-shell\n");
    assert_eq!(text(&shell, stderr), "to-stderr\ne\n");
    // A second context has variables of its own.
    let (context, cwd) = session.create_context(None).unwrap();
    assert_eq!(cwd, "/work");
    let other = events(session.run_code("x", Some(&context), &HashMap::new()).unwrap());
    assert!(matches!(&other[0], Event::Error(e) if e.name == "NameError"), "{other:?}");
    assert!(session.contexts().unwrap().iter().any(|(id, _)| *id == context));
}

#[test]
fn exceptions_come_with_their_name_and_traceback() {
    let Some(session) = session() else { return };
    let failed = code(&session, "def f():\n    return 1 / 0\nf()");
    let Some(Event::Error(error)) = failed.iter().find(|e| matches!(e, Event::Error(_))) else {
        panic!("no error in {failed:?}")
    };
    assert_eq!(error.name, "ZeroDivisionError");
    assert_eq!(error.value, "division by zero");
    assert!(error.traceback.contains("line 2, in f"), "{}", error.traceback);
    assert!(!error.traceback.contains("agent"), "the agent's own frames are hidden: {}", error.traceback);
    let syntax = code(&session, "def f(:");
    assert!(matches!(&syntax[0], Event::Error(e) if e.name == "SyntaxError"), "{syntax:?}");
    // The state is still there after a failure.
    let after = code(&session, "f.__name__");
    assert!(after.contains(&Event::Result("'f'".into())), "{after:?}");
}

#[test]
fn a_running_code_run_can_be_interrupted() {
    let Some(session) = session() else { return };
    let mut call =
        session.run_code("import time\nprint('sleeping', flush=True)\ntime.sleep(60)", None, &HashMap::new()).unwrap();
    // The interrupt is sent once the run is under way (its first output has arrived).
    assert!(matches!(call.next_timeout(CALL_TIMEOUT), Some(Event::Stdout(_))));
    session.interrupt(call.id()).unwrap();
    let rest: Vec<Event> = call.collect();
    assert!(matches!(&rest[0], Event::Error(e) if e.name == "KeyboardInterrupt"), "{rest:?}");
    let next = code(&session, "1 + 1");
    assert!(next.contains(&Event::Result("2".into())));
}

#[test]
fn files_written_are_read_by_commands_and_back() {
    let Some(session) = session() else { return };
    let entry = session.write_file("data/input.csv", b"a,b\n1,2\n").unwrap();
    assert_eq!((entry.path.as_str(), entry.kind.as_str(), entry.size), ("/work/data/input.csv", "file", 8));
    let cat = events(
        session
            .spawn(&Command { cmd: "cat data/input.csv; echo oops >&2; exit 3".into(), ..Default::default() })
            .unwrap(),
    );
    assert!(matches!(cat[0], Event::Started { pid } if pid > 2), "{cat:?}");
    assert_eq!(text(&cat, stdout), "a,b\n1,2\n");
    assert_eq!(text(&cat, stderr), "oops\n");
    assert_eq!(done(&cat)["exit_code"], 3);
    // A file the code writes, read back; a large one crosses in several chunks.
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    session.write_file("/tmp/big.bin", &big).unwrap();
    assert_eq!(session.read_file("/tmp/big.bin", 10 << 20).unwrap(), big);
    assert_eq!(session.read_file("/tmp/big.bin", 1000).unwrap_err().kind, "too_large");
    code(&session, "open('made-by-code.txt', 'w').write('hello')");
    assert_eq!(session.read_file("made-by-code.txt", 100).unwrap(), b"hello");
    // Listing, folders, renames and removals.
    assert!(session.make_dir("a/b").unwrap());
    assert!(!session.make_dir("a/b").unwrap());
    session.rename("made-by-code.txt", "a/b/moved.txt").unwrap();
    let names: Vec<String> = session.list("a", 2).unwrap().into_iter().map(|e| e.path).collect();
    assert_eq!(names, ["/work/a/b", "/work/a/b/moved.txt"]);
    session.remove("a").unwrap();
    assert_eq!(session.stat("a").unwrap_err().kind, "not_found");
    assert_eq!(session.read_file("/etc/no-such-file", 10).unwrap_err().kind, "not_found");
    // The root outside /work and /tmp is read-only.
    assert!(session.write_file("/usr/evil", b"x").is_err());
}

#[test]
fn background_commands_are_listed_fed_and_killed() {
    let Some(session) = session() else { return };
    let command = Command { cmd: "sleep 300".into(), tag: Some("sleeper".into()), ..Default::default() };
    let mut sleeper = session.spawn(&command).unwrap();
    let Some(Event::Started { pid }) = sleeper.next_timeout(CALL_TIMEOUT) else { panic!("not started") };
    let listed = session.processes().unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!((listed[0].pid, listed[0].cmd.as_str(), listed[0].tag.as_deref()), (pid, "sleep 300", Some("sleeper")));
    // A command reading its input.
    let reader = Command { cmd: "read line; echo got $line".into(), stdin: true, ..Default::default() };
    let mut echo = session.spawn(&reader).unwrap();
    let Some(Event::Started { pid: reader_pid }) = echo.next_timeout(CALL_TIMEOUT) else { panic!("not started") };
    session.send_input(reader_pid, b"hello\n").unwrap();
    let rest: Vec<Event> = echo.collect();
    assert_eq!(text(&rest, stdout), "got hello\n");
    session.signal(pid, 9).unwrap();
    let end: Vec<Event> = sleeper.collect();
    assert_eq!(done(&end)["signal"], 9);
    assert!(session.processes().unwrap().is_empty());
    assert_eq!(session.signal(pid, 9).unwrap_err().kind, "not_found");
}

#[test]
fn a_session_opened_on_a_pooled_sandbox_leaves_the_pool_full() {
    let Some(sandbox) = jail_sandbox(1) else { return };
    assert!(sandbox.wait_warm(Duration::from_secs(20)));
    let built = sandbox.jails_started();
    let session = sandbox.open_session(&SessionSpec::default()).unwrap();
    // One jail built in all, and the pool full again. (This does not tell a warm jail taken and replaced
    // from a cold one built for the session: `nova bench sandbox` shows which, by the time a session takes.)
    assert!(sandbox.wait_warm(Duration::from_secs(20)), "the pool is full again");
    assert_eq!(sandbox.jails_started(), built + 1);
    assert!(code(&session, "2 ** 10").contains(&Event::Result("1024".into())));
    assert!(session.memory().is_some_and(|m| m > 0));
    session.close();
    let end = session.wait_ended(Duration::from_secs(10)).expect("ended");
    assert_eq!(end.reason, "closed");
}
