//! The docs cannot go stale: their runnable examples run as shown (links: tests/links.rs).
//!
//! Convention for runnable examples (also in docs/development.md):
//! - A fenced block whose info string is exactly `sh runnable` is run. The runnable blocks of one
//!   Markdown file run in order, in one scratch directory laid out like a clone of the repository
//!   (copies of bundle.yml, samples/ and data/; no lake yet), so `./lakehouse` is a fresh lake.
//!   `boxoffice` is the binary under test, first on the PATH; `cargo run --` is replaced by
//!   `boxoffice`. The dashboard takes any free port (BOXOFFICE_DASHBOARD_PORT=0).
//! - A block runs under `bash -e -o pipefail` and fails at the first command that fails. A
//!   command whose comment says `# exits N` must exit with code N instead.
//! - A ```` ```text output ```` block right after a runnable one (blank lines between are fine)
//!   lists lines the block's output (stdout and stderr together) must contain, in that order.
//!   Every run of digits matches any other, runs of spaces match any spacing, a run of three or
//!   more dashes matches any other (table borders), `...` inside a line matches any text, and a
//!   line that is only `...` stands for lines left out. The scratch directory is shown as
//!   `/home/me/boxoffice`.
//! - A block whose info string has `file=<path>` (```` ```toml file=boxoffice.toml ````) is
//!   written to that path in the scratch directory before the blocks after it run.
//! - Blocks without those markers are not run: commands that need Azure, the Functions host, a
//!   browser, or long durations stay plain ```` ```sh ````.
//!
//! A failure names the Markdown file and line of the failing command or missing output line.

#[path = "common/markdown.rs"]
mod markdown;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use markdown::{Block, blocks, markdown_files, repo};

/// How long one block may run.
const BLOCK_TIMEOUT: Duration = Duration::from_secs(180);

/// How the scratch directory appears in the docs' output.
const SHOWN_AS: &str = "/home/me/boxoffice";

/// What a Markdown file asks the test to do, in order.
enum Step {
    Write { path: String, content: String },
    Run { block: Block, output: Option<Block> },
}

fn steps(file: &Path, text: &str) -> Result<Vec<Step>, String> {
    let mut steps: Vec<Step> = Vec::new();
    for block in blocks(text) {
        let words: Vec<&str> = block.info.split_whitespace().collect();
        let at = format!("{}:{}", file.display(), block.first_line - 1);
        if let Some(path) = words.iter().find_map(|w| w.strip_prefix("file=")) {
            let mut content = block.lines.join("\n");
            content.push('\n');
            steps.push(Step::Write {
                path: path.to_string(),
                content,
            });
        } else if words.contains(&"runnable") {
            if words != ["sh", "runnable"] {
                return Err(format!(
                    "{at}: a runnable block is marked `sh runnable`, not `{}`",
                    block.info
                ));
            }
            steps.push(Step::Run {
                block,
                output: None,
            });
        } else if words.contains(&"output") {
            if words != ["text", "output"] {
                return Err(format!(
                    "{at}: an output block is marked `text output`, not `{}`",
                    block.info
                ));
            }
            match steps.last_mut() {
                Some(Step::Run {
                    output: slot @ None,
                    ..
                }) if block.follows_previous => *slot = Some(block),
                _ => {
                    return Err(format!(
                        "{at}: a `text output` block must come right after a `sh runnable` block"
                    ));
                }
            }
        }
    }
    Ok(steps)
}

