//! The docs cannot go stale: their runnable examples run, and their links lead somewhere.
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

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long one block may run.
const BLOCK_TIMEOUT: Duration = Duration::from_secs(180);

/// How the scratch directory appears in the docs' output.
const SHOWN_AS: &str = "/home/me/boxoffice";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every Markdown file of the repository (tracked, or new and not ignored), relative to it.
fn markdown_files() -> Vec<PathBuf> {
    let out = Command::new("git")
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .current_dir(repo())
        .output();
    let mut files: Vec<PathBuf> = match out {
        Ok(out) if out.status.success() => out
            .stdout
            .split(|b| *b == 0)
            .filter(|p| p.ends_with(b".md"))
            .map(|p| PathBuf::from(String::from_utf8_lossy(p).into_owned()))
            .filter(|p| repo().join(p).is_file())
            .collect(),
        // Not a git checkout (a source archive): walk the tree instead.
        _ => walk(&repo(), Path::new("")),
    };
    files.sort();
    files.dedup();
    assert!(
        files.iter().any(|f| f == Path::new("README.md")),
        "README.md not found among {files:?}"
    );
    files
}

fn walk(root: &Path, rel: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(root.join(rel)) else {
        return found;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || name.starts_with("target") || name == "node_modules" {
            continue;
        }
        let path = rel.join(&name);
        if entry.path().is_dir() {
            found.extend(walk(root, &path));
        } else if name.ends_with(".md") {
            found.push(path);
        }
    }
    found
}

/// A fenced code block.
#[derive(Debug, Clone)]
struct Block {
    info: String,
    /// 1-based line of the first line inside the fence.
    first_line: usize,
    lines: Vec<String>,
    /// Only blank lines separate it from the block before.
    follows_previous: bool,
}

/// The fenced blocks of a Markdown text (a fence closes only with at least as many of the same
/// character, so blocks inside a longer fence stay text).
fn blocks(text: &str) -> Vec<Block> {
    let mut out: Vec<Block> = Vec::new();
    let mut open: Option<(char, usize, Block)> = None;
    let mut since_last_block = 0usize; // non-blank lines since the last block closed
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let fence = trimmed
            .chars()
            .next()
            .filter(|c| *c == '`' || *c == '~')
            .map(|c| (c, trimmed.chars().take_while(|x| *x == c).count()))
            .filter(|(_, n)| *n >= 3 && line.len() - trimmed.len() < 4);
        match (&mut open, fence) {
            (Some((c, n, _)), Some((fc, fn_)))
                if fc == *c && fn_ >= *n && trimmed.trim_end().chars().all(|x| x == fc) =>
            {
                let (_, _, block) = open.take().expect("open block");
                out.push(block);
                since_last_block = 0;
            }
            (Some((_, _, block)), _) => block.lines.push(line.to_string()),
            (None, Some((c, n))) => {
                let info = trimmed[n * c.len_utf8()..].trim().to_string();
                let block = Block {
                    info,
                    first_line: i + 2,
                    lines: Vec::new(),
                    follows_previous: !out.is_empty() && since_last_block == 0,
                };
                open = Some((c, n, block));
            }
            (None, None) => {
                if !line.trim().is_empty() {
                    since_last_block += 1;
                }
            }
        }
    }
    out
}

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

/// The anchors GitHub gives a Markdown file's headings.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut in_fence: Option<(char, usize)> = None;
    for line in text.lines() {
        let trimmed = line.trim_start();
        let fence = trimmed.chars().next().filter(|c| *c == '`' || *c == '~');
        if let Some(c) = fence {
            let n = trimmed.chars().take_while(|x| *x == c).count();
            if n >= 3 {
                match in_fence {
                    Some((oc, on))
                        if oc == c && n >= on && trimmed.trim_end().chars().all(|x| x == c) =>
                    {
                        in_fence = None
                    }
                    None => in_fence = Some((c, n)),
                    _ => {}
                }
                continue;
            }
        }
        if in_fence.is_some() || !trimmed.starts_with('#') {
            continue;
        }
        let title = trimmed.trim_start_matches('#');
        if !title.starts_with(' ') {
            continue;
        }
        let slug: String = title
            .trim()
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let mut anchor = slug.clone();
        let mut n = 1;
        while seen.contains(&anchor) {
            anchor = format!("{slug}-{n}");
            n += 1;
        }
        seen.insert(anchor);
    }
    seen
}

