//! The allow list as a seccomp program that finds a call's number by binary search.
//!
//! seccompiler lays a filter out as one comparison after another, in the order of the numbers. For the jail's
//! allow list of about 240 calls that is a program of 1213 instructions, with two costs that a deny list of
//! 55 calls did not have (measured on a 2-core machine): installing it took 0.45 ms instead of 0.15 ms, since
//! the kernel runs a new filter over every call number to cache the calls it allows whatever their arguments,
//! and a call with argument rules walks the list up to its number (`getrlimit`'s `prlimit64`, at 302: 0.64 µs
//! instead of 0.39). Every run installs the filter, so this module lays the same list out as a binary search,
//! as libseccomp's optimisation level 2 does: 543 instructions, at most 21 of them run to answer a call
//! without argument rules, 0.13 ms to install, 0.47 µs for `getrlimit`. seccompiler still compiles the
//! `clone3` filter and installs both, and its linear program of the same list is the reference the tests
//! compare this one with, number by number and argument by argument.

use std::collections::BTreeMap;

use seccompiler::{sock_filter, BpfProgram};

/// A comparison of the low 32 bits of one argument, as the kernel reads an `int` or `unsigned int`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Condition {
    /// The argument's index, 0 to 5.
    pub arg: u8,
    pub op: Op,
    pub value: u32,
}

#[derive(Clone, Copy, Debug)]
pub(super) enum Op {
    Eq,
    Ne,
    /// `argument & mask == value`.
    MaskedEq(u32),
}

/// Conditions that must all hold.
pub(super) type Rule = Vec<Condition>;

/// What `seccomp_data.arch` holds for this machine's system calls (linux/audit.h).
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: Option<u32> = Some(62 | 0x8000_0000 | 0x4000_0000);
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: Option<u32> = Some(183 | 0x8000_0000 | 0x4000_0000);
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const AUDIT_ARCH: Option<u32> = None;

/// Bit 30 of a call's number: x32's calls on x86_64 (`__X32_SYSCALL_BIT`), no call elsewhere.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// Numbers the search goes through one by one rather than halving further.
const LEAF: usize = 4;

// The instructions used (linux/bpf_common.h); offsets into `struct seccomp_data`.
const LD_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS: load a 32-bit word of the call's data
const AND_K: u16 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const JA: u16 = 0x05; // BPF_JMP | BPF_JA
const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const JGE_K: u16 = 0x35; // BPF_JMP | BPF_JGE | BPF_K
const RET_K: u16 = 0x06; // BPF_RET | BPF_K
const NR: u32 = 0;
const ARCH: u32 = 4;

/// The program: a call from another ABI kills the process; a call whose number `calls` holds is allowed when
/// it has no rule or when one of its rules holds; every other call gets `refused` (a `SECCOMP_RET_*` value).
pub(super) fn allow_list(calls: &BTreeMap<u32, Vec<Rule>>, refused: u32) -> Result<BpfProgram, String> {
    let arch = AUDIT_ARCH.ok_or("seccomp: no audit architecture known for this machine")?;
    let mut asm = Assembler::default();
    let refuse = asm.label();
    asm.op(LD_ABS, ARCH);
    asm.jump_if(JEQ_K, arch, Target::Skip(1), Target::Next);
    asm.op(RET_K, libc::SECCOMP_RET_KILL_PROCESS);
    asm.op(LD_ABS, NR);
    asm.jump_if(JGE_K, X32_SYSCALL_BIT, Target::Next, Target::Skip(1));
    asm.jump(refuse);
    let numbers: Vec<u32> = calls.keys().copied().collect();
    // The calls with argument rules, each checked in a block of its own after the search.
    let ruled: BTreeMap<u32, Label> =
        calls.iter().filter(|(_, rules)| !rules.is_empty()).map(|(&nr, _)| (nr, asm.label())).collect();
    search(&mut asm, &numbers, &ruled, refused);
    asm.place(refuse);
    asm.op(RET_K, refused);
    for (nr, rules) in calls.iter().filter(|(_, rules)| !rules.is_empty()) {
        asm.place(ruled[nr]);
        for rule in rules {
            check(&mut asm, rule)?;
        }
        asm.op(RET_K, refused);
    }
    asm.finish()
}

