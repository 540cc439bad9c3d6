//! Reading the repository's Markdown as GitHub does: which files there are, their fenced code
//! blocks, their headings' anchors and their links. Shared by tests/docs.rs and tests/links.rs.
#![allow(dead_code)] // each test file uses its own subset

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

/// The repository's root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every Markdown file of the repository (tracked, or new and not ignored), relative to it.
pub fn markdown_files() -> Vec<PathBuf> {
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
pub struct Block {
    pub info: String,
    /// 1-based line of the first line inside the fence.
    pub first_line: usize,
    pub lines: Vec<String>,
    /// Only blank lines separate it from the block before.
    pub follows_previous: bool,
}

/// The fenced blocks of a Markdown text (a fence closes only with at least as many of the same
/// character, so blocks inside a longer fence stay text).
pub fn blocks(text: &str) -> Vec<Block> {
    let mut out: Vec<Block> = Vec::new();
    let mut open: Option<(char, usize, Block)> = None;
    let mut since_last_block = 0usize; // non-blank lines since the last block closed
    for (i, line) in text.lines().enumerate() {
        match (&mut open, fence(line)) {
            (Some((c, n, _)), Some((fc, fn_)))
                if fc == *c && fn_ >= *n && line.trim().chars().all(|x| x == fc) =>
            {
                let (_, _, block) = open.take().expect("open block");
                out.push(block);
                since_last_block = 0;
            }
            (Some((_, _, block)), _) => block.lines.push(line.to_string()),
            (None, Some((c, n))) => {
                let info = line.trim_start()[n * c.len_utf8()..].trim().to_string();
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

/// The lines of a Markdown text outside fenced code blocks, with their 1-based numbers.
pub fn prose_lines(text: &str) -> Vec<(usize, &str)> {
    let mut prose = Vec::new();
    let mut open: Option<(char, usize)> = None;
    for (i, line) in text.lines().enumerate() {
        if let Some((c, n)) = fence(line) {
            match open {
                Some((oc, on)) if oc == c && n >= on && line.trim().chars().all(|x| x == c) => {
                    open = None
                }
                None => open = Some((c, n)),
                _ => {}
            }
            continue;
        }
        if open.is_none() {
            prose.push((i + 1, line));
        }
    }
    prose
}

/// The fence character and its count, if `line` opens or closes a fenced block.
fn fence(line: &str) -> Option<(char, usize)> {
    let trimmed = line.trim_start();
    let c = trimmed.chars().next().filter(|c| *c == '`' || *c == '~')?;
    let n = trimmed.chars().take_while(|x| *x == c).count();
    (n >= 3 && line.len() - trimmed.len() < 4).then_some((c, n))
}

/// The anchors GitHub gives a Markdown file's headings.
pub fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: BTreeSet<String> = BTreeSet::new();
    for (_, line) in prose_lines(text) {
        let Some(title) = line.trim_start().strip_prefix('#') else {
            continue;
        };
        let title = title.trim_start_matches('#');
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
pub fn links(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (number, line) in prose_lines(text) {
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
            found.push((number, target.trim_matches(['<', '>']).to_string()));
            rest = after;
        }
        if let Some(def) = prose.trim_start().strip_prefix('[')
            && let Some((_, target)) = def.split_once("]:")
        {
            let target = target.split_whitespace().next().unwrap_or_default();
            found.push((number, target.to_string()));
        }
    }
    found
}

/// `path` with `.` and `..` resolved, or `None` if it climbs out of the repository.
pub fn inside_repo(path: &Path) -> Option<PathBuf> {
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