/// The link targets of a Markdown text outside code blocks and code spans, with their lines.
fn links(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let mut in_fence: Option<(char, usize)> = None;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if let Some(c) = trimmed.chars().next().filter(|c| *c == '`' || *c == '~') {
            let n = trimmed.chars().take_while(|x| *x == c).count();
            if n >= 3 {
                match in_fence {
                    Some((oc, on))
                        if oc == c && n >= on && trimmed.trim_end().chars().all(|x| x == c) =>
                    {
                        in_fence = None
                    }
                    None => in_fence = Some((c, n)),
                    _ => {}
                }
                continue;
            }
        }
        if in_fence.is_some() {
            continue;
        }
        // Code spans are text, not links.
        let mut prose = String::new();
        for (k, piece) in line.split('`').enumerate() {
            if k % 2 == 0 {
                prose.push_str(piece);
            }
            prose.push(' ');
        }
        let mut rest = prose.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let target = after.split(')').next().unwrap_or_default();
            let target = target.split_whitespace().next().unwrap_or_default();
            found.push((i + 1, target.trim_matches(['<', '>']).to_string()));
            rest = after;
        }
        if let Some(def) = prose.trim_start().strip_prefix('[')
            && let Some((_, target)) = def.split_once("]:")
        {
            found.push((
                i + 1,
                target
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_string(),
            ));
        }
    }
    found
}

/// `path` with `.` and `..` resolved, or `None` if it climbs out of the repository.
fn inside_repo(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            _ => return None,
        }
    }
    Some(out)
}

#[test]
fn every_markdown_link_points_to_a_file_and_heading_that_exist() {
    let mut problems = Vec::new();
    let mut checked = 0;
    for file in markdown_files() {
        let text = std::fs::read_to_string(repo().join(&file)).expect("read markdown");
        for (line, target) in links(&text) {
            if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let at = format!("{}:{line}: link to {target}", file.display());
            let (path, anchor) = target.split_once('#').unwrap_or((&target, ""));
            let resolved = if path.is_empty() {
                Some(file.clone())
            } else {
                inside_repo(&file.parent().unwrap_or(Path::new("")).join(path))
            };
            let Some(resolved) = resolved else {
                problems.push(format!("{at}: leaves the repository"));
                continue;
            };
            let full = repo().join(&resolved);
            if !full.exists() {
                problems.push(format!("{at}: {} does not exist", resolved.display()));
                continue;
            }
            if !anchor.is_empty() {
                if full.extension().is_none_or(|e| e != "md") {
                    problems.push(format!("{at}: an anchor into a file that is not Markdown"));
                    continue;
                }
                let text = std::fs::read_to_string(&full).expect("read target");
                if !anchors(&text).contains(anchor) {
                    problems.push(format!(
                        "{at}: {} has no heading with anchor #{anchor}",
                        resolved.display()
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
    assert!(
        checked > 50,
        "only {checked} links checked: is the parser finding them?"
    );
}

#[test]
fn nothing_cites_a_document_outside_the_repository() {
    // The team's internal design notes are not part of the repository: the docs are in docs/.
    let outside = [concat!("ARCHITECTURE", ".md"), concat!("../", "shared/")];
    let out = Command::new("git")
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .current_dir(repo())
        .output()
        .expect("git ls-files");
    let mut problems = Vec::new();
    for file in out.stdout.split(|b| *b == 0).filter(|p| !p.is_empty()) {
        let file = String::from_utf8_lossy(file).into_owned();
        let Ok(text) = std::fs::read_to_string(repo().join(&file)) else {
            continue; // binary, or deleted in the work tree
        };
        for (i, line) in text.lines().enumerate() {
            for name in outside {
                if line.contains(name) {
                    problems.push(format!("{file}:{}: cites {name}", i + 1));
                }
            }
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn the_helpers_read_markdown_as_github_does() {
    let text = "# A title\n## Bronze: `bookings_raw` (raw)\n## A title\n```sh runnable\nboxoffice tables\n```\n\n```text output\nTABLE ...\n```\n````markdown\n```sh runnable\nnot run\n```\n````\nsee [x](docs/a.md#b) and `[y](not/a/link.md)`\n";
    let a = anchors(text);
    assert!(a.contains("a-title") && a.contains("a-title-1"), "{a:?}");
    assert!(a.contains("bronze-bookings_raw-raw"), "{a:?}");
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
    assert_eq!(links(text), vec![(16, "docs/a.md#b".to_string())]);
    assert!(matches(
        &normalize("up 5.0s | 1,234 rows ..."),
        &normalize("up 12.5s | 98 rows and more")
    ));
    assert!(!matches(
        &normalize("bronze.quarantine 0 rows"),
        &normalize("bronze.quarantine - rows")
    ));
    assert_eq!(normalize("+-----+---+"), normalize("+----------+-----+"));
    assert_eq!(
        inside_repo(Path::new("docs/../README.md")),
        Some(PathBuf::from("README.md"))
    );
    assert_eq!(inside_repo(Path::new("../elsewhere/x.md")), None);
}