/// Branches on the number in the accumulator: halves `numbers` (sorted) down to a few, then compares each;
/// a call without rules is answered on the spot, a call with rules goes on to its block in `ruled`.
fn search(asm: &mut Assembler, numbers: &[u32], ruled: &BTreeMap<u32, Label>, refused: u32) {
    if numbers.len() <= LEAF {
        let allow = asm.label();
        for nr in numbers {
            match ruled.get(nr) {
                None => asm.jump_if(JEQ_K, *nr, Target::Label(allow), Target::Next),
                Some(&rules) => {
                    asm.jump_if(JEQ_K, *nr, Target::Next, Target::Skip(1));
                    asm.jump(rules);
                }
            }
        }
        asm.op(RET_K, refused);
        asm.place(allow);
        asm.op(RET_K, libc::SECCOMP_RET_ALLOW);
        return;
    }
    let (low, high) = numbers.split_at(numbers.len() / 2);
    let upper = asm.label();
    asm.jump_if(JGE_K, high[0], Target::Next, Target::Skip(1));
    asm.jump(upper);
    search(asm, low, ruled, refused);
    asm.place(upper);
    search(asm, high, ruled, refused);
}

/// One rule: each condition loads its argument's low word and tests it; the first that fails goes on to the
/// next rule, and a rule whose conditions all hold allows the call.
fn check(asm: &mut Assembler, rule: &Rule) -> Result<(), String> {
    let next_rule = asm.label();
    for c in rule {
        if c.arg > 5 {
            return Err(format!("seccomp: no argument {}", c.arg));
        }
        // The low word of the 64-bit argument.
        let low = if cfg!(target_endian = "little") { 0 } else { 4 };
        asm.op(LD_ABS, 16 + 8 * u32::from(c.arg) + low);
        match c.op {
            Op::Eq => asm.jump_if(JEQ_K, c.value, Target::Next, Target::Label(next_rule)),
            Op::Ne => asm.jump_if(JEQ_K, c.value, Target::Label(next_rule), Target::Next),
            Op::MaskedEq(mask) => {
                asm.op(AND_K, mask);
                asm.jump_if(JEQ_K, c.value, Target::Next, Target::Label(next_rule));
            }
        }
    }
    asm.op(RET_K, libc::SECCOMP_RET_ALLOW);
    asm.place(next_rule);
    Ok(())
}

/// A place in the program, known once placed; every jump goes forward.
#[derive(Clone, Copy, Debug)]
struct Label(usize);

/// Where a conditional jump goes: the next instruction, past `n` more, or a label (within 255 instructions,
/// the reach of a conditional jump; farther ones go through `JA`).
#[derive(Clone, Copy)]
enum Target {
    Next,
    Skip(u8),
    Label(Label),
}

enum Item {
    Op(u16, u32),
    Jump(Label),
    JumpIf(u16, u32, Target, Target),
}

#[derive(Default)]
struct Assembler {
    items: Vec<Item>,
    /// Each label's position, once placed.
    labels: Vec<Option<usize>>,
}

impl Assembler {
    fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    fn place(&mut self, label: Label) {
        self.labels[label.0] = Some(self.items.len());
    }

    fn op(&mut self, code: u16, k: u32) {
        self.items.push(Item::Op(code, k));
    }

    fn jump(&mut self, to: Label) {
        self.items.push(Item::Jump(to));
    }

    fn jump_if(&mut self, code: u16, k: u32, then: Target, otherwise: Target) {
        self.items.push(Item::JumpIf(code, k, then, otherwise));
    }

    /// The instructions, with every label resolved to a forward offset.
    fn finish(self) -> Result<BpfProgram, String> {
        let offset = |at: usize, label: Label| -> Result<usize, String> {
            let to = self.labels[label.0].ok_or("seccomp: a jump to a label never placed")?;
            to.checked_sub(at + 1).ok_or_else(|| "seccomp: a backward jump".to_string())
        };
        let short = |at: usize, target: Target| -> Result<u8, String> {
            match target {
                Target::Next => Ok(0),
                Target::Skip(n) => Ok(n),
                Target::Label(label) => offset(at, label)?
                    .try_into()
                    .map_err(|_| "seccomp: a conditional jump past 255 instructions".to_string()),
            }
        };
        let program = self
            .items
            .iter()
            .enumerate()
            .map(|(at, item)| {
                Ok(match *item {
                    Item::Op(code, k) => sock_filter { code, jt: 0, jf: 0, k },
                    Item::Jump(label) => {
                        let k = offset(at, label)?.try_into().map_err(|_| "seccomp: program too long")?;
                        sock_filter { code: JA, jt: 0, jf: 0, k }
                    }
                    Item::JumpIf(code, k, then, otherwise) => {
                        sock_filter { code, jt: short(at, then)?, jf: short(at, otherwise)?, k }
                    }
                })
            })
            .collect::<Result<BpfProgram, String>>()?;
        // The kernel's limit (BPF_MAXINSNS).
        if program.len() > 4096 {
            return Err(format!("seccomp: a program of {} instructions, more than the kernel takes", program.len()));
        }
        Ok(program)
    }
}