/// A scratch directory laid out like a clone, with `boxoffice` on its PATH.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Scratch {
        let dir = tempfile::tempdir().expect("scratch directory");
        for item in ["bundle.yml", "samples", "data"] {
            copy(&repo().join(item), &dir.path().join(item));
        }
        let bin = dir.path().join(".bin");
        std::fs::create_dir(&bin).expect("bin directory");
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_boxoffice"), bin.join("boxoffice"))
            .expect("link the binary");
        Scratch { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

fn copy(from: &Path, to: &Path) {
    if from.is_dir() {
        std::fs::create_dir_all(to).expect("create directory");
        for entry in std::fs::read_dir(from).expect("read directory").flatten() {
            copy(&entry.path(), &to.join(entry.file_name()));
        }
    } else {
        std::fs::copy(from, to).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
    }
}

/// The block as a bash script whose line N+1 is the block's line N.
fn script(block: &Block) -> String {
    let mut lines = vec![
        "set -eE -o pipefail; exec 2>&1; trap 'echo \"@@docs-failed $LINENO $?\"' ERR".to_string(),
    ];
    for line in &block.lines {
        let line = line
            .replace("cargo run --release -- ", "boxoffice ")
            .replace("cargo run -- ", "boxoffice ");
        let expected = line.split_once("# exits ").and_then(|(command, rest)| {
            let code: String = rest.chars().take_while(char::is_ascii_digit).collect();
            code.parse::<i32>().ok().map(|c| (command.to_string(), c))
        });
        lines.push(match expected {
            Some((command, code)) => format!(
                "__rc=0; {command} || __rc=$?; if [ \"$__rc\" -ne {code} ]; then echo \"@@docs-exit $LINENO $__rc\"; exit 99; fi"
            ),
            None => line,
        });
    }
    lines.join("\n") + "\n"
}

/// Runs one block; returns its output (the scratch path shown as the docs show it) or why it
/// failed.
fn run(scratch: &Scratch, file: &Path, block: &Block) -> Result<String, String> {
    let path = format!(
        "{}:{}",
        scratch.path().join(".bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut child = {
        use std::os::unix::process::CommandExt;
        Command::new("bash")
            .arg("-c")
            .arg(script(block))
            .current_dir(scratch.path())
            .env("PATH", path)
            .env("BOXOFFICE_DASHBOARD_PORT", "0")
            .env_remove("BOXOFFICE_LAKE")
            .env_remove("BOXOFFICE_CONFIG")
            .env_remove("AZURE_STORAGE_USE_EMULATOR")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()
            .map_err(|e| format!("bash could not start: {e}"))?
    };
    let mut stdout = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stdout, &mut text);
        String::from_utf8_lossy(&text).into_owned()
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break Some(status);
        }
        if started.elapsed() > BLOCK_TIMEOUT {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = reader.join().unwrap_or_default();
    let mut shown = output.replace(&scratch.path().display().to_string(), SHOWN_AS);
    if let Ok(real) = scratch.path().canonicalize() {
        shown = shown.replace(&real.display().to_string(), SHOWN_AS);
    }
    let doc_line = |script_line: &str| {
        script_line
            .parse::<usize>()
            .map(|n| block.first_line + n.saturating_sub(2))
            .unwrap_or(block.first_line)
    };
    let failed_at = shown.lines().find_map(|l| {
        let (rest, named) = match l.strip_prefix("@@docs-exit ") {
            Some(rest) => (rest, ", not the code its comment names"),
            None => (l.strip_prefix("@@docs-failed ")?, ""),
        };
        let mut words = rest.split_whitespace();
        let line = doc_line(words.next().unwrap_or_default());
        let code = words.next().unwrap_or("?");
        Some((line, format!("exited {code}{named}")))
    });
    let clean: String = shown
        .lines()
        .filter(|l| !l.starts_with("@@docs-"))
        .map(|l| format!("{l}\n"))
        .collect();
    match status {
        None => Err(format!(
            "{}:{}: the example did not finish within {BLOCK_TIMEOUT:?}\n{clean}",
            file.display(),
            block.first_line
        )),
        Some(status) if !status.success() => {
            let (line, what) = failed_at.unwrap_or((block.first_line, status.to_string()));
            let command = block
                .lines
                .get(line - block.first_line)
                .map_or("", |l| l.trim());
            Err(format!(
                "{}:{line}: `{command}` {what}; output:\n{clean}",
                file.display()
            ))
        }
        Some(_) => Ok(clean),
    }
}

/// A line as the output comparison sees it.
fn normalize(line: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = line.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_digit() {
            while i < chars.len()
                && (chars[i].is_ascii_digit()
                    || (matches!(chars[i], ',' | '.')
                        && chars.get(i + 1).is_some_and(char::is_ascii_digit)))
            {
                i += 1;
            }
            out.push('0');
            continue;
        }
        if c.is_whitespace() {
            while i < chars.len() && chars[i].is_whitespace() {
                i += 1;
            }
            out.push(' ');
            continue;
        }
        if c == '-' && chars[i..].iter().take_while(|x| **x == '-').count() >= 3 {
            while i < chars.len() && chars[i] == '-' {
                i += 1;
            }
            out.push_str("---");
            continue;
        }
        out.push(c);
        i += 1;
    }
    out.trim().to_string()
}

