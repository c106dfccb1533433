//! Compiling a component in a process of its own, so that one compilation's time and
//! memory are bounded: Cranelift cannot be interrupted, and inside the host its memory
//! would be the host's. The host runs its own binary (`guildhall compile-component`) with
//! the component on stdin; the child limits its own address space and CPU time
//! (`setrlimit`) before it allocates anything much, compiles, and writes the compiled
//! artifact to stdout. The host kills it past the wall-clock limit. What it gets back is
//! what `Engine::precompile_component` of a compatible engine made (its compatibility is
//! checked again when the host deserializes it).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use wasmtime::{Config, Engine};

use crate::world::PluginError;

/// Set in the child's environment: what it may use, and that it is the compiler.
pub const CHILD_ENV: &str = "GUILDHALL_COMPILER_CHILD";
const MEMORY_ENV: &str = "GUILDHALL_COMPILER_MEMORY_BYTES";
const CPU_ENV: &str = "GUILDHALL_COMPILER_CPU_SECONDS";

/// How to run the compiler process and what it may use.
#[derive(Debug, Clone)]
pub struct CompilerProcess {
    /// The program and its arguments (the host: its own binary and `compile-component`).
    pub program: PathBuf,
    pub args: Vec<String>,
    /// Wall-clock time; past it the process is killed. Its CPU time (all its threads
    /// together) is capped at that per core, so that a compiler whose host died ends too.
    pub time_limit: Duration,
    /// Address space of the process (`RLIMIT_AS`): the compiler's heap, its threads'
    /// stacks and the engine's code memory together.
    pub memory_limit_bytes: u64,
}

/// The engine settings that decide what compiled code looks like: the host's engine and
/// the compiler process's both start from these, so that the artifact fits the host.
/// (Instance allocation is not among them: the compiler allocates no instances.)
pub(crate) fn compiler_settings() -> Config {
    let mut wasm = Config::new();
    wasm.wasm_component_model(true)
        .epoch_interruption(true)
        // Component-model async adds cost to every call and nothing plugins need.
        .concurrency_support(false)
        .max_wasm_stack(512 << 10);
    wasm
}

/// The host's side: compiles `bytes` in a compiler process.
pub(crate) fn compile_in_child(spec: &CompilerProcess, bytes: &[u8]) -> Result<Vec<u8>, PluginError> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let cpu_seconds = (spec.time_limit.as_secs_f64().ceil() as u64).max(1) * cores;
    let mut child = Command::new(&spec.program)
        .args(&spec.args)
        .env(CHILD_ENV, "1")
        .env(MEMORY_ENV, spec.memory_limit_bytes.to_string())
        .env(CPU_ENV, cpu_seconds.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| PluginError::Compile(format!("cannot start the compiler process: {e}")))?;
    let started = Instant::now();
    // Feed and drain on threads of their own: the pipes fill up otherwise.
    let mut stdin = child.stdin.take().expect("piped");
    let input = bytes.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&input); // a child that died early closes the pipe
    });
    // The artifact is no larger than the memory the compiler could hold it in.
    let (stdout, most) = (child.stdout.take().expect("piped"), spec.memory_limit_bytes);
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        stdout.take(most).read_to_end(&mut out).map(|_| out)
    });
    // Its message, the first 4 KiB of it; the rest is read and dropped, so that a long
    // one never blocks the compiler on a full pipe.
    let mut stderr = child.stderr.take().expect("piped");
    let errors = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = stderr.by_ref().take(4096).read_to_end(&mut out);
        let _ = std::io::copy(&mut stderr, &mut std::io::sink());
        String::from_utf8_lossy(&out).into_owned()
    });
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if started.elapsed() >= spec.time_limit => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(PluginError::Compile(format!("the compiler process: {e}"))),
        }
    };
    let _ = feeder.join();
    let artifact = reader.join().map_err(|_| PluginError::Compile("reading the compiler's output".into()))?;
    let errors = errors.join().unwrap_or_default();
    let limits = || {
        format!(
            "compiling it took more than the compiler's limits ({} s, {} MiB)",
            spec.time_limit.as_secs_f64(),
            spec.memory_limit_bytes >> 20
        )
    };
    match status {
        None => Err(PluginError::Compile(limits())),
        Some(status) if status.success() => {
            artifact.map_err(|e| PluginError::Compile(format!("reading the compiler's output: {e}")))
        }
        // The compiler's own refusal (not a component wasmtime compiles): its message.
        Some(status) if status.code() == Some(EXIT_REFUSED) => Err(PluginError::Compile(errors.trim().to_owned())),
        // Killed (CPU limit) or aborted (out of memory).
        Some(_) => Err(PluginError::Compile(limits())),
    }
}

/// The child's exit code when wasmtime refused the component (as opposed to a limit).
const EXIT_REFUSED: i32 = 3;

/// The child's side (`guildhall compile-component`): limits itself as its environment
/// says, reads a component from stdin, writes its compiled form to stdout. Returns the
/// process's exit code.
pub fn compiler_child_main() -> i32 {
    let limit = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    let (Some(memory), Some(cpu)) = (limit(MEMORY_ENV), limit(CPU_ENV)) else {
        eprintln!("the compiler process is started by the host, with its limits in {MEMORY_ENV} and {CPU_ENV}");
        return 2;
    };
    if let Err(e) = set_limit(libc::RLIMIT_AS, memory).and_then(|_| set_limit(libc::RLIMIT_CPU, cpu)) {
        eprintln!("cannot limit the compiler process: {e}");
        return 2;
    }
    let mut bytes = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut bytes) {
        eprintln!("reading the component: {e}");
        return 2;
    }
    let compiled = Engine::new(&compiler_settings()).and_then(|engine| engine.precompile_component(&bytes));
    match compiled {
        Ok(artifact) => match std::io::stdout().write_all(&artifact).and_then(|_| std::io::stdout().flush()) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("writing the compiled component: {e}");
                2
            }
        },
        Err(e) => {
            eprintln!("{e:#}");
            EXIT_REFUSED
        }
    }
}

fn set_limit(resource: libc::__rlimit_resource_t, value: u64) -> std::io::Result<()> {
    let limit = libc::rlimit { rlim_cur: value, rlim_max: value };
    // SAFETY: setrlimit reads the struct it is given and changes only this process's limits.
    if unsafe { libc::setrlimit(resource, &limit) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
