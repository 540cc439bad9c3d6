//! Errors in a manifest: each names the file, the line, what is wrong and how to fix it.

use std::fmt;

/// One problem found in bundle.yml.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// 1-based line in the manifest.
    pub line: usize,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    pub fix: String,
}

/// Every problem found; validation reports them all at once, not the first only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Diagnostics {
    /// The manifest's path, as the user gave it.
    pub file: String,
    pub problems: Vec<Diagnostic>,
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        writeln!(
            f,
            "{} has {n} problem{}:",
            self.file,
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            writeln!(f, "  {}:{}: {}", self.file, p.line, p.message)?;
            if !p.fix.is_empty() {
                writeln!(f, "      fix: {}", p.fix)?;
            }
        }
        Ok(())
    }
}

/// Collects problems while a manifest is read.
#[derive(Debug, Default)]
pub struct Collector {
    pub problems: Vec<Diagnostic>,
}

impl Collector {
    /// Records one problem.
    pub fn error(&mut self, line: usize, message: impl Into<String>, fix: impl Into<String>) {
        self.problems.push(Diagnostic {
            line,
            message: message.into(),
            fix: fix.into(),
        });
    }
}

/// The known name closest to `name`, when it is close enough to be a typo.
pub fn closest<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    known
        .into_iter()
        .map(|k| (distance(name, k), k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (prev + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            prev = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// "did you mean 'x'?" or the list of what is allowed.
pub fn suggestion(name: &str, known: &[&str]) -> String {
    match closest(name, known.iter().copied()) {
        Some(k) => format!("did you mean '{k}'?"),
        None => format!("use one of: {}", known.join(", ")),
    }
}