/// Whether `actual` matches the documented `expected` line (both normalized), where `...` in
/// `expected` matches any text.
fn matches(expected: &str, actual: &str) -> bool {
    let parts: Vec<&str> = expected.split("...").collect();
    if parts.len() == 1 {
        return expected == actual;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !actual.starts_with(first) || actual.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &actual[first.len()..];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

/// Checks the documented output against the actual one; the first line not found, if any.
fn check_output(file: &Path, expected: &Block, actual: &str) -> Result<(), String> {
    let actual: Vec<String> = actual.lines().map(normalize).collect();
    let mut from = 0;
    for (i, line) in expected.lines.iter().enumerate() {
        let want = normalize(line);
        if want.is_empty() || want == "..." {
            continue;
        }
        match actual[from..].iter().position(|a| matches(&want, a)) {
            Some(at) => from += at + 1,
            None => {
                return Err(format!(
                    "{}:{}: this output line was not found (in order):\n  {line}\nactual output:\n{}",
                    file.display(),
                    expected.first_line + i,
                    actual.join("\n")
                ));
            }
        }
    }
    Ok(())
}

/// Runs a Markdown file's examples in order; the first failure stops the file.
fn run_file(file: &Path) -> Result<usize, String> {
    let text = std::fs::read_to_string(repo().join(file)).map_err(|e| e.to_string())?;
    let steps = steps(file, &text)?;
    let runs = steps
        .iter()
        .filter(|s| matches!(s, Step::Run { .. }))
        .count();
    if runs == 0 {
        return Ok(0);
    }
    let scratch = Scratch::new();
    for step in steps {
        match step {
            Step::Write { path, content } => {
                let to = scratch.path().join(&path);
                if let Some(parent) = to.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
                }
                std::fs::write(&to, content).map_err(|e| format!("writing {path}: {e}"))?;
            }
            Step::Run { block, output } => {
                let actual = run(&scratch, file, &block)?;
                if let Some(expected) = output {
                    check_output(file, &expected, &actual)?;
                }
            }
        }
    }
    Ok(runs)
}

#[test]
fn runnable_examples_in_the_docs_run_as_shown() {
    let files = markdown_files();
    let results: Vec<(PathBuf, Result<usize, String>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .iter()
            .map(|file| (file.clone(), scope.spawn(move || run_file(file))))
            .collect();
        handles
            .into_iter()
            .map(|(file, h)| {
                let result = h
                    .join()
                    .unwrap_or_else(|_| Err(format!("{}: the runner panicked", file.display())));
                (file, result)
            })
            .collect()
    });
    let failures: Vec<&String> = results
        .iter()
        .filter_map(|(_, r)| r.as_ref().err())
        .collect();
    assert!(
        failures.is_empty(),
        "\n{}",
        failures
            .iter()
            .map(|f| f.as_str())
            .collect::<Vec<_>>()
            .join("\n\n")
    );
    let readme = results
        .iter()
        .find(|(f, _)| f == Path::new("README.md"))
        .and_then(|(_, r)| r.as_ref().ok().copied())
        .unwrap_or(0);
    assert!(
        readme >= 4,
        "README.md has only {readme} runnable examples: its tour should run"
    );
}

#[test]
fn the_runner_reads_blocks_and_compares_output_as_documented() {
    let text = "# A title\n```sh runnable\nboxoffice tables\n```\n\n```text output\nTABLE ...\n```\n````markdown\n```sh runnable\nnot run\n```\n````\n";
    let s = steps(Path::new("t.md"), text).expect("steps");
    assert_eq!(
        s.len(),
        1,
        "the block inside the four-backtick fence is text"
    );
    assert!(matches!(
        &s[0],
        Step::Run {
            output: Some(_),
            ..
        }
    ));
    assert!(matches(
        &normalize("up 5.0s | 1,234 rows ..."),
        &normalize("up 12.5s | 98 rows and more")
    ));
    assert!(!matches(
        &normalize("bronze.quarantine 0 rows"),
        &normalize("bronze.quarantine - rows")
    ));
    assert_eq!(normalize("+-----+---+"), normalize("+----------+-----+"));
    let bad = "```sh runable\nx\n```\n";
    assert!(
        steps(Path::new("t.md"), bad).is_ok(),
        "an unmarked block is text"
    );
    let orphan = "text\n```text output\nx\n```\n";
    assert!(
        steps(Path::new("t.md"), orphan).is_err(),
        "output with no example before it"
    );
}
