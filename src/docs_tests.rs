//! The docs and `--help` checked against the code: docs/tables.md against every table's schema
//! and writer, `job run --help` against the tables each job writes, and every command's long help
//! against what a newcomer needs (examples that parse, options grouped by purpose, a doc to read).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use boxoffice_lake::TableDef;
use clap::{CommandFactory, Parser, ValueEnum};
use deltalake::arrow::datatypes::{DataType, Field, TimeUnit};

use crate::cli::{Cli, JobName};
use crate::commands::table_writers::{JOBS, tables_of_job, written_by};
use crate::commands::tables::catalog;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// A column's type as docs/tables.md spells it: Delta's type name, then ", not null".
fn doc_type(field: &Field) -> String {
    let name = match field.data_type() {
        DataType::Utf8 => "string".to_string(),
        DataType::Int32 => "integer".into(),
        DataType::Int64 => "long".into(),
        DataType::Float64 => "double".into(),
        DataType::Boolean => "boolean".into(),
        DataType::Date32 => "date".into(),
        DataType::Timestamp(TimeUnit::Microsecond, Some(zone)) if zone.as_ref() == "UTC" => {
            "timestamp".into()
        }
        DataType::Decimal128(p, s) => format!("decimal({p},{s})"),
        other => panic!(
            "{}: no Delta type name for {other:?}; teach doc_type",
            field.name()
        ),
    };
    if field.is_nullable() {
        name
    } else {
        format!("{name}, not null")
    }
}

/// One `### layer.table` section of docs/tables.md.
#[derive(Default)]
struct DocTable {
    line: usize,
    text: String,
    /// (column, type) from the section's Markdown table, in order.
    columns: Vec<(String, String)>,
}

fn doc_tables(doc: &str) -> BTreeMap<String, DocTable> {
    let mut tables = BTreeMap::new();
    let mut current: Option<(String, DocTable)> = None;
    for (i, line) in doc.lines().enumerate() {
        if line.starts_with("## ") || line.starts_with("### ") {
            if let Some((name, table)) = current.take() {
                tables.insert(name, table);
            }
            let title = line.trim_start_matches('#').trim().replace('`', "");
            if line.starts_with("### ") && title.contains('.') && !title.contains(' ') {
                let table = DocTable {
                    line: i + 1,
                    ..DocTable::default()
                };
                current = Some((title, table));
            }
            continue;
        }
        let Some((_, table)) = current.as_mut() else {
            continue;
        };
        table.text.push_str(line);
        table.text.push('\n');
        if let Some(row) = line.strip_prefix("| `") {
            let cells: Vec<&str> = row.split(" | ").collect();
            let column = cells[0].trim_end_matches('`').to_string();
            let kind = cells.get(1).map_or("", |c| c.trim()).to_string();
            table.columns.push((column, kind));
        }
    }
    if let Some((name, table)) = current {
        tables.insert(name, table);
    }
    tables
}

