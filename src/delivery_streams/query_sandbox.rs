//! Dynamic partitioning's JQ queries run outside the server process.
//!
//! A MetadataExtractionQuery is a program written by whoever may create a delivery
//! stream, run over records written by whoever may put them. JQ is a full language: a
//! recursive definition (`def f: [f]; f`) overflows the evaluator's stack, `range(1e18)`
//! never ends, `"x" * 1e9` asks for a gigabyte, and jaq offers no step budget, no depth
//! guard and no way to interrupt a running filter. A stack overflow aborts a Rust process
//! whole; a runaway filter holds its thread for ever. So the evaluator runs in a child
//! process (`kinescope query-worker`, the same binary) that the operating system bounds:
//! an address-space limit (`RLIMIT_AS`), no core dumps, and a wall-clock budget per
//! record after which the parent kills it. A record that kills, starves or overruns its
//! worker fails alone (it goes to the error output, as any record the query fails on);
//! the worker is started again for the records after it.
//!
//! The wire between the two is framed over the worker's stdin and stdout:
//! - parent → worker: the query, then each record, each as `u32 LE length, bytes`;
//! - worker → parent: one frame per item, `u8 status (0 ok, 1 error), u32 LE length,
//!   bytes`: first the compile result, then, per record, its partition keys as a JSON
//!   array of `[name, value]` pairs, or the reason the query gave none.
//!
//! The parent bounds what it reads back (a frame is at most [`MAX_FRAME`]), and the
//! number of workers alive at once is bounded by the caller (`DeliveryOptions`).

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

use super::jq::{PartitionKeys, PartitionQuery};

/// The largest frame either side accepts: a record is at most 1,000 KiB, a query at
/// most 5,120 characters, an answer a few partition keys.
pub const MAX_FRAME: usize = 2 << 20;

/// What a worker may use.
#[derive(Debug, Clone)]
pub struct QueryLimits {
    /// Wall-clock time one record's evaluation may take (the first record's includes
    /// the worker's start and the query's compilation).
    pub record_budget: Duration,
    /// The worker's address space, in bytes (`RLIMIT_AS`).
    pub memory_bytes: u64,
}

impl Default for QueryLimits {
    fn default() -> Self {
        QueryLimits { record_budget: Duration::from_millis(500), memory_bytes: 1 << 30 }
    }
}

/// Why a batch could not be evaluated at all (as opposed to one record failing).
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The query does not parse or compile, or cannot even be compiled within budget.
    #[error("{0}")]
    Query(String),
    /// The worker could not be started.
    #[error("the JQ query worker ({program}) could not be started: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
}

/// Runs queries in worker processes of `program` (normally this very binary).
#[derive(Debug, Clone)]
pub struct QuerySandbox {
    program: PathBuf,
    limits: QueryLimits,
}

/// One record's outcome.
pub type KeysOutcome = Result<PartitionKeys, String>;

impl QuerySandbox {
    pub fn new(program: PathBuf, limits: QueryLimits) -> Self {
        QuerySandbox { program, limits }
    }

