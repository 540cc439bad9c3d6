//! Every Markdown link in the repository leads to a file, and a heading, that exist; nothing
//! cites a document outside the repository.

#[path = "common/markdown.rs"]
mod markdown;

use std::path::{Path, PathBuf};
use std::process::Command;

use markdown::{anchors, inside_repo, links, markdown_files, repo};

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
    let text = "# A title\n## Bronze: `bookings_raw` (raw)\n## A title\n```sh\n[z](in/code.md)\n```\nsee [x](docs/a.md#b) and `[y](not/a/link.md)`\n";
    let a = anchors(text);
    assert!(a.contains("a-title") && a.contains("a-title-1"), "{a:?}");
    assert!(a.contains("bronze-bookings_raw-raw"), "{a:?}");
    assert_eq!(links(text), vec![(7, "docs/a.md#b".to_string())]);
    assert_eq!(
        inside_repo(Path::new("docs/../README.md")),
        Some(PathBuf::from("README.md"))
    );
    assert_eq!(inside_repo(Path::new("../elsewhere/x.md")), None);
}