#[test]
fn tables_doc_matches_the_code() {
    let doc = read("docs/tables.md");
    let documented = doc_tables(&doc);
    let mut problems = Vec::new();
    let declared: BTreeSet<String> = catalog().iter().map(|d| d.qualified_name()).collect();
    for name in documented.keys() {
        if !declared.contains(name) {
            problems.push(format!(
                "docs/tables.md:{}: {name} is described but boxoffice writes no such table",
                documented[name].line
            ));
        }
    }
    for def in catalog() {
        let name = def.qualified_name();
        let Some(table) = documented.get(&name) else {
            problems.push(format!("docs/tables.md has no section `### {name}`"));
            continue;
        };
        problems.extend(section_problems(def, table));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// What a table's section gets wrong: its columns, its writer, its partitioning.
fn section_problems(def: &TableDef, table: &DocTable) -> Vec<String> {
    let at = format!("docs/tables.md:{} ({})", table.line, def.qualified_name());
    let mut problems = Vec::new();
    let expected: Vec<(String, String)> = def
        .arrow_schema()
        .fields()
        .iter()
        .map(|f| (f.name().clone(), doc_type(f)))
        .collect();
    if table.columns != expected {
        let rows: Vec<String> = expected
            .iter()
            .map(|(c, t)| format!("| `{c}` | {t} | ... |"))
            .collect();
        problems.push(format!(
            "{at}: the columns differ from the code; in order they are:\n{}",
            rows.join("\n")
        ));
    }
    let writer = format!("**Written by:** {}.", written_by(def));
    if !table.text.contains(&writer) {
        problems.push(format!("{at}: expected the line `{writer}`"));
    }
    for column in def.partition_columns {
        if !table.text.contains(&format!("Partitioned by `{column}`")) {
            problems.push(format!("{at}: expected `Partitioned by `{column}``"));
        }
    }
    if def.partition_columns.is_empty() && table.text.contains("Partitioned by") {
        problems.push(format!("{at}: the table is not partitioned"));
    }
    let stats: Vec<String> = def.stats_columns.iter().map(|c| format!("`{c}`")).collect();
    let stats = format!("File statistics on {}.", stats.join(", "));
    if !def.stats_columns.is_empty() && !table.text.contains(&stats) {
        problems.push(format!("{at}: expected `{stats}`"));
    }
    if def.stats_columns.is_empty() && table.text.contains("File statistics on") {
        problems.push(format!("{at}: the table keeps Delta's default statistics"));
    }
    problems
}

/// The long help of the command at `path` (`["job", "run"]`), as plain text.
fn long_help(path: &[&str]) -> String {
    let mut cmd = Cli::command();
    cmd.build();
    let mut at = &mut cmd;
    for name in path {
        at = at
            .find_subcommand_mut(name)
            .unwrap_or_else(|| panic!("no command {path:?}"));
    }
    at.render_long_help().to_string()
}

/// Every command's path, the top level first.
fn command_paths() -> Vec<Vec<String>> {
    fn walk(cmd: &clap::Command, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
        out.push(prefix.clone());
        // Hidden commands are plumbing one command starts for another, not for users.
        let shown = cmd
            .get_subcommands()
            .filter(|s| s.get_name() != "help" && !s.is_hide_set());
        for sub in shown {
            let mut path = prefix.clone();
            path.push(sub.get_name().to_string());
            walk(sub, path, out);
        }
    }
    let mut out = Vec::new();
    walk(&Cli::command(), Vec::new(), &mut out);
    out
}

/// `job run --help`'s list: job -> tables, as printed.
fn listed_tables(help: &str) -> BTreeMap<String, Vec<String>> {
    let mut listed: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let start = help
        .find("Tables each job writes")
        .expect("job run --help lists each job's tables");
    let mut job = String::new();
    for line in help[start..].lines().skip(1) {
        if !line.starts_with("  ") {
            break;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            [name, table] => {
                job = name.to_string();
                listed
                    .entry(job.clone())
                    .or_default()
                    .push(table.to_string());
            }
            [table] => listed
                .entry(job.clone())
                .or_default()
                .push(table.to_string()),
            _ => panic!("unexpected line in job run --help: {line:?}"),
        }
    }
    listed
}

#[test]
fn job_run_help_lists_the_tables_each_job_writes() {
    let help = long_help(&["job", "run"]);
    let listed = listed_tables(&help);
    let jobs: BTreeSet<String> = JobName::value_variants()
        .iter()
        .filter_map(|v| v.to_possible_value())
        .map(|v| v.get_name().to_string())
        .collect();
    assert_eq!(
        jobs,
        JOBS.iter().map(|j| j.to_string()).collect(),
        "table_writers::JOBS names every job of `job run`"
    );
    for job in JOBS {
        assert_eq!(
            listed.get(job).cloned().unwrap_or_default(),
            tables_of_job(job),
            "`job run --help` lists {job}'s tables"
        );
    }
    // Every table attributed to a `job run` names one of those jobs, and is in docs/tables.md.
    let doc = doc_tables(&read("docs/tables.md"));
    for def in catalog() {
        let writer = written_by(def);
        if let Some(rest) = writer.strip_prefix("`boxoffice job run ") {
            let job = rest.split('`').next().unwrap_or_default();
            assert!(
                JOBS.contains(&job),
                "{} is written by unknown job {job}",
                def.qualified_name()
            );
            assert!(
                doc.contains_key(&def.qualified_name()),
                "{} (written by job {job}) is missing from docs/tables.md",
                def.qualified_name()
            );
        }
    }
    // gold writes six tables; the help used to name four.
    assert_eq!(listed["gold"].len(), 6, "{help}");
}

/// The lines of a help's last `Examples` section that run a command.
fn examples(help: &str) -> Vec<String> {
    let Some(start) = help.rfind("Examples") else {
        return Vec::new();
    };
    help[start..]
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .map(|l| l.trim().to_string())
        .collect()
}

#[test]
fn every_command_ends_its_long_help_with_examples_and_a_doc() {
    let mut problems = Vec::new();
    for path in command_paths() {
        let path: Vec<&str> = path.iter().map(String::as_str).collect();
        let help = long_help(&path);
        let shown = format!(
            "boxoffice {}--help",
            path.iter().map(|p| format!("{p} ")).collect::<String>()
        );
        let found = examples(&help);
        if !(2..=3).contains(&found.len()) {
            problems.push(format!("{shown}: {} examples, not 2 or 3", found.len()));
        }
        for line in &found {
            let command = line
                .split_whitespace()
                .find(|w| !w.contains('=') || w.starts_with('-'))
                .unwrap_or_default();
            if command != "boxoffice" && command != "func" {
                problems.push(format!(
                    "{shown}: `{line}` is not a command (a wrapped line?)"
                ));
            }
        }
        let tail = &help[help.rfind("Examples").unwrap_or(0)..];
        let docs: Vec<&str> = tail
            .split(|c: char| c.is_whitespace() || c == '(' || c == ')' || c == ',')
            .map(|w| w.trim_end_matches(['.', ':', ';']))
            .filter(|w| w.ends_with(".md"))
            .collect();
        if docs.is_empty() {
            problems.push(format!("{shown}: names no document to read next"));
        }
        for doc in docs {
            if !repo().join(doc).exists() {
                problems.push(format!("{shown}: names {doc}, which does not exist"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Splits a shell line into commands (at `|`, `&&`, `;`) and words, honouring quotes; stops at
/// a comment.
fn shell_commands(line: &str) -> Vec<Vec<String>> {
    let mut commands = vec![Vec::new()];
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = line.chars().peekable();
    let end_word = |word: &mut String, in_word: &mut bool, commands: &mut Vec<Vec<String>>| {
        if *in_word {
            commands
                .last_mut()
                .expect("a command")
                .push(std::mem::take(word));
            *in_word = false;
        }
    };
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, '#') if !in_word => break,
            (None, c) if c.is_whitespace() => end_word(&mut word, &mut in_word, &mut commands),
            (None, '|' | ';') | (None, '&') => {
                if c == '&' && chars.peek() == Some(&'&') {
                    chars.next();
                }
                end_word(&mut word, &mut in_word, &mut commands);
                commands.push(Vec::new());
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    end_word(&mut word, &mut in_word, &mut commands);
    commands.retain(|c| !c.is_empty());
    commands
}

#[test]
fn shell_commands_splits_like_a_shell() {
    assert_eq!(
        shell_commands(r#"A=1 boxoffice sql "select 1" > x.csv && boxoffice tables # note"#),
        vec![
            vec!["A=1", "boxoffice", "sql", "select 1", ">", "x.csv"],
            vec!["boxoffice", "tables"],
        ]
    );
    assert_eq!(
        shell_commands("boxoffice generate | boxoffice ingest"),
        vec![vec!["boxoffice", "generate"], vec!["boxoffice", "ingest"]]
    );
}

#[test]
fn every_example_in_the_help_parses() {
    let mut problems = Vec::new();
    let mut parsed = 0;
    for path in command_paths() {
        let path: Vec<&str> = path.iter().map(String::as_str).collect();
        for example in examples(&long_help(&path)) {
            for words in shell_commands(&example) {
                let words: Vec<&String> = words
                    .iter()
                    .skip_while(|w| w.contains('=') && !w.starts_with('-'))
                    .take_while(|w| !w.starts_with('>') && !w.starts_with('<'))
                    .collect();
                if words.first().map(|w| w.as_str()) != Some("boxoffice") {
                    continue;
                }
                parsed += 1;
                if let Err(e) = Cli::try_parse_from(words) {
                    problems.push(format!(
                        "`boxoffice {} --help` shows `{example}`, which does not parse:\n{e}",
                        path.join(" ")
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(parsed > 40, "only {parsed} examples found");
}

/// The options under each heading of a command's help.
fn headings(path: &[&str]) -> BTreeMap<String, BTreeSet<String>> {
    let mut cmd = Cli::command();
    cmd.build();
    let mut at = &cmd;
    for name in path {
        at = at.find_subcommand(name).expect("command");
    }
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for arg in at.get_arguments().filter(|a| a.get_long().is_some()) {
        let heading = arg.get_help_heading().unwrap_or("Options").to_string();
        out.entry(heading)
            .or_default()
            .insert(arg.get_long().unwrap_or_default().to_string());
    }
    out
}

#[test]
fn options_are_grouped_by_what_they_are_for() {
    let set = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<BTreeSet<_>>();
    for path in [&["up"][..], &["ingest"], &["bench", "ingest"]] {
        assert_eq!(
            headings(path)["Landing in Bronze"],
            set(&["flush-interval", "flush-events", "queue-dir", "fsync"]),
            "{path:?}: only the landing options are under Landing in Bronze"
        );
    }
    let up = headings(&["up"]);
    assert_eq!(up["Running"], set(&["duration", "count"]));
    assert_eq!(
        up["Jobs"],
        set(&[
            "job-interval",
            "no-jobs",
            "maintenance-every",
            "vacuum-every",
            "vacuum-retention",
            "workers",
            "cdc-rate",
            "bundle",
            "bundle-target"
        ])
    );
    assert_eq!(
        up["Dashboard"],
        set(&["dashboard-port", "dashboard-refresh", "no-dashboard"])
    );
    assert!(up["Generator"].contains("rate") && up["Generator"].contains("seed"));
    assert_eq!(
        up["Options"],
        set(&["help", "version"]),
        "every option of up has a group"
    );
    let job_run = headings(&["job", "run"]);
    assert_eq!(
        job_run["Options"],
        set(&["help", "version"]),
        "every option of job run has a group"
    );
}

#[test]
fn summaries_say_what_the_commands_do_today() {
    let up = long_help(&["up"]);
    for what in ["Bronze", "jobs", "Gold", "dashboard", "cdc"] {
        assert!(
            up.contains(what),
            "up --help does not mention {what}:\n{up}"
        );
    }
    let mut cmd = Cli::command();
    let about = cmd
        .find_subcommand_mut("up")
        .and_then(|c| c.get_about().map(|a| a.to_string()))
        .unwrap_or_default();
    assert!(
        about.contains("pipeline"),
        "up's one-line summary is about the whole pipeline: {about}"
    );
}

#[test]
fn the_tables_doc_parser_reads_sections_and_columns() {
    let doc = "## Layer\n\n### a.b\n\n**Written by:** x.\n\n| column | type | meaning |\n| --- | --- | --- |\n| `c` | string, not null | m |\n\n### not a table\n| `z` | long | |\n";
    let tables = doc_tables(doc);
    assert_eq!(tables.len(), 1);
    assert_eq!(
        tables["a.b"].columns,
        vec![("c".to_string(), "string, not null".to_string())]
    );
}