    /// A sandbox whose workers are this executable (`kinescope query-worker`).
    pub fn this_executable(limits: QueryLimits) -> Self {
        let program = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("kinescope"));
        QuerySandbox::new(program, limits)
    }

    pub fn limits(&self) -> &QueryLimits {
        &self.limits
    }

    /// Compiles `query` and runs it once over `{}` within one record's budget: what
    /// cannot end or crashes on an empty object is refused when the stream is created,
    /// not found out record by record. A query that merely errors on `{}` (most do:
    /// `.ts | strftime(…)`) passes. Blocking.
    pub fn check(&self, query: &str) -> Result<(), SandboxError> {
        let outcome = self.keys(query, Arc::new(vec![b"{}".to_vec()]))?;
        match outcome.into_iter().next() {
            Some(Err(why)) if why.starts_with(OVERRUN) || why.starts_with(CRASHED) => Err(SandboxError::Query(
                format!("MetadataExtractionQuery '{query}' cannot be run on an empty record: {why}"),
            )),
            _ => Ok(()),
        }
    }

    /// Each record's partition keys, in order. Blocking: call from a blocking thread.
    pub fn keys(&self, query: &str, records: Arc<Vec<Vec<u8>>>) -> Result<Vec<KeysOutcome>, SandboxError> {
        let mut outcomes = Vec::with_capacity(records.len());
        while outcomes.len() < records.len() || records.is_empty() {
            let from = outcomes.len();
            let mut worker = Worker::start(&self.program, &self.limits, query, records.clone(), from)?;
            // The compile result, within the first record's budget.
            match worker.next(self.limits.record_budget) {
                Next::Frame(Ok(_)) => {}
                Next::Frame(Err(why)) => return Err(SandboxError::Query(why)),
                Next::Overran | Next::Died => {
                    worker.end();
                    return Err(SandboxError::Query(format!(
                        "MetadataExtractionQuery '{query}' could not be compiled within {} ms.",
                        self.limits.record_budget.as_millis()
                    )));
                }
            }
            if records.is_empty() {
                worker.end();
                break;
            }
            let mut restart = false;
            while outcomes.len() < records.len() && !restart {
                match worker.next(self.limits.record_budget) {
                    Next::Frame(Ok(payload)) => outcomes.push(
                        serde_json::from_slice::<PartitionKeys>(&payload)
                            .map_err(|_| "the query worker answered what is not partition keys".to_string()),
                    ),
                    Next::Frame(Err(why)) => outcomes.push(Err(why)),
                    Next::Overran => {
                        outcomes.push(Err(format!(
                            "{OVERRUN} of {} ms for one record and was stopped",
                            self.limits.record_budget.as_millis()
                        )));
                        restart = true;
                    }
                    Next::Died => {
                        outcomes.push(Err(format!(
                            "{CRASHED} (out of stack or over its memory limit of {} MiB)",
                            self.limits.memory_bytes >> 20
                        )));
                        restart = true;
                    }
                }
            }
            worker.end();
        }
        Ok(outcomes)
    }
}

const OVERRUN: &str = "the query ran over its time budget";
const CRASHED: &str = "the query crashed its evaluator";

enum Next {
    Frame(Result<Vec<u8>, String>),
    Overran,
    Died,
}

/// One worker process, fed by a writer thread and read by a reader thread, so that a
/// worker stuck on one record never blocks the parent on a full pipe.
struct Worker {
    child: Child,
    frames: Receiver<Result<Vec<u8>, String>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Worker {
    fn start(
        program: &PathBuf,
        limits: &QueryLimits,
        query: &str,
        records: Arc<Vec<Vec<u8>>>,
        from: usize,
    ) -> Result<Worker, SandboxError> {
        let mut child = Command::new(program)
            .arg("query-worker")
            .env("KINESCOPE_QUERY_MEMORY_BYTES", limits.memory_bytes.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| SandboxError::Spawn { program: program.display().to_string(), source })?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(SandboxError::Spawn {
                program: program.display().to_string(),
                source: std::io::Error::other("no pipes to the worker"),
            });
        };
        let query = query.as_bytes().to_vec();
        let writer = std::thread::spawn(move || {
            let mut w = BufWriter::new(stdin);
            // A worker that died or was stopped closes the pipe: the write fails, and
            // the reader side reports what happened.
            let _ = (|| -> std::io::Result<()> {
                write_input(&mut w, &query)?;
                for r in &records[from..] {
                    write_input(&mut w, r)?;
                }
                w.flush()
            })();
        });
        let (tx, frames) = mpsc::channel();
        let reader = std::thread::spawn(move || read_frames(stdout, tx));
        Ok(Worker { child, frames, threads: vec![writer, reader] })
    }

    fn next(&mut self, budget: Duration) -> Next {
        match self.frames.recv_timeout(budget) {
            Ok(frame) => Next::Frame(frame),
            Err(RecvTimeoutError::Timeout) => Next::Overran,
            Err(RecvTimeoutError::Disconnected) => Next::Died,
        }
    }

    /// Stops the worker (if it still runs) and reaps it and its threads.
    fn end(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn write_input(w: &mut impl Write, bytes: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(bytes.len()).map_err(|_| std::io::Error::other("an input over 4 GiB"))?;
    w.write_all(&len.to_le_bytes())?;
    w.write_all(bytes)
}

fn read_frames(stdout: ChildStdout, tx: mpsc::Sender<Result<Vec<u8>, String>>) {
    let mut r = BufReader::new(stdout);
    loop {
        let mut head = [0u8; 5];
        if r.read_exact(&mut head).is_err() {
            return;
        }
        let len = u32::from_le_bytes([head[1], head[2], head[3], head[4]]) as usize;
        if len > MAX_FRAME {
            return;
        }
        let mut payload = vec![0u8; len];
        if r.read_exact(&mut payload).is_err() {
            return;
        }
        let frame = match head[0] {
            0 => Ok(payload),
            _ => Err(String::from_utf8_lossy(&payload).into_owned()),
        };
        if tx.send(frame).is_err() {
            return;
        }
    }
}

/// `kinescope query-worker`: limits itself, then serves stdin to stdout.
pub fn worker_main() -> std::process::ExitCode {
    let memory = std::env::var("KINESCOPE_QUERY_MEMORY_BYTES")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(QueryLimits::default().memory_bytes);
    limit_self(memory);
    let stdin = std::io::stdin().lock();
    let stdout = std::io::stdout().lock();
    match serve(BufReader::new(stdin), BufWriter::new(stdout)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(_) => std::process::ExitCode::FAILURE,
    }
}

/// No core file for a crash (a record may be private), and at most `memory` bytes of
/// address space.
fn limit_self(memory: u64) {
    let set = |resource, value: u64| {
        let limit = libc::rlimit { rlim_cur: value as libc::rlim_t, rlim_max: value as libc::rlim_t };
        // SAFETY: setrlimit reads the struct it is given and changes only this process.
        unsafe { libc::setrlimit(resource, &limit) };
    };
    set(libc::RLIMIT_CORE, 0);
    set(libc::RLIMIT_AS, memory);
}

/// The worker's loop over its framed input (pure over the two streams, so it is tested
/// without a process): the query, then records until the input ends.
pub fn serve(mut input: impl Read, mut output: impl Write) -> std::io::Result<()> {
    let Some(query) = read_input(&mut input)? else { return Ok(()) };
    let query = match std::str::from_utf8(&query)
        .map_err(|_| "the query is not UTF-8".to_string())
        .and_then(PartitionQuery::compile)
    {
        Ok(q) => {
            write_frame(&mut output, 0, b"")?;
            q
        }
        Err(why) => return write_frame(&mut output, 1, why.as_bytes()),
    };
    output.flush()?;
    while let Some(record) = read_input(&mut input)? {
        match query.keys(&record) {
            Ok(keys) => {
                let json = serde_json::to_vec(&keys).map_err(std::io::Error::other)?;
                write_frame(&mut output, 0, &json)?
            }
            Err(why) => write_frame(&mut output, 1, why.as_bytes())?,
        }
        output.flush()?;
    }
    Ok(())
}

fn read_input(r: &mut impl Read) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::other("an input frame over the limit"));
    }
    let mut bytes = vec![0u8; len];
    r.read_exact(&mut bytes)?;
    Ok(Some(bytes))
}

fn write_frame(w: &mut impl Write, status: u8, payload: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(payload.len().min(MAX_FRAME)).unwrap_or(u32::MAX);
    w.write_all(&[status])?;
    w.write_all(&len.to_le_bytes())?;
    w.write_all(&payload[..len as usize])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(items: &[&[u8]]) -> Vec<u8> {
        let mut v = Vec::new();
        for i in items {
            write_input(&mut v, i).unwrap();
        }
        v
    }

    fn frames(mut out: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut v = Vec::new();
        while !out.is_empty() {
            let len = u32::from_le_bytes(out[1..5].try_into().unwrap()) as usize;
            v.push((out[0], out[5..5 + len].to_vec()));
            out = &out[5 + len..];
        }
        v
    }

    #[test]
    fn the_worker_loop_answers_each_record_in_order() {
        let input = framed(&[b"{c: .camera}", br#"{"camera":"door"}"#, b"not json", br#"{"camera":"yard"}"#]);
        let mut out = Vec::new();
        serve(&input[..], &mut out).unwrap();
        let f = frames(&out);
        assert_eq!(f.len(), 4);
        assert_eq!(f[0], (0, vec![]));
        assert_eq!(f[1], (0, br#"[["c","door"]]"#.to_vec()));
        assert_eq!(f[2].0, 1);
        assert_eq!(f[3], (0, br#"[["c","yard"]]"#.to_vec()));
    }

    #[test]
    fn a_query_that_does_not_compile_is_one_error_frame() {
        let mut out = Vec::new();
        serve(&framed(&[b"{c: .camera", b"{}"])[..], &mut out).unwrap();
        let f = frames(&out);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].0, 1);
        assert!(String::from_utf8_lossy(&f[0].1).contains("not a valid JQ expression"));
    }

    #[test]
    fn an_oversized_input_frame_ends_the_worker_with_an_error() {
        let mut input = (MAX_FRAME as u32 + 1).to_le_bytes().to_vec();
        input.extend_from_slice(b"x");
        assert!(serve(&input[..], Vec::new()).is_err());
    }
}
